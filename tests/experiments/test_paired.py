"""experiments/paired.py: Delta-m per seed against the grid's STL runs, paired differences, storage."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
from helpers.training import make_tiny

from go4align.metrics import delta_m
from go4align.result_file import read_result
from go4align.train import run_grid

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def paired():
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))  # paired.py imports its sibling store_evidence
    try:
        spec = importlib.util.spec_from_file_location("paired", ROOT / "experiments" / "paired.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return module


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    run_grid(make_tiny(epochs=2), ["ls", "go4align", "stl"], [0, 1], out, progress=False, command="go4align bench tiny")
    return out


def by_hand(grid: Path, label: str, seed: int) -> float:
    stl = [read_result(grid / "runs" / "stl" / f"seed{k}" / "result.json") for k in (0, 1)]
    reference = {name: statistics.fmean(run["metrics"][name] for run in stl) for name in stl[0]["metrics"]}
    run = read_result(grid / "runs" / label / f"seed{seed}" / "result.json")
    return delta_m(run["metrics"], reference, run["directions"])


def test_delta_m_per_seed_is_against_the_mean_of_the_stl_runs(paired, grid):
    scores, stl_seeds = paired.delta_m_by_seed(grid)
    assert stl_seeds == [0, 1] and sorted(scores) == ["go4align", "ls"]
    for label in scores:
        assert scores[label] == {seed: pytest.approx(by_hand(grid, label, seed), abs=1e-12) for seed in (0, 1)}


def test_the_summary_shows_means_and_paired_differences(paired, grid):
    lines = paired.summary(grid, ["ls"])
    assert "    go4align bench tiny" in lines
    row = next(line for line in lines if line.startswith("| go4align |"))
    ours, theirs = ([by_hand(grid, label, seed) for seed in (0, 1)] for label in ("go4align", "ls"))
    differences = [a - b for a, b in zip(ours, theirs)]
    assert f"| {paired.mean_se(ours)} |" in row
    lower = sum(d < 0 for d in differences)
    assert row.endswith(f"| {paired.mean_se(differences)} ({lower}/2) |")
    assert next(line for line in lines if line.startswith("| ls |")).endswith("|  |")


def test_mean_se_and_paired_by_hand(paired):
    assert paired.mean_se([1.0, 3.0]) == "2.00 ± 1.00"
    assert paired.mean_se([4.0]) == "4.00"
    assert paired.paired_difference({0: 1.0, 1: 5.0, 2: 9.0}, {0: 2.0, 1: 2.0}) == "1.00 ± 2.00 (1/2)"
    assert paired.paired_difference({0: 1.0}, {1: 2.0}) == "-"


def test_store_writes_the_summary_the_grid_and_compact_runs(paired, grid, tmp_path):
    summary = paired.store(grid, tmp_path / "E2", ["ls"])
    assert summary.read_text().startswith(f"# {grid.name}: paired comparison")
    assert json.loads((tmp_path / "E2" / "grid.json").read_text()) == json.loads((grid / "grid.json").read_text())
    stored = json.loads((tmp_path / "E2" / "runs" / "go4align" / "seed1" / "result.json").read_text())
    assert "trace" not in stored and "epochs" not in stored
    assert stored["metrics"] == read_result(grid / "runs" / "go4align" / "seed1" / "result.json")["metrics"]


def test_without_stl_or_a_baseline_the_error_names_it(paired, grid, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"baseline\(s\) \['famo'\] have no complete run"):
        paired.summary(grid, ["famo"])
    bare = tmp_path / "bare"
    run_grid(make_tiny(epochs=1), ["ls"], [0], bare, progress=False)
    assert paired.main([str(bare), str(tmp_path / "out")]) == 2
    assert "no complete STL run" in capsys.readouterr().err
