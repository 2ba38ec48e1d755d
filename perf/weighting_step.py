"""Cost of one GO4Align weighting step, and of a training step with GO4Align relative to LS.

Run: .venv/bin/python perf/weighting_step.py [--repeats 7] [--quick] [--threads N] [--load N]
    [--weighting-only] [--against REV]

Every number is the median of --repeats timed blocks; the methods of one table are timed in
alternation inside each block (in a new seeded random order each block) so that machine load
affects them alike, and every ratio compares numbers of the same run. The weighting table gives
the process's CPU time per step (what a step costs, whatever else the machine runs) and its wall
time (what it waits: with two threads on a busy machine, an operation that enters a parallel
region waits for a descheduled thread). ``--load N`` keeps N busy-looping processes running
while it measures, to show that. For scale, the per-step cost of scikit-learn's
SpectralClustering on the indicators (what the authors' alternative clusterings call at every
step) is measured beside ours.
``--against REV`` also times the GO4Align step of git revision REV in the same blocks (its
``go4align.weighting`` extracted with ``git archive`` and imported under another name), so that a
change's effect is a ratio measured under one load, not a difference between two runs.
The training step is timed on Multi-Fashion's MultiLeNet (the small model of the paper family,
a real batch; needs Debian's ``dataset-fashion-mnist``) and on a toy MLP whose 3-4 ms step is the
worst case for any per-step cost.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import io
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from go4align import GO4Align
from go4align.weighting import LS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # perf/ is not a package
import methods_step  # noqa: E402


def timed_blocks(functions: dict, calls: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median over ``repeats`` blocks of the CPU and the wall seconds per call, methods alternating."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for function in functions.values():  # warm-up: caches, first allocations
        for _ in range(min(calls, 20)):
            function()
    order, shuffler = list(functions.items()), random.Random(0)
    for _ in range(repeats):
        shuffler.shuffle(order)  # no method always runs first, or after the same one
        for name, function in order:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                function()
            samples[name].append(((time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls))
    return {
        name: (statistics.median(c for c, _ in values), statistics.median(w for _, w in values))
        for name, values in samples.items()
    }


@contextlib.contextmanager
def busy_processes(count: int):
    """``count`` processes that spin on a CPU core each until the block ends."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def spectral_step(indicators: torch.Tensor, k: int):
    from sklearn.cluster import SpectralClustering

    values = indicators.detach().cpu().double().numpy().reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny M: sklearn warns that the graph is not connected
        SpectralClustering(n_clusters=k, assign_labels="cluster_qr", random_state=0).fit_predict(values)


#: scikit-learn's spectral step at M = 3, K = 2 on the project's 2-core VM in its fastest phase:
#: the machine's speed drifts between phases, so each run's steps are also given scaled by this
#: over the run's own spectral step at M = 3.
REFERENCE_SPECTRAL_M3 = 1.6e-3
#: The goals per M (any K), in seconds of CPU time with one thread.
GOALS = {2: 0.3e-3, 3: 0.3e-3, 11: 0.3e-3, 40: 0.3e-3, 1000: 5e-3}
CASES = [(3, 2), (2, 2), (11, 2), (11, 5), (40, 2), (40, 5), (40, 10), (40, 39), (1000, 2), (1000, 5)]


def cases(quick: bool):
    """``(M, K, losses, calls per block)`` of every case, the losses drawn alike in every table."""
    generator = torch.Generator().manual_seed(0)
    for m, k in CASES:
        losses = torch.rand(m, generator=generator) + 0.1
        yield m, k, losses, (200 if quick else 1000) if m <= 40 else (5 if quick else 20)


def weighting_table(repeats: int, quick: bool) -> list[str]:
    try:
        import sklearn  # noqa: F401

        have_sklearn = True
    except ImportError:
        have_sklearn = False
    results = []
    for m, k, losses, calls in cases(quick):
        go4align, ls = GO4Align(m, k), LS(m)
        functions = {"go4align": lambda: go4align(losses), "ls": lambda: ls(losses)}
        if have_sklearn and (m <= 40 or not quick):
            functions["spectral"] = lambda: spectral_step(losses, k)
        results.append((m, k, timed_blocks(functions, calls, repeats)))
    return format_weighting_table(results)


def revision_weighting(revision: str):
    """``go4align.weighting`` as it is at git ``revision``, importable beside this checkout's:
    the subpackage imports only itself, so a copy under another name runs on its own."""
    repository = Path(__file__).resolve().parent.parent
    archived = subprocess.run(["git", "archive", revision, "src/go4align"], cwd=repository, capture_output=True)
    if archived.returncode != 0:
        reason = archived.stderr.decode(errors="replace").strip()
        raise ValueError(f"cannot read src/go4align at git revision {revision!r}: {reason}")
    archive = archived.stdout
    root = Path(tempfile.mkdtemp(prefix="go4align-revision-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    name = "go4align_at_" + re.sub(r"\W", "_", revision)
    (root / "src" / "go4align").rename(root / name)
    sys.path.insert(0, str(root))
    return importlib.import_module(f"{name}.weighting")


def revision_table(revision: str, old, repeats: int, quick: bool) -> list[str]:
    """The GO4Align step of this checkout against ``old``, the weighting package at ``revision``
    (:func:`revision_weighting`), timed in alternation."""
    rows = [
        f"| M | K | GO4Align step, CPU (ms) | at {revision}, CPU (ms) | this / {revision} |",
        "|---|---|---|---|---|",
    ]
    for m, k, losses, calls in cases(quick):
        new_method, old_method = GO4Align(m, k), old.GO4Align(m, k)
        functions = {"new": lambda: new_method(losses), "old": lambda: old_method(losses)}
        result = timed_blocks(functions, calls, repeats)
        new, before = result["new"][0], result["old"][0]
        rows.append(f"| {m} | {k} | {new * 1e3:.3f} | {before * 1e3:.3f} | {new / before:.2f} |")
    return rows


def format_weighting_table(results: list[tuple[int, int, dict[str, tuple[float, float]]]]) -> list[str]:
    """Rows of the weighting table from ``(M, K, (CPU, wall) seconds by name)``; the first case
    must be M = 3, K = 2, whose spectral step (when measured) scales every step to the reference
    machine speed."""
    reference = results[0][2].get("spectral") if results[0][:2] == (3, 2) else None
    scale = REFERENCE_SPECTRAL_M3 / reference[0] if reference else None
    rows = [
        "| M | K | GO4Align step, CPU (ms) | GO4Align step, wall (ms) | LS step, CPU (ms) "
        "| sklearn spectral step, CPU (ms) | spectral / GO4Align | GO4Align CPU at the reference speed (ms) "
        "| goal (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, k, result in results:
        (ours, ours_wall), spectral = result["go4align"], result.get("spectral")
        rows.append(
            f"| {m} | {k} | {ours * 1e3:.3f} | {ours_wall * 1e3:.3f} | {result['ls'][0] * 1e3:.3f} | "
            + (f"{spectral[0] * 1e3:.2f} | {spectral[0] / ours:.0f}x | " if spectral else "n/a | n/a | ")
            + (f"{ours * scale * 1e3:.3f} | " if scale else "n/a | ")
            + f"{GOALS[m] * 1e3:g} |"
        )
    return rows


class DigitsNet(nn.Module):
    """A small hard-sharing MLP on 8x8 digits with three heads (class, parity, >= 5)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(256, 10), nn.Linear(256, 2), nn.Linear(256, 2)])

    def forward(self, x):
        features = self.encoder(x)
        return [head(features) for head in self.heads]


def training_table(repeats: int, quick: bool) -> list[str]:
    return [
        "| model | LS step, CPU (ms) | GO4Align step, CPU (ms) | GO4Align / LS |",
        "|---|---|---|---|",
        benchmark_row(repeats, quick),
        digits_row(repeats, quick),
    ]


def benchmark_row(repeats: int, quick: bool) -> str:
    """The step of the paper family's small model: Multi-Fashion's MultiLeNet on a real batch,
    built as perf/methods_step.py builds it (the trainer's step)."""
    try:
        benchmark, (inputs, targets), batch, title = methods_step.load("fashion")
    except FileNotFoundError as error:  # the data is not installed
        return f"| Multi-Fashion MultiLeNet: skipped ({error}) | | | |"
    steps = {name: methods_step.make_step(benchmark, name, inputs, targets) for name in ("ls", "go4align")}
    ls, go4align = (timed_blocks(steps, 3 if quick else 10, repeats)[name][0] for name in ("ls", "go4align"))
    return (
        f"| {title} (the paper family's small model), batch {batch}, Adam | {ls * 1e3:.1f} | "
        f"{go4align * 1e3:.1f} | {go4align / ls:.3f} |"
    )


def digits_row(repeats: int, quick: bool) -> str:
    """A 3-4 ms toy step, the worst case: the weighting's fixed cost against the smallest model."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return "| MLP on digits: skipped (scikit-learn is not installed) | | | |"
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    targets = [y, y % 2, (y >= 5).long()]
    batch = 256
    loss_fn = nn.CrossEntropyLoss()

    def make_step(method):
        torch.manual_seed(0)
        model = DigitsNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        position = [0]

        def step():
            start = position[0] % (len(x) - batch)
            position[0] += batch
            inputs = x[start : start + batch]
            outputs = model(inputs)
            losses = torch.stack([loss_fn(o, t[start : start + batch]) for o, t in zip(outputs, targets)])
            optimizer.zero_grad(set_to_none=True)
            method.backward(losses)
            optimizer.step()

        return step

    result = timed_blocks(
        {"ls": make_step(LS(3)), "go4align": make_step(GO4Align(3, 2))}, 50 if quick else 200, repeats
    )
    ls, go4align = result["ls"][0], result["go4align"][0]
    return (
        f"| MLP 64-256-256 + 3 heads on digits (a toy step), batch {batch}, Adam | {ls * 1e3:.2f} | "
        f"{go4align * 1e3:.2f} | {go4align / ls:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=methods_step.positive, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer calls per block, for a smoke run")
    parser.add_argument(
        "--threads", type=methods_step.positive, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to run meanwhile (default 0)")
    parser.add_argument("--weighting-only", action="store_true", help="skip the training-step table")
    parser.add_argument("--against", metavar="REV", help="also time the GO4Align step of this git revision")
    args = parser.parse_args()
    if args.load < 0:
        parser.error(f"argument --load: must be an int >= 0, got {args.load}")
    old = None
    if args.against:  # before any measuring: a revision git cannot read fails at once
        try:
            old = revision_weighting(args.against)
        except ValueError as error:
            parser.error(f"argument --against: {error}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{args.load} busy processes, median of {args.repeats} blocks\n"
    )
    with busy_processes(args.load):
        print("\n".join(weighting_table(args.repeats, args.quick)))
        if args.against:
            print()
            print("\n".join(revision_table(args.against, old, args.repeats, args.quick)))
        if not args.weighting_only:
            print()
            print("\n".join(training_table(args.repeats, args.quick)))


if __name__ == "__main__":
    main()
