"""experiments/recheck.py: re-training a stored evidence run gives its metrics bit for bit, and a
stored run whose metrics differ is reported."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def modules():
    sys.path.insert(0, str(ROOT / "experiments"))  # recheck.py imports its sibling evidence
    try:
        loaded = {}
        for name in ("evidence", "store_evidence", "recheck"):
            spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
            loaded[name] = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded[name]
            spec.loader.exec_module(loaded[name])
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return loaded


@pytest.fixture(scope="module")
def stored(modules, tmp_path_factory):
    """A stored grid as results/evidence keeps it: design A at 2 epochs, go4align and ls seed 0."""
    from go4align.train import run_grid

    runs = tmp_path_factory.mktemp("runs")
    run_grid(modules["evidence"].design_benchmark("A", 2), ["go4align", "ls"], [0], runs, progress=False)
    grids = tmp_path_factory.mktemp("stored") / "grids"
    for label in ("go4align", "ls"):
        result = json.loads((runs / "runs" / label / "seed0" / "result.json").read_text())
        path = grids / "A" / "e2" / "runs" / label / "seed0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(modules["store_evidence"].compact(result)))
    return grids


def test_a_stored_run_retrains_to_identical_metrics(modules, stored, capsys):
    samples = modules["recheck"].samples(stored)
    assert sorted((s[0], s[1], s[2], s[3]) for s in samples) == [("A", 2, "go4align", 0), ("A", 2, "ls", 0)]
    assert modules["recheck"].main([str(stored)]) == 0
    out = capsys.readouterr().out
    assert out.count("| identical |") == 2 and "DIFFERENT" not in out


def test_a_stored_run_with_other_metrics_is_reported(modules, stored, capsys):
    path = stored / "A" / "e2" / "runs" / "ls" / "seed0.json"
    record = json.loads(path.read_text())
    name = next(iter(record["metrics"]))
    record["metrics"][name] *= 1 + 1e-12
    path.write_text(json.dumps(record))
    assert modules["recheck"].main([str(stored)]) == 1
    assert "| ls seed 0 |" in (line := next(l for l in capsys.readouterr().out.splitlines() if "DIFFERENT" in l))
    assert line.endswith("| DIFFERENT |")
