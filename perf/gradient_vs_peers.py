"""Gradient methods against their peers: TorchJD and the reference code's per-task loop.

One training step (zero_grad, forward, the method's backward, SGD step) of the same model on the
same batch, for each method three ways:

* ``go4align``: ``make(name).backward(losses, shared_parameters=..., shared_representation=...)``;
* ``torchjd``: TorchJD 0.18's ``mtl_backward`` (one vmapped backward through the shared trunk
  from the representation) and ``jac_to_grad`` with its aggregator of the same name (the heads
  get the plain summed gradient there);
* ``loop``: the reference code's strategy (Nash-MTL's ``weight_methods.py``), re-implemented
  here, not copied: one ``torch.autograd.grad(loss_m, shared, retain_graph=True)`` per task,
  flattened and stacked, the aggregation by go4align's pure function of the method, the shared
  gradient written, then the weighted loss back-propagated into the heads.

Models: an MLP 64-256-256 with ``M`` linear heads at batch 128 (``M`` in 2, 3, 11, 40) and a
CNN of ~0.94M parameters (three convolutions and a 2048-416 layer, 10-class heads) at batch 32,
``M = 3``. Timing: CPU time (``time.process_time``) of ``--steps`` consecutive steps, in rounds
in which every (method, peer) takes its turn in a new shuffled order, median over ``--repeats``
rounds after a warm-up round, one thread, everything in one process. Memory: the peak of the
tensor memory allocated during one step above what was live before it, from torch.profiler's
CPU memory events (an approximation that misses peaks inside one operator).

    PYTHONPATH=src python perf/gradient_vs_peers.py            # ~1.5 min on a 2-core VM
    PYTHONPATH=src python perf/gradient_vs_peers.py --repeats 25   # docs/performance.md, ~4 min
    PYTHONPATH=src python perf/gradient_vs_peers.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
import warnings

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from go4align.weighting import make
from go4align.weighting.aligned_mtl import aligned_mtl_weights
from go4align.weighting.cagrad import cagrad_weights
from go4align.weighting.gradient import gramian
from go4align.weighting.imtl_g import imtl_g_weights
from go4align.weighting.mgda import mgda_weights
from go4align.weighting.pcgrad import pcgrad_weights

#: go4align name -> (TorchJD aggregator class name, the reference loop's weights from the Gramian)
METHODS = {
    "mgda": ("MGDA", lambda gram, m: mgda_weights(gram, torch.ones(m, dtype=torch.float64))[0]),
    "pcgrad": ("PCGrad", lambda gram, m: pcgrad_weights(gram, [random.sample(range(m), m) for _ in range(m)])[0]),
    "imtl-g": ("IMTLG", lambda gram, m: imtl_g_weights(gram)[0]),
    "aligned-mtl": ("AlignedMTL", lambda gram, m: aligned_mtl_weights(gram)[0]),
    "cagrad": ("CAGrad", lambda gram, m: cagrad_weights(gram)[0]),
}
#: TorchJD aggregators' arguments that have no default, at the reference's values
TORCHJD_OPTIONS = {"cagrad": {"c": 0.4}}
#: the reference's heads: the weighted loss (MGDA, IMTL-G, Aligned-MTL) or the plain sum
UNWEIGHTED_HEADS = {"pcgrad", "cagrad"}


class MLP(nn.Module):
    def __init__(self, num_tasks: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(256, 1) for _ in range(num_tasks))
        self.x, self.y = torch.randn(128, 64), torch.randn(128, num_tasks)

    def task_losses(self, z):
        return [((head(z).squeeze(1) - self.y[:, m]) ** 2).mean() for m, head in enumerate(self.heads)]


class CNN(nn.Module):
    def __init__(self, num_tasks: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2048, 416),
            nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(416, 10) for _ in range(num_tasks))
        self.x, self.y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32, num_tasks))

    def task_losses(self, z):
        return [nn.functional.cross_entropy(head(z), self.y[:, m]) for m, head in enumerate(self.heads)]


def go4align_step(model, name: str):
    method = make(name, len(model.heads))
    shared = list(model.trunk.parameters())

    def backward():
        z = model.trunk(model.x)
        method.backward(torch.stack(model.task_losses(z)), shared_parameters=shared, shared_representation=z)

    return backward


def torchjd_step(model, name: str):
    from torchjd import aggregation
    from torchjd.autojac import jac_to_grad, mtl_backward

    aggregator = getattr(aggregation, METHODS[name][0])(**TORCHJD_OPTIONS.get(name, {}))
    shared = list(model.trunk.parameters())

    def backward():
        z = model.trunk(model.x)
        mtl_backward(model.task_losses(z), features=z, shared_params=shared)
        jac_to_grad(shared, aggregator)

    return backward


def loop_step(model, name: str):
    """The reference code's strategy, re-implemented: see the module docstring."""
    weigh = METHODS[name][1]
    shared = list(model.trunk.parameters())

    def backward():
        z = model.trunk(model.x)
        losses = model.task_losses(z)
        rows = [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)]) for loss in losses
        ]
        jacobian = torch.stack(rows)
        weights = weigh(gramian(jacobian), len(losses))
        direction = weights.to(jacobian.dtype) @ jacobian
        heads = torch.ones_like(weights) if name in UNWEIGHTED_HEADS else weights
        sum(float(h) * loss for h, loss in zip(heads, losses)).backward()
        for p, piece in zip(shared, direction.split([p.numel() for p in shared])):
            p.grad = piece.view_as(p).clone()  # the reference sets the shared .grad

    return backward


PEERS = {"go4align": go4align_step, "torchjd": torchjd_step, "loop": loop_step}


def training_step(model, backward):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step():
        optimizer.zero_grad(set_to_none=True)
        backward()
        optimizer.step()

    return step


def peak_memory(step) -> int:
    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    return max(itertools.accumulate((e.self_cpu_memory_usage for e in events), initial=0))


def measure(model_cls, num_tasks: int, names, repeats: int, steps: int, memory: bool) -> dict:
    """``{(name, peer): (median seconds per step, peak bytes or None)}``."""
    torch.manual_seed(0)
    model = model_cls(num_tasks)
    runs = {(n, p): training_step(model, PEERS[p](model, n)) for n in names for p in PEERS}
    times = {key: [] for key in runs}
    keys = list(runs)
    for round_ in range(repeats + 1):
        random.Random(round_).shuffle(keys)
        for key in keys:
            start = time.process_time()
            for _ in range(steps):
                runs[key]()
            if round_:  # the first round warms up
                times[key].append((time.process_time() - start) / steps)
    return {key: (statistics.median(times[key]), peak_memory(runs[key]) if memory else None) for key in runs}


def report(title: str, results: dict, names) -> None:
    print(f"\n{title}")
    print("| method | go4align | torchjd | loop | / torchjd | / loop | memory go4align / torchjd / loop (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        ours, jd, loop = (results[(n, p)] for p in PEERS)
        memory = " / ".join("-" if r[1] is None else f"{r[1] / 2**20:.1f}" for r in (ours, jd, loop))
        print(
            f"| {n} | {ours[0] * 1e3:.2f} ms | {jd[0] * 1e3:.2f} ms | {loop[0] * 1e3:.2f} ms | "
            f"{ours[0] / jd[0]:.2f} | {ours[0] / loop[0]:.2f} | {memory} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tasks", nargs="+", type=int, default=[2, 3, 11, 40])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="consecutive steps per sample")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-cnn", action="store_true")
    parser.add_argument("--quick", action="store_true", help="M = 2, one method, 1 repeat: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.methods, args.tasks, args.repeats, args.steps, args.no_cnn = ["mgda"], [2], 1, 1, True
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # solver and zero-gradient warnings are not what is measured here
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} rounds x {args.steps} steps")
    for m in args.tasks:
        report(
            f"MLP 64-256-256, M = {m}, batch 128",
            measure(MLP, m, args.methods, args.repeats, args.steps, not args.no_memory),
            args.methods,
        )
    if not args.no_cnn:
        report(
            "CNN (~0.94M parameters), M = 3, batch 32",
            measure(CNN, 3, args.methods, args.repeats, args.steps, not args.no_memory),
            args.methods,
        )


if __name__ == "__main__":
    main()
