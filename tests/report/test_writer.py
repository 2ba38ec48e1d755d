import csv
import json
import re
import sys

import pytest
from helpers.report import RUNS, STL_RUNS, write_grid, write_json

from go4align.report import ReportError, load_grid, summarise, write_report, writer
from go4align.report.cli import main
from go4align.report.figures import draw_figures

FIGURES = {
    "delta_m_vs_time.png",
    "task_progress.png",
    "convergence_spread.png",
    "delta_m_vs_k.png",
    "groups_go4align_num_groups_2.png",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The standard grid's report, drawn once: drawing is most of a report's cost."""
    grid = write_grid(tmp_path_factory.mktemp("written") / "grid")
    return grid, write_report(grid)


@pytest.fixture
def no_figures(monkeypatch):
    """For tests of tables, notes and errors: skip drawing, which the tests above cover."""
    monkeypatch.setattr(writer, "draw_figures", lambda summary: [])


def test_one_grid_gets_markdown_html_csv_and_figures(written):
    grid_dir, paths = written
    names = {path.name for path in paths}
    assert {"report.md", "report.html", "results.csv"} | FIGURES == names
    assert all(path.is_file() for path in paths)
    for figure in FIGURES:
        assert (grid_dir / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (grid_dir / "report.md").read_text()
    for figure in FIGURES:
        assert f"](figures/{figure})" in markdown
    assert markdown.count("How to read this:") == len(FIGURES)


def test_html_is_self_contained(written):
    grid_dir, _ = written
    page = (grid_dir / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<link" not in page and "<script" not in page and "href=" not in page


def test_summary_table_cells(written):
    grid_dir, _ = written
    markdown = (grid_dir / "report.md").read_text()
    # Delta-m mean ± s.e. (conftest: ls -1.667 ± 1.667, K=2 -15.00 ± 1.67), step time, relative time,
    # memory, seeds, flags; no paper columns, since the paper has no numbers for this benchmark.
    assert (
        "| method | Delta-m % (mean ± s.e.) | step time (ms), median (IQR) | time rel. to ls | "
        "peak memory (MB) | seeds | flags |"
    ) in markdown
    assert "| ls | -1.67 ± 1.67 | 11.0 (IQR 2.0) | 1.00 | 100 | 2/2 |  |" in markdown
    assert "| go4align:num_groups=2 | -15.00 ± 1.67 | 12.0 (IQR 2.0) | 1.09 | 130 | 2/2 |  |" in markdown
    assert "| famo | -6.67 (1 seed) | 15.0 (IQR 2.0) | 1.36 | 100 | 1/2 | incomplete seed(s) 1 excluded |" in markdown
    assert "paper Delta-m" not in markdown and "paper time" not in markdown
    # Per-metric means at 4 significant digits, MR, and the stored reference row.
    assert "| ls | 0.5250 | 1.900 | 4.200 | 3.00 |" in markdown
    assert "| STL reference | 0.5000 | 2.000 | 4.000 |  |" in markdown


def test_csv_has_every_run_then_the_summary(written):
    grid_dir, _ = written
    with (grid_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["kind"] for row in rows] == ["run"] * len(RUNS) + ["summary"] * 4
    famo_incomplete = next(r for r in rows if r["method_label"] == "famo" and r["seed"] == "1")
    assert famo_incomplete["complete"] == "False"
    ls = next(r for r in rows if r["kind"] == "summary" and r["method_label"] == "ls")
    assert float(ls["delta_m"]) == pytest.approx(-5 / 3) and float(ls["delta_m_se"]) == pytest.approx(5 / 3)
    assert float(ls["mean_rank"]) == 3.0 and ls["n_seeds"] == "2" and ls["stl_source"] == "results-files"


def test_stl_runs_are_in_the_csv_and_named_in_the_report(tmp_path, no_figures):
    grid = write_grid(tmp_path, stl_runs=STL_RUNS)
    write_report(grid)
    markdown = (grid / "report.md").read_text()
    assert "mean of the grid's 2 single-task run(s) (seeds 0, 1)" in markdown
    assert "| ls | -10.42 ± 2.08 |" in markdown  # against STL runs (acc_a 0.4), not the stored 0.5
    with (grid / "results.csv").open() as handle:
        assert sum(row["kind"] == "stl" for row in csv.DictReader(handle)) == 2


def test_missing_reference_prints_na_never_a_number(tmp_path, no_figures):
    grid = write_grid(tmp_path, runs=[dict(run, stl_reference=None) for run in RUNS])
    write_report(grid)
    markdown = (grid / "report.md").read_text()
    assert "| ls | n/a | 11.0 (IQR 2.0) |" in markdown
    assert "ls: no STL reference for seed 0" in markdown
    with (grid / "results.csv").open() as handle:
        assert all(row["delta_m"] == "" for row in csv.DictReader(handle))


def test_figures_that_do_not_apply_are_left_out(tmp_path):
    # No Delta-m (no reference), no K sweep and no groups: only the training-curve figures remain.
    runs = [dict(run, stl_reference=None) for run in RUNS if run["method"] != "go4align"]
    summary = summarise(load_grid(write_grid(tmp_path, runs=runs, methods=["ls", "famo"])))
    assert [figure.name for figure in draw_figures(summary)] == ["task_progress.png", "convergence_spread.png"]


def test_rewriting_a_report_removes_figures_it_no_longer_draws(grid_dir, no_figures):
    (grid_dir / "figures").mkdir()
    (grid_dir / "figures" / "delta_m_vs_k.png").write_bytes(b"old")
    write_report(grid_dir)
    assert not (grid_dir / "figures" / "delta_m_vs_k.png").exists()


def test_a_folder_of_grids_gets_one_report_each_and_an_index(tmp_path, no_figures):
    write_grid(tmp_path / "digits")
    write_grid(tmp_path / "toy", stl_runs=STL_RUNS)
    paths = write_report(tmp_path)
    assert (tmp_path / "digits" / "report.html") in paths and (tmp_path / "toy" / "report.md") in paths
    index = (tmp_path / "index.md").read_text()
    assert "[digits](digits/report.html)" in index and "[toy](toy/report.html)" in index
    assert "go4align:num_groups=2 (-15.00)" in index and "go4align:num_groups=2 (-25.00)" in index
    assert (tmp_path / "index.html") in paths


def test_a_grid_without_complete_runs_still_reports(tmp_path, no_figures):
    grid = write_grid(tmp_path, runs=[dict(run, complete=False) for run in RUNS])
    write_report(grid)
    markdown = (grid / "report.md").read_text()
    assert "No complete run yet" in markdown
    assert "ls: no complete run" in markdown


def test_missing_grid_json_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no grid.json here or in any subfolder"):
        write_report(tmp_path)
    with pytest.raises(ReportError, match="not a directory"):
        write_report(tmp_path / "absent")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[:-5], "not valid JSON"),
        (
            lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "complete"}),
            "missing field 'complete'",
        ),
        (lambda text: json.dumps(dict(json.loads(text), seed="zero")), "field 'seed' should be int"),
        (
            lambda text: json.dumps(dict(json.loads(text), metrics={"acc_a": "high"})),
            "'metrics' values must be numbers",
        ),
        (lambda text: json.dumps(dict(json.loads(text), directions={"acc_a": "up"})), "need a direction"),
        (lambda text: json.dumps(dict(json.loads(text), benchmark="nyuv2")), "benchmark 'nyuv2' differs"),
        (
            lambda text: json.dumps(dict(json.loads(text), trace={"steps": [0, 1], "groups": [[0]]})),
            "trace.groups should hold one row per step",
        ),
    ],
)
def test_a_malformed_result_is_an_error_naming_the_file(grid_dir, damage, message):
    path = grid_dir / "runs" / "famo" / "seed0" / "result.json"
    path.write_text(damage(path.read_text()))
    with pytest.raises(ReportError, match=message) as caught:
        write_report(grid_dir)
    assert str(path) in str(caught.value)


def test_complete_runs_must_report_the_same_metrics(grid_dir):
    path = grid_dir / "runs" / "famo" / "seed0" / "result.json"
    data = json.loads(path.read_text())
    del data["metrics"]["err_c"]
    write_json(path, data)
    with pytest.raises(ReportError, match="metrics .* differ"):
        write_report(grid_dir)


def test_missing_matplotlib_names_the_report_extra(grid_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"go4align\[report\]"):
        write_report(grid_dir)
    assert not (grid_dir / "report.md").exists()


def test_cli_prints_paths_or_the_error(grid_dir, tmp_path, capsys, no_figures):
    assert main([str(grid_dir)]) == 0
    assert str(grid_dir / "report.html") in capsys.readouterr().out
    assert main([str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.startswith("go4align report: error: ")


def test_a_grid_with_protocol_settings_and_an_argv_command_is_read(grid_dir, no_figures):
    # The trainer records the protocol's settings; grids before invocations kept the argv.
    grid_file = grid_dir / "grid.json"
    spec = json.loads(grid_file.read_text())
    spec.update(
        protocol={"epochs": 5, "lr": 0.01},
        command=["go4align", "bench", "--out", "a b"],
        go4align_version="0.1.0",
        start_time="2025-02-02T00:00:00",
    )
    grid_file.write_text(json.dumps(spec))
    path = grid_dir / "runs" / "ls" / "seed0" / "result.json"
    write_json(path, dict(json.loads(path.read_text()), peak_memory_method="cuda_max_allocated"))
    write_report(grid_dir)
    markdown = (grid_dir / "report.md").read_text()
    assert "protocol epochs=5, lr=0.01:" in markdown
    assert "Command: go4align bench --out 'a b'. go4align 0.1.0, started 2025-02-02T00:00:00." in markdown
    assert "Measures in these results: cuda_max_allocated, cuda_max_memory_allocated." in markdown
