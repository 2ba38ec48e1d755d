"""A stored STL run (results/<grid>/stl-seed<k>.json) serves a later grid at the same budget, as
results/README.md describes: copied to runs/stl/seed<k>/result.json, it is found complete, not
trained again, and the report takes Delta-m against it."""

import json
import shutil

import pytest
from helpers.training import make_tiny

from go4align.report import load_grid, summarise
from go4align.train import run_dir_of, run_grid


def budget():
    """One configuration for both grids: a stored STL run is a reference only at its own budget."""
    return make_tiny(epochs=1, reporting_rule="last_k_mean:1")


def test_a_stored_stl_run_is_reused_not_retrained(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    run_grid(budget(), ["stl"], [0], first, progress=False)
    stored = tmp_path / "stl-seed0.json"  # what results/<grid>/ keeps of the first grid
    shutil.copy(run_dir_of(first, "stl", 0) / "result.json", stored)

    run_dir_of(later, "stl", 0).mkdir(parents=True)
    shutil.copy(stored, run_dir_of(later, "stl", 0) / "result.json")

    results = run_grid(budget(), ["ls", "stl"], [0], later, progress=False)
    assert results["stl", 0] == json.loads(stored.read_text())
    assert [path.name for path in run_dir_of(later, "stl", 0).iterdir()] == ["result.json"]  # nothing trained
    reference = summarise(load_grid(later)).reference
    assert reference.source == "stl-runs"
    assert reference.values == pytest.approx(json.loads(stored.read_text())["metrics"])
