"""The trainer's overhead: a go4align Trainer against a bare training loop on digits.

Run: python perf/trainer_overhead.py [--repeats 7] [--epochs 20] [--quick]

Both sides train the same model (``bench.build_model(seed)``) on the same batches (the same
seeded data order, whole batches cut by the dataset's ``get_batch``) with the same optimiser and
weighting; each step is ``zero_grad``, forward, ``weighting.backward``, ``optimizer.step`` and
``weighting.after_step``. The bare loop is what a user writes by hand; the trainer adds what it
is for: the per-step bookkeeping (epoch losses, step times, the trace), and per epoch the
evaluation, the history, a verified checkpoint and ``result.json``.

Two ratios per method, trainer / bare loop:

* training time: the CPU time of the epochs' training loops alone (the trainer's
  ``train_epoch``, timed from outside; the bare loop's epochs);
* whole run: the CPU time of everything, from building the model to the last file written,
  the bare loop also evaluating val and test and saving ``model``, optimiser and weighting
  with ``torch.save`` once an epoch.

CPU time (``time.process_time``) with one torch thread, so that waiting for a core on a busy
machine does not count; the four cases (2 methods x 2 sides) run interleaved in a new seeded
random order in every repeat (after one dropped warm-up round). The table gives the median
time of each case and, as the ratio, the median over the repeats of trainer / bare within one
repeat: on a shared machine whose speed drifts between phases, a ratio of runs seconds apart
is steadier than a ratio of medians taken minutes apart.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from go4align.benchmarks import get_benchmark
from go4align.train import Trainer, parse_method_spec
from go4align.train.trainer import param_groups

METHODS = ("ls", "go4align")


def bare_run(bench, method: str, seed: int, run_dir: Path) -> float:
    """Train ``bench`` by hand; returns the CPU seconds of the training loops."""
    torch.manual_seed(seed)
    protocol = bench.protocol
    model = bench.build_model(seed)
    weighting = parse_method_spec(method).build(bench.num_tasks, protocol.method_options)
    optimizer = protocol.build_optimizer(param_groups(model, weighting))
    shared = model.shared_parameters()
    train = bench.dataset("train")
    order = torch.Generator().manual_seed(seed)
    training = 0.0
    for _ in range(protocol.epochs):
        start = time.process_time()
        model.train()
        for indices in torch.randperm(len(train), generator=order).split(protocol.batch_size):
            inputs, targets = train.get_batch(indices)
            optimizer.zero_grad(set_to_none=True)
            predictions, representation = model(inputs, return_representation=True)
            losses = bench.losses(predictions, targets)
            weighting.backward(losses, shared_parameters=shared, shared_representation=representation)
            optimizer.step()

            def closure(inputs=inputs, targets=targets):
                with torch.no_grad():
                    return bench.losses(model(inputs), targets)

            weighting.after_step(closure)
        weighting.end_epoch()
        training += time.process_time() - start
        for split in ("val", "test"):
            evaluate(bench, model, split)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "weighting": weighting.state_dict()}
        torch.save(state, run_dir / "checkpoint.pt")
    return training


@torch.no_grad()
def evaluate(bench, model, split: str) -> dict[str, float]:
    dataset, accumulator = bench.dataset(split), bench.metrics()
    model.eval()
    for indices in torch.arange(len(dataset)).split(bench.protocol.eval_batch_size or bench.protocol.batch_size):
        inputs, targets = dataset.get_batch(indices)
        accumulator.update(model(inputs), targets)
    return accumulator.compute()


class TimedTrainer(Trainer):
    """The Trainer, with the CPU time of its training loops summed from outside."""

    training = 0.0

    def train_epoch(self) -> None:
        start = time.process_time()
        super().train_epoch()
        self.training += time.process_time() - start


def trainer_run(bench, method: str, seed: int, run_dir: Path) -> float:
    trainer = TimedTrainer(bench, parse_method_spec(method), seed, run_dir, progress=False)
    trainer.fit()
    return trainer.training


def measure(bench, repeats: int, seed: int = 0) -> dict[tuple[str, str], dict[str, list[float]]]:
    """CPU seconds of every (method, side), training loops and whole run, ``repeats`` times each."""
    cases = [(method, side) for method in METHODS for side in ("bare", "trainer")]
    times = {case: {"training": [], "whole": []} for case in cases}
    shuffler = random.Random(seed)
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(repeats + 1):  # the first round warms up the process and is dropped
            shuffler.shuffle(cases)
            for method, side in cases:
                run_dir = Path(scratch) / f"{method}-{side}-{repeat}"
                run_dir.mkdir()
                start = time.process_time()
                training = (bare_run if side == "bare" else trainer_run)(bench, method, seed, run_dir)
                whole = time.process_time() - start
                if repeat:
                    times[method, side]["training"].append(training)
                    times[method, side]["whole"].append(whole)
    return times


def table(times: dict, epochs: int, repeats: int) -> list[str]:
    lines = [
        f"digits, {epochs} epochs, median CPU seconds over {repeats} interleaved repeats (ratio: median of "
        "the repeats' trainer / bare), 1 thread "
        f"(torch {torch.__version__}, {platform.machine()}, Python {platform.python_version()})",
        "",
        "| method | training: bare | training: trainer | ratio | whole run: bare | whole run: trainer | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        bare, trainer = times[method, "bare"], times[method, "trainer"]
        cells = []
        for part in ("training", "whole"):
            ratio = statistics.median(t / b for t, b in zip(trainer[part], bare[part]))
            cells += [
                f"{statistics.median(bare[part]):.3f} s",
                f"{statistics.median(trainer[part]):.3f} s",
                f"{ratio:.3f}",
            ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of every case (default 7)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of every run (default 20, the protocol's)")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 repeat: checks that the script runs")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        parser.error(f"--repeats and --epochs must be >= 1, got {args.repeats} and {args.epochs}")
    repeats, epochs = (1, 2) if args.quick else (args.repeats, args.epochs)
    torch.set_num_threads(1)
    bench = get_benchmark("digits").with_protocol(epochs=epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a method's warnings (GO4Align's max_scale) would repeat every run
        times = measure(bench, repeats)
    print("\n".join(table(times, epochs, repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
