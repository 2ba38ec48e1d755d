"""Time and peak memory of one training step for every weighting method, relative to LS.

One small hard-sharing MLP (a shared trunk, one linear head per task, regression losses), one
fixed batch, plain SGD. A training step is what the protocol prescribes for every method:
``zero_grad``, forward, ``backward(losses, shared_parameters=..., shared_representation=...)``,
``optimizer.step()``, ``after_step(closure)`` (FAMO's closure costs one extra forward) and
``end_epoch()``. Two reference lines are added: ``per-task loop`` (``M`` plain backward passes,
``loss_m.backward(retain_graph=True)``, the floor of any method that needs ``M`` task gradients)
and ``imtl-g (batched)`` (IMTL-G with the vmapped Jacobian, to compare the two ways of collecting
it).

Time: median (or ``--statistic min``) over ``--repeats`` rounds after two warm-up rounds, each
sample timing as many consecutive steps as last ~20 ms with LS; methods
run round-robin within a round, so that a change of machine load hits all of them alike; ratio to
LS from the same run.
Memory: peak of the tensor memory allocated during one step above what was live before it, from
``torch.profiler``'s CPU memory events (net allocation per operator, ordered by start time: an
approximation that misses peaks inside a single operator; Python objects are not counted).

    PYTHONPATH=src python perf/methods_cost.py                 # M in {2, 3, 11, 40}, one thread, ~2-4 min
    PYTHONPATH=src python perf/methods_cost.py --tasks 3 --repeats 5 --methods ls mgda famo
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
import warnings

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from go4align.weighting import available, make

REFERENCE_LOOP = "per-task loop"
BATCHED = "imtl-g (batched)"


class Model(nn.Module):
    def __init__(self, num_tasks: int, features: int, hidden: int, batch: int):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(num_tasks))
        self.x = torch.randn(batch, features)
        self.y = torch.randn(batch, num_tasks) * torch.logspace(0, 1, num_tasks)

    def forward(self):
        z = self.trunk(self.x)
        losses = [((head(z).squeeze(1) - self.y[:, m]) ** 2).mean() for m, head in enumerate(self.heads)]
        return torch.stack(losses), z


class PerTaskLoop:
    """The reference line: one plain backward per task."""

    def parameters(self):
        return []

    def backward(self, losses, **_):
        for m, loss in enumerate(losses):
            loss.backward(retain_graph=m < len(losses) - 1)

    def after_step(self, closure=None):
        pass

    def end_epoch(self):
        pass


def build(name: str, num_tasks: int):
    if name == REFERENCE_LOOP:
        return PerTaskLoop()
    if name == BATCHED:
        return make("imtl-g", num_tasks, jacobian="batched")
    return make(name, num_tasks)


def make_step(name: str, num_tasks: int, sizes: dict):
    model = Model(num_tasks, **sizes)
    method = build(name, num_tasks)
    optimiser = torch.optim.SGD(list(model.parameters()) + list(method.parameters()), lr=1e-3)
    shared = list(model.trunk.parameters())

    def step():
        optimiser.zero_grad(set_to_none=True)
        losses, z = model()
        method.backward(losses, shared_parameters=shared, shared_representation=z)
        optimiser.step()
        method.after_step(lambda: model()[0])
        method.end_epoch()

    return step


def peak_memory(step) -> int:
    """Bytes: peak of the running sum of tensor allocations during one step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    return max(itertools.accumulate((e.self_cpu_memory_usage for e in events), initial=0))


def measure(names, num_tasks, sizes, repeats, memory, statistic):
    steps = {name: make_step(name, num_tasks, sizes) for name in names}
    times = {name: [] for name in names}
    # each sample runs enough steps to last ~20 ms of LS, above timer and scheduler granularity
    start = time.perf_counter()
    steps["ls"]()
    count = max(1, math.ceil(0.02 / (time.perf_counter() - start)))
    for round_ in range(repeats + 2):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(count):
                step()
            if round_ >= 2:
                times[name].append((time.perf_counter() - start) / count)
    summary = statistics.median if statistic == "median" else min
    result = {name: {"time": summary(t)} for name, t in times.items()}
    if memory:
        for name, step in steps.items():
            result[name]["memory"] = peak_memory(step)
    return result


def table(results, tasks, key, unit, scale):
    names = list(results[tasks[0]])
    lines = ["| method | " + " | ".join(f"M = {m}" for m in tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name in names:
        cells = []
        for m in tasks:
            value, base = results[m][name][key], results[m]["ls"][key]
            cells.append(f"{value / base:.2f}x ({value * scale:.1f} {unit})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 3, 11, 40])
    parser.add_argument("--methods", nargs="+", default=None, help="registry names (default: all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--statistic",
        choices=["median", "min"],
        default="median",
        help="summary of the repeats; 'min' resists other processes' load best",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 1 by default: on a shared 2-core machine two threads mostly "
        "measured OpenMP waits (LS took 11 to 126 ms a step from one M to the next)",
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = []
    for name in args.methods or available():
        try:
            make(name, 2)
            names.append(name)
        except ImportError as error:
            print(f"skipping {name}: {error}")
    names = ["ls"] + [n for n in names if n != "ls"] + [REFERENCE_LOOP, BATCHED]
    sizes = {"features": args.features, "hidden": args.hidden, "batch": args.batch}
    results = {}
    for m in args.tasks:
        start = time.perf_counter()
        results[m] = measure(names, m, sizes, args.repeats, not args.no_memory, args.statistic)
        print(f"M = {m}: measured in {time.perf_counter() - start:.0f} s", flush=True)
    print(
        f"\nOne training step, MLP {args.features}-{args.hidden}-{args.hidden} + M linear heads, batch {args.batch}, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}; {args.statistic} of {args.repeats}.\n"
    )
    print("Time per step, ratio to LS (milliseconds):\n")
    print(table(results, args.tasks, "time", "ms", 1e3))
    if not args.no_memory:
        print("\nPeak tensor memory allocated during a step, ratio to LS (MiB):\n")
        print(table(results, args.tasks, "memory", "MiB", 1 / 2**20))


if __name__ == "__main__":
    main()
