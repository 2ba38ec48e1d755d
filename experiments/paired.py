"""Paired comparison of a grid's methods against baselines, and its storage under results/.

E2 of docs/results.md runs QM9 at the reduced protocol (``configs/qm9-reduced.toml``) with LS, SI,
FAMO, GO4Align in the library's default, in the paper's form (``go4align-paper``) and in the
paper's form with ``beta`` scaled so that ``beta x steps`` matches the paper's QM9 run (a
deviation from the paper, labelled as such), and STL at the same budget as the reference. This
script turns any such grid into a table: Delta-m (%) per method, mean +- standard error over its
complete seeds, against the mean of the grid's complete STL runs; and for each method, the paired
difference (same seed) to each baseline, with its standard error and the number of seeds where
the method is lower (the formatting of experiments/evidence.py, whose E1/E3 tables read alike). It then stores the grid at a size a repository holds: grid.json as it is,
each run's compact record (metrics, cost, provenance, GO4Align's trace detail; see
``store_evidence.compact``) and the summary with the commands that made the grid.

    # the grid (two processes may share it: each takes the runs no other holds)
    go4align bench --config configs/qm9-reduced.toml --methods ls,go4align,go4align-paper,go4align-paper:beta=0.0546,famo,si,stl --seeds 0 --threads 1 --out runs/qm9-reduced
    go4align bench --config configs/qm9-reduced.toml --methods ls,go4align,go4align-paper,go4align-paper:beta=0.0546,famo,si --seeds 1,2 --threads 1 --out runs/qm9-reduced
    PYTHONPATH=src python experiments/paired.py runs/qm9-reduced results/evidence/E2 --baselines ls,famo

Nothing is selected on test metrics: each run's metrics follow its protocol's reporting rule.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from evidence import mean_se, paired_difference
from store_evidence import compact

from go4align.grid_file import GRID_FILE, read_grid
from go4align.metrics import delta_m
from go4align.report.results import load_grid
from go4align.result_file import RESULT_FILE, read_result


def delta_m_by_seed(grid_dir: Path) -> tuple[dict[str, dict[int, float]], list[int]]:
    """Delta-m (%) of every complete run, ``{label: {seed: value}}``, against the mean of the
    grid's complete STL runs; and the STL seeds used. A grid without a complete STL run is an
    error naming the folder."""
    grid = load_grid(grid_dir)
    stl = [run for run in grid.stl if run.complete]
    if not stl:
        raise ValueError(f"{grid_dir}: no complete STL run, so no Delta-m; add 'stl' to the grid's methods")
    names = list(stl[0].metrics)
    reference = {name: statistics.fmean(run.metrics[name] for run in stl) for name in names}
    directions = stl[0].directions
    scores = {
        label: {run.seed: delta_m(run.metrics, reference, directions) for run in runs if run.complete}
        for label, runs in grid.runs.items()
    }
    return {label: seeds for label, seeds in scores.items() if seeds}, sorted(run.seed for run in stl)


def summary(grid_dir: Path, baselines: Sequence[str]) -> list[str]:
    """The summary's Markdown lines: the commands, the Delta-m table and the paired differences."""
    scores, stl_seeds = delta_m_by_seed(grid_dir)
    missing = [label for label in baselines if label not in scores]
    if missing:
        raise ValueError(f"{grid_dir}: baseline(s) {missing} have no complete run; the grid has {sorted(scores)}")
    commands = [entry["command"] for entry in read_grid(grid_dir / GRID_FILE).get("invocations") or []]
    lines = ["Made by:", ""] + [f"    {command}" for command in commands]
    lines += [
        "",
        f"Delta-m (%, lower is better) against the mean of the grid's complete STL runs (seeds "
        f"{', '.join(map(str, stl_seeds))}); mean ± standard error over each method's complete seeds; "
        "paired differences over the seeds both methods have.",
        "",
        "| method | seeds | Delta-m % | " + " | ".join(f"- {label} (paired)" for label in baselines) + " |",
        "|---|---|---|" + "---|" * len(baselines),
    ]
    for label, seeds in scores.items():
        values = [seeds[seed] for seed in sorted(seeds)]
        cells = ["" if label == baseline else paired_difference(seeds, scores[baseline]) for baseline in baselines]
        lines.append(
            f"| {label} | {', '.join(map(str, sorted(seeds)))} | {mean_se(values)} | " + " | ".join(cells) + " |"
        )
    return lines


def store(grid_dir: Path, out: Path, baselines: Sequence[str]) -> Path:
    """Write ``out``/summary.md, copy grid.json and a compact record of every run; returns the summary."""
    lines = summary(grid_dir, baselines)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid_dir / GRID_FILE, out / GRID_FILE)
    for path in sorted((grid_dir / "runs").glob(f"*/seed*/{RESULT_FILE}")):
        target = out / "runs" / path.parent.relative_to(grid_dir / "runs") / RESULT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(compact(read_result(path)), indent=1) + "\n")
    destination = out / "summary.md"
    destination.write_text(f"# {grid_dir.name}: paired comparison\n\n" + "\n".join(lines) + "\n")
    return destination


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grid", type=Path, help="a grid folder written by go4align bench (holds grid.json)")
    parser.add_argument("out", type=Path, help="where to store the summary and the compact runs")
    parser.add_argument("--baselines", default="ls,famo", help="comma-separated method labels (default ls,famo)")
    args = parser.parse_args(argv)
    try:
        print(store(args.grid, args.out, [label for label in args.baselines.split(",") if label]))
    except (ValueError, OSError) as error:
        print(f"paired.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
