"""GO4Align's first and steady step at many tasks (M = 10,000 by default, K = 2 and 5).

Run: PYTHONPATH=src python perf/go4align_many_tasks.py [--tasks 10000] [--groups 2,5] [--steps 11]

A fresh method per K (so its first step pays any table construction), losses uniform in
[0.1, 1.1), one intra-op thread. Prints the first step and the median of the following steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from go4align.weighting import GO4Align


def measure(tasks: int, groups: int, steps: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    method = GO4Align(tasks, groups)
    losses = [torch.rand(tasks, generator=generator) + 0.1 for _ in range(steps)]
    times = []
    for loss in losses:
        start = time.perf_counter()
        method(loss)
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--groups", default="2,5")
    parser.add_argument("--steps", type=int, default=11)
    args = parser.parse_args(argv)
    if args.tasks < 2 or args.steps < 2:
        parser.error(f"--tasks and --steps must be >= 2, got {args.tasks} and {args.steps}")
    torch.set_num_threads(1)
    for groups in (int(k) for k in args.groups.split(",")):
        first, steady = measure(args.tasks, groups, args.steps)
        print(f"M={args.tasks} K={groups}: first step {first * 1e3:.0f} ms, steady step (median) {steady * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
