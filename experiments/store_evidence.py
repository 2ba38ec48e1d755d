"""Copy the evidence runs into results/ at a size a repository can hold.

The grids under ``runs/evidence/grids`` hold every run's full ``result.json`` (~0.5 MB each: the
per-epoch history and a per-step trace). What results/ keeps of each run is its reported metrics,
cost, provenance and, for the GO4Align runs, the trace's ``detail`` (smooth-alignment Q and the
indicators at up to 50 steps, a few KB), so that figures of Q can be drawn from the stored files.
Each grid's ``grid.json`` (the commands as typed, with their provenance) is copied as it is.

    PYTHONPATH=src python experiments/store_evidence.py --runs runs/evidence --out results/evidence
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from go4align.grid_file import GRID_FILE
from go4align.result_file import RESULT_FILE, read_result

DROPPED = ("epochs", "trace")


def compact(result: dict) -> dict:
    """A run's result without its per-epoch history and per-step trace; GO4Align's detail stays."""
    record = {key: value for key, value in result.items() if key not in DROPPED}
    detail = (result.get("trace") or {}).get("detail")
    if detail:
        record["trace_detail"] = detail
    return record


def store(runs: Path, out: Path) -> int:
    """Copy every grid's grid.json and a compact record of each run; returns the runs stored."""
    count = 0
    for grid in sorted(runs.glob(f"grids/*/*/{GRID_FILE}")):
        target = out / grid.parent.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grid, target / GRID_FILE)
        for result in sorted(grid.parent.glob(f"runs/**/{RESULT_FILE}")):
            relative = result.parent.relative_to(grid.parent / "runs")
            path = target / "runs" / relative.with_suffix(".json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(compact(read_result(result)), indent=None) + "\n")
            count += 1
    for summary in sorted(runs.glob("E*/*.md")) + sorted(runs.glob("E*/*.txt")):
        target = out / summary.relative_to(runs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary, target)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/evidence"), help="the evidence runner's --out")
    parser.add_argument("--out", type=Path, default=Path("results/evidence"))
    args = parser.parse_args()
    if not (args.runs / "grids").is_dir():
        parser.error(f"--runs {str(args.runs)!r} holds no grids/ folder (run experiments/evidence.py first)")
    print(f"stored {store(args.runs, args.out)} runs under {args.out}")


if __name__ == "__main__":
    main()
