"""Training-step time of every weighting method on a benchmark's own model, relative to LS.

The epoch times in a grid's results come from runs made at different times, and on a shared
machine under different loads; this script times the step itself in one run. One real batch of
the benchmark's training data (QM9: the reduced protocol's molecules, batch 120 as
``configs/qm9-cpu.toml``; Multi-Fashion: its MultiLeNet on 256 pairs as
``configs/fashion-cpu.toml``), the benchmark's own model and losses, Adam, and the trainer's
step: ``zero_grad``, forward with the shared representation,
``backward(losses, shared_parameters=..., shared_representation=...)``, ``optimizer.step()``,
``after_step(closure)``. Methods take turns within each round so that a change of load hits all
of them alike (in a new seeded random order each round: a step's time depends on the step before
it); median over ``--repeats`` rounds after one warm-up round; every ratio is to LS in the same
run. Needs the benchmark's data (QM9: the ``qm9`` extra, for the feature cache; Multi-Fashion:
Debian's ``dataset-fashion-mnist``).

    PYTHONPATH=src python perf/methods_step.py [--benchmark qm9|fashion] [--methods ls go4align ...]
        [--repeats 5] [--threads 1] [--batch-size N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch.utils.data import default_collate

from go4align.benchmarks import get_benchmark
from go4align.weighting import available, make

#: benchmark -> (factory options besides the split sizes, default batch, model)
BENCHMARKS = {
    "qm9": ({"protocol": "reduced"}, 120, "QM9 MPNN"),
    "fashion": ({}, 256, "Multi-Fashion MultiLeNet"),
}


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


def load(name: str, batch_size: int | None = None):
    """The benchmark ``name`` of :data:`BENCHMARKS` with just one batch of training data (its CPU
    config's size by default): ``benchmark, (inputs, targets), batch_size, title``."""
    options, default_batch, title = BENCHMARKS[name]
    batch_size = default_batch if batch_size is None else batch_size
    benchmark = get_benchmark(name, **options, train_size=batch_size, val_size=1, test_size=1)
    return benchmark, first_batch(benchmark, batch_size), batch_size, title


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default="qm9")
    parser.add_argument("--methods", nargs="+", default=None, help="registry names (default: all but stl)")
    parser.add_argument("--repeats", type=positive, default=5)
    parser.add_argument("--batch-size", type=positive, default=None, help="default: the benchmark's CPU config")
    parser.add_argument("--threads", type=positive, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark, (inputs, targets), batch_size, title = load(args.benchmark, args.batch_size)
    names = [n for n in (args.methods or available()) if n != "stl"]
    names = ["ls"] + [n for n in names if n != "ls"]
    steps = {}
    for name in names:
        try:
            steps[name] = make_step(benchmark, name, inputs, targets)
        except ImportError as error:
            print(f"skipping {name}: {error}")
    times = {name: [] for name in steps}
    order, shuffler = list(steps.items()), random.Random(0)
    for round_ in range(args.repeats + 1):
        shuffler.shuffle(order)  # no method always runs first, or after the same one
        for name, step in order:
            start = time.perf_counter()
            step()
            if round_:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["ls"])
    print(
        f"{title}, batch {batch_size}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
        f"median of {args.repeats} steps, methods in a shuffled order each round\n"
    )
    print("| method | step (ms) | step / LS |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
