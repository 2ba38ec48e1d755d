"""Training-step time of every weighting method on the QM9 benchmark's MPNN, relative to LS.

The epoch times in a grid's results come from runs made at different times, and on a shared
machine under different loads; this script times the step itself in one run. One real batch of
the reduced protocol's training molecules (batch 120, as ``configs/qm9-cpu.toml``), the
benchmark's own model and losses, Adam, and the trainer's step: ``zero_grad``, forward with the
shared representation, ``backward(losses, shared_parameters=..., shared_representation=...)``,
``optimizer.step()``, ``after_step(closure)``. Methods take turns within each round so that a
change of load hits all of them alike; median over ``--repeats`` rounds after one warm-up round;
every ratio is to LS in the same run. Needs the ``qm9`` extra the first time (feature cache).

    PYTHONPATH=src python perf/qm9_methods_step.py [--methods ls go4align ...] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import default_collate

from go4align.benchmarks import get_benchmark
from go4align.weighting import available, make


def make_step(benchmark, name: str, inputs, targets):
    torch.manual_seed(0)
    model = benchmark.model(0)
    options = dict(benchmark.protocol.method_options.get(name, {}))
    weighting = make(name, len(benchmark.task_names), **options)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(weighting.parameters()), lr=1e-3)
    shared = model.shared_parameters()

    def closure():
        with torch.no_grad():
            return benchmark.losses(model(inputs), targets)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        predictions, representation = model(inputs, return_representation=True)
        losses = benchmark.losses(predictions, targets)
        weighting.backward(losses, shared_parameters=shared, shared_representation=representation)
        optimizer.step()
        weighting.after_step(closure)

    step.model = model
    return step


def first_batch(benchmark, size: int):
    """The first ``size`` training examples, collated as the trainer does."""
    train = benchmark.datasets("train")
    collate = benchmark.collate_fn or default_collate
    return collate([train[i] for i in range(size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=None, help="registry names (default: all but stl)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark = get_benchmark("qm9", protocol="reduced", train_size=args.batch_size, val_size=1, test_size=1)
    inputs, targets = first_batch(benchmark, args.batch_size)
    names = [n for n in (args.methods or available()) if n != "stl"]
    names = ["ls"] + [n for n in names if n != "ls"]
    steps = {}
    for name in names:
        try:
            steps[name] = make_step(benchmark, name, inputs, targets)
        except ImportError as error:
            print(f"skipping {name}: {error}")
    times = {name: [] for name in steps}
    for round_ in range(args.repeats + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if round_:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["ls"])
    print(
        f"QM9 MPNN, batch {args.batch_size}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
        f"median of {args.repeats} steps, methods alternating\n"
    )
    print("| method | step (ms) | step / LS |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
