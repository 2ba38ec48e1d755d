"""The evidence under results/ holds the runs behind its tables, with GO4Align's traces: a clone
that had only the summaries (as when .gitignore's ``runs/`` hid them) fails here."""

import json
from pathlib import Path

import pytest

EVIDENCE = Path(__file__).resolve().parents[2] / "results" / "evidence"
GRIDS = sorted(EVIDENCE.glob("grids/*/e*")) + [EVIDENCE / "E2"]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda path: str(path.relative_to(EVIDENCE)))
def test_every_stored_grid_keeps_its_runs_and_go4aligns_traces(grid):
    labels = json.loads((grid / "grid.json").read_text())["methods"]
    # the synthetic grids' compact runs (runs/<label>/seed<N>.json) and E2's (runs/<label>/seed<N>/result.json)
    runs = {path: path.parent.name for path in (grid / "runs").glob("*/seed*.json")}
    runs.update({path: path.parent.parent.name for path in (grid / "runs").glob("*/seed*/result.json")})
    assert set(runs.values()) >= set(labels) - {"stl"}, f"{grid}: runs missing"
    go4align = [path for path, label in runs.items() if label.startswith("go4align")]
    assert go4align, f"{grid}: no GO4Align run"
    for path in go4align:
        detail = json.loads(path.read_text())["trace_detail"]
        steps = len(detail["steps"])
        assert steps > 1 and len(detail["smooth_alignment"]) == len(detail["indicators"]) == steps, path
