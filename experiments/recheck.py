"""Re-train stored evidence runs with this checkout and compare their metrics bit for bit.

The stored E1/E3 grids (``results/evidence/grids``) were filled over several sessions, so their
runs record different ``provenance.git_commit`` values. This re-trains, in every grid, one
GO4Align run and one run of another method of each commit found there (the first by method
label and seed; STL runs are left out) and
says whether its metrics are identical to the stored ones: a table drawn from several commits is
one code version's when they all are. One thread, as the grids ran.

    PYTHONPATH=src python experiments/recheck.py results/evidence/grids
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from evidence import SLUGS, design_benchmark

from go4align.train import train_run
from go4align.train.grid import prepare_grid
from go4align.train.spec import parse_method_spec


def samples(grids: Path) -> list[tuple[str, int, str, int, str, Path]]:
    """``(design, epochs, label, seed, commit, path)``: per grid and commit, the first GO4Align
    run and the first run of another method."""
    designs = {slug: design for design, slug in SLUGS.items()}
    found: dict[tuple[str, int, str, bool], tuple] = {}
    for path in sorted(grids.glob("*/e*/runs/*/seed*.json")):
        slug, budget, _, label, name = path.relative_to(grids).parts
        if label == "stl" or slug not in designs:
            continue
        commit = json.loads(path.read_text())["provenance"]["git_commit"]
        key = (slug, int(budget[1:]), commit, label.startswith("go4align"))
        found.setdefault(key, (designs[slug], int(budget[1:]), label, int(name[4:-5]), commit, path))
    return list(found.values())


def recheck(design: str, epochs: int, label: str, seed: int, path: Path) -> bool:
    """Whether re-training the stored run gives its stored metrics exactly."""
    benchmark = design_benchmark(design, epochs)
    (spec,) = prepare_grid(benchmark, [parse_method_spec(label)], [seed])
    with tempfile.TemporaryDirectory() as directory:
        result = train_run(benchmark, spec, seed, directory, progress=False)
    return result["metrics"] == json.loads(path.read_text())["metrics"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", type=Path, help="the stored grids, e.g. results/evidence/grids")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| design | epochs | run | stored at commit | re-trained here |\n|---|---|---|---|---|")
    differ = 0
    for design, epochs, label, seed, commit, path in samples(args.grids):
        same = recheck(design, epochs, label, seed, path)
        differ += not same
        print(f"| {design} | {epochs} | {label} seed {seed} | {commit[:12]} | {'identical' if same else 'DIFFERENT'} |")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
