"""The evidence runner end to end on a tiny budget: grids, resume, and the summary's numbers."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
from helpers.report import m, result

from go4align.result_file import ResultFileError

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evidence():
    return load("evidence")


def test_e1_on_a_tiny_budget_writes_grids_and_a_summary(tmp_path, evidence, monkeypatch):
    # two of the methods keep this quick; the full list is checked to build below
    monkeypatch.setattr(evidence, "E1_METHODS", ("ls", "go4align-paper", "go4align:clustering=kmeans-random"))
    argv = ["e1", "--out", str(tmp_path), "--designs", "C", "--budgets", "2", "--seeds", "0,1", "--stl-seeds", "0"]
    assert evidence.main(argv) == 0
    grid = tmp_path / "grids" / "C" / "e2"
    options = json.loads((grid / "grid.json").read_text())["benchmark_options"]
    assert options["hidden_dim"] == 4 and options["scales"] == pytest.approx(
        [1.0, 100 ** (1 / 3), 100 ** (2 / 3), 100.0]
    )
    paper = json.loads((grid / "runs" / "go4align-paper" / "seed1" / "result.json").read_text())
    assert paper["method_options"] == {"num_groups": 4} and paper["complete"]
    assert len(paper["epochs"]) == 2
    summary = (tmp_path / "E1" / "summary.md").read_text()
    assert "PYTHONPATH=src python experiments/evidence.py e1 --out" in summary and "## design C, 2 epochs" in summary
    # the summary's Delta-m is the mean over seeds of Delta-m against the mean STL
    stl = json.loads((grid / "runs" / "stl" / "seed0" / "result.json").read_text())
    runs = [json.loads((grid / "runs" / "ls" / f"seed{s}" / "result.json").read_text()) for s in (0, 1)]
    values = [evidence.split_delta_m(r, stl) for r in runs]
    row = next(line for line in summary.splitlines() if line.startswith("| `ls`"))
    assert f"{statistics.fmean(values):.2f} ± " in row
    paired = next(line for line in summary.splitlines() if line.startswith("| `go4align-paper`"))
    differences = [
        evidence.split_delta_m(
            json.loads((grid / "runs" / "go4align-paper" / f"seed{s}" / "result.json").read_text()), stl
        )
        - v
        for s, v in zip((0, 1), values)
    ]
    assert f"| {statistics.fmean(differences):.2f} ± " in paired
    # the test's table: the paper preset against LS, and no SI or FAMO run to be below
    test_row = next(line for line in summary.splitlines() if line.startswith("| C | 2 | `go4align-paper`"))
    assert test_row.endswith("| - | - | no |") and f"| {statistics.fmean(differences):.2f} ± " in test_row
    # a second call resumes: nothing is rerun, the summary is rewritten alike
    before = (grid / "runs" / "ls" / "seed0" / "result.json").stat().st_mtime_ns
    assert evidence.main(argv) == 0
    assert (grid / "runs" / "ls" / "seed0" / "result.json").stat().st_mtime_ns == before


def test_e1s_test_needs_every_seed_pair_below_by_two_standard_errors(evidence):
    ours = {0: 1.0, 1: 2.0, 2: 3.0}
    assert evidence.clearly_below(ours, {0: 2.0, 1: 3.1, 2: 4.0})  # -1.03 +- 0.03
    assert not evidence.clearly_below(ours, {0: 1.5, 1: 1.5, 2: 4.0})  # -0.33 +- 0.67: not clear
    assert not evidence.clearly_below(ours, {0: 0.0, 1: 1.0, 2: 2.0})  # above
    assert not evidence.clearly_below(ours, {0: 5.0})  # one shared seed: no standard error
    assert not evidence.clearly_below(ours, {})


def test_e3_shares_the_grid_and_tables_delta_m_against_k(tmp_path, evidence, monkeypatch):
    monkeypatch.setattr(evidence, "E3_GROUPS", (2, 20))
    argv = ["e3", "--out", str(tmp_path), "--designs", "A", "--budgets", "2", "--seeds", "0", "--stl-seeds", "0"]
    assert evidence.main(argv) == 0
    runs = tmp_path / "grids" / "A" / "e2" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [
        "go4align:num_groups=2",
        "go4align:num_groups=2,clustering=kmeans-random",
        "go4align:num_groups=20",
        "go4align:num_groups=20,clustering=kmeans-random",
        "ls",
        "stl",
    ]
    summary = (tmp_path / "E3" / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| 2 |") or line.startswith("| 20 |")]
    assert len(rows) == 2 and "## design A, 2 epochs: Delta-m against K" in summary


def test_every_method_of_the_plan_builds_on_every_design(evidence):
    from go4align.train import prepare_grid

    for design in evidence.DESIGNS:
        benchmark = evidence.design_benchmark(design, 2)
        methods = list(dict.fromkeys([*evidence.E1_METHODS, *evidence.e3_methods(), "stl"]))
        specs = prepare_grid(benchmark, methods, [0])
        assert len(specs) == len(set(s.label for s in specs))


def test_bad_arguments_name_the_value(evidence, capsys):
    with pytest.raises(SystemExit):
        evidence.main(["e1", "--designs", "B"])
    assert "unknown design(s) ['B']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evidence.main(["e1", "--budgets", "two"])
    assert "expected comma-separated ints, got 'two'" in capsys.readouterr().err


def test_stored_evidence_keeps_metrics_and_go4aligns_detail_but_not_the_history(tmp_path):
    store_evidence = load("store_evidence")
    grid = tmp_path / "runs" / "grids" / "A" / "e2"
    run = grid / "runs" / "go4align" / "seed0"
    run.mkdir(parents=True)
    (grid / "grid.json").write_text(json.dumps({"invocations": [{"command": "go4align bench"}]}))
    detail = {"steps": [0], "smooth_alignment": [[0.5, 0.5]], "indicators": [[1.0, 1.0]]}
    trace = {"steps": [0], "losses": [[1, 2, 3]], "detail": detail}
    ours = result("go4align", "go4align", 0, m(0.5, 2.0, 4.0), trace=trace)
    (run / "result.json").write_text(json.dumps(ours))
    theirs = result("ls", "ls", 0, m(0.5, 2.0, 4.0))
    (grid / "runs" / "ls" / "seed0").mkdir(parents=True)
    (grid / "runs" / "ls" / "seed0" / "result.json").write_text(json.dumps(theirs))
    (tmp_path / "runs" / "E1").mkdir()
    (tmp_path / "runs" / "E1" / "summary.md").write_text("# E1\n")

    assert store_evidence.store(tmp_path / "runs", tmp_path / "out") == 2
    stored = tmp_path / "out" / "grids" / "A" / "e2"
    record = json.loads((stored / "runs" / "go4align" / "seed0.json").read_text())
    summary = {key: value for key, value in ours.items() if key not in ("epochs", "trace")}
    assert record == {**summary, "trace_detail": detail}
    record = json.loads((stored / "runs" / "ls" / "seed0.json").read_text())
    assert record == {key: value for key, value in theirs.items() if key not in ("epochs", "trace")}
    assert (stored / "grid.json").is_file() and (tmp_path / "out" / "E1" / "summary.md").read_text() == "# E1\n"


def test_storing_evidence_refuses_a_result_that_breaks_the_schema(tmp_path):
    store_evidence = load("store_evidence")
    grid = tmp_path / "runs" / "grids" / "A" / "e2"
    (grid / "runs" / "ls" / "seed0").mkdir(parents=True)
    (grid / "grid.json").write_text("{}")
    broken = {key: value for key, value in result("ls", "ls", 0, m(0.5, 2.0, 4.0)).items() if key != "seed"}
    (grid / "runs" / "ls" / "seed0" / "result.json").write_text(json.dumps(broken))
    with pytest.raises(ResultFileError, match=r"seed0/result.json: missing field 'seed'"):
        store_evidence.store(tmp_path / "runs", tmp_path / "out")
