"""Pilot behind GO4Align's default options (max_scale, smoothing, beta): design A of
design A of experiments/evidence.py (synthetic, 20 tasks in 4 groups, hidden_dim 4), 100 epochs, 3 seeds,
each arm against STL (seed 0) at the same budget. Selection reads the VALIDATION split only: Delta-m of
the mean of the last 5 epochs' validation MSEs against STL's; the test Delta-m is printed beside
it for the record, never used to choose.

    PYTHONPATH=src python experiments/pilot_defaults.py --out results/evidence/pilot [--design A]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evidence import DESIGNS, design_benchmark, split_delta_m  # noqa: E402

from go4align.train import run_grid  # noqa: E402

ARMS = [
    "go4align-paper",
    "go4align:preset=paper,beta=0",
    "go4align:max_scale=Infinity,strict=true",
    "go4align",
    "go4align:max_scale=10",
    "go4align:smoothing=absolute",
    "go4align:beta=0.01",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/evidence/pilot")
    parser.add_argument("--design", default="A", choices=sorted(DESIGNS))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--stl-seeds", default="0", help="the reference (arms are compared with each other)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    benchmark = design_benchmark(args.design, args.epochs)
    out = Path(args.out) / f"{args.design}-e{args.epochs}"
    stl_seeds = [int(s) for s in args.stl_seeds.split(",")]
    stl = list(run_grid(benchmark, ["stl"], stl_seeds, out, progress=False).values())
    results = run_grid(benchmark, ARMS, seeds, out, progress=False)
    rows = {}
    for arm in ARMS:
        val = [split_delta_m(results[arm, s], stl, "val") for s in seeds]
        test = [split_delta_m(results[arm, s], stl, "test") for s in seeds]
        rows[arm] = {"val": val, "test": test}
        print(
            f"{arm:45s} val {sum(val) / len(val):9.2f} {[f'{v:.2f}' for v in val]}  test {sum(test) / len(test):9.2f}"
        )
    (out / "pilot.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
