"""What a run reports: the reporting rule, the validation score, the subsampled trace."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from go4align.benchmarks.api import Protocol
from go4align.metrics import delta_m

__all__ = ["validation_score", "summarise", "Trace", "trace_points", "TRACE_EVERY"]


def validation_score(
    values: Mapping[str, float],
    names: Sequence[str],
    directions: Mapping[str, str],
    protocol: Protocol,
    reference: Mapping[str, float] | None,
) -> float:
    """Lower is better. ``delta_m``: Delta-m% of ``values`` against ``reference`` over ``names``
    (benchmarks.md); ``mean``: the mean of the values, negated when higher is better."""
    if protocol.selection == "delta_m":
        return delta_m(values, {n: reference[n] for n in names}, directions)
    mean = sum(values[n] for n in names) / len(names)
    return -mean if directions[names[0]] == "higher" else mean


def summarise(
    epochs: Sequence[dict],
    names: Sequence[str],
    directions: Mapping[str, str],
    protocol: Protocol,
    reference: Mapping[str, float] | None,
) -> tuple[dict[str, float], int | None]:
    """The reported metrics per the protocol's rule, and the selected epoch (``best_validation``).

    ``last_k_mean:K`` averages the test metrics of the last K epochs so far (all of them if fewer
    ran: :class:`~go4align.benchmarks.api.Protocol` warns when K exceeds its epochs);
    ``best_validation`` takes the test metrics of the first epoch with the lowest validation score.
    An evaluation before training (epoch 0), if a history holds one, is never reported.
    """
    epochs = [e for e in epochs if e["epoch"] >= 1]
    if not epochs:
        return {}, None
    k = protocol.last_k
    if k is not None:
        last = epochs[-k:]
        return {n: sum(e["test"][n] for e in last) / len(last) for n in epochs[-1]["test"]}, None
    scores = [validation_score(e["val"], names, directions, protocol, reference) for e in epochs]
    best = min(range(len(scores)), key=lambda i: (math.isnan(scores[i]), scores[i]))
    return dict(epochs[best]["test"]), epochs[best]["epoch"]


def trace_points(num_tasks: int) -> int:
    """At most 500 points, fewer for many tasks so that a trace stays near 250k numbers."""
    return min(500, max(20, 250_000 // num_tasks))


#: GO4Align's smooth-alignment Q and indicators gamma are kept at most this many times per run,
#: so that they add a few KB to a run's trace (M = 3: about 3 KB), enough to plot them.
DETAIL_POINTS = 50
#: Significant digits of the floats of a trace: it is for plots and convergence curves, and full
#: float repr took about 20 characters a number (a 20-task, 2,000-step run: 500 KB of trace).
TRACE_DIGITS = 4


def _values(tensor: torch.Tensor) -> list:
    """A diagnostic as a list; floats to ``TRACE_DIGITS`` significant digits, integers as they are."""
    values = tensor.detach().cpu().reshape(-1).tolist()
    if not tensor.is_floating_point():
        return values
    return [float(f"{v:.{TRACE_DIGITS}g}") for v in values]


#: Steps between two points of a trace by default: reading a step's diagnostics costs (GO4Align
#: computes its group labels only when they are read), and at every step it was half of the
#: trainer's overhead over a bare loop on a small model.
TRACE_EVERY = 10


class Trace:
    """The weighting's ``diagnostics`` every ``stride`` steps; floats to ``TRACE_DIGITS``
    significant digits.

    By default (``every=None``) every ``TRACE_EVERY`` steps, and at most ``trace_points``
    points (longer runs a larger stride), the ``DETAIL_KEYS`` (GO4Align's) at most
    ``DETAIL_POINTS`` times. ``every=k`` asks for every k-th step, ``DETAIL_KEYS`` included
    (``every=1``: every step in full detail), however long the run.
    """

    KEYS = ("losses", "weights", "groups", "group_weights")
    DETAIL_KEYS = ("smooth_alignment", "indicators")

    def __init__(self, total_steps: int, num_tasks: int, every: int | None = None):
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be a positive int or None, got {every!r}")
        if every is None:
            self.stride = max(TRACE_EVERY, math.ceil(total_steps / trace_points(num_tasks)))
            self.detail_stride = self.stride * max(1, math.ceil(total_steps / self.stride / DETAIL_POINTS))
        else:
            self.stride = self.detail_stride = every
        self.steps: list[int] = []
        self.detail_steps: list[int] = []
        self.series: dict[str, list] = {key: [] for key in (*self.KEYS, *self.DETAIL_KEYS)}

    def record(self, step: int, diagnostics: Mapping[str, torch.Tensor]) -> None:
        if step % self.stride:
            return
        self.steps.append(step)
        for key in self.KEYS:
            if key in diagnostics:
                self.series[key].append(_values(diagnostics[key]))
        if step % self.detail_stride or not any(key in diagnostics for key in self.DETAIL_KEYS):
            return
        self.detail_steps.append(step)
        for key in self.DETAIL_KEYS:
            if key in diagnostics:
                self.series[key].append(_values(diagnostics[key]))

    def state_dict(self) -> dict:
        return {
            "stride": self.stride,
            "detail_stride": self.detail_stride,
            "steps": list(self.steps),
            "detail_steps": list(self.detail_steps),
            "series": {k: list(v) for k, v in self.series.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.stride, self.steps = state["stride"], list(state["steps"])
        # checkpoints written before the detail series existed resume without one
        self.detail_stride = state.get("detail_stride", self.detail_stride)
        self.detail_steps = list(state.get("detail_steps", []))
        self.series = {k: [] for k in (*self.KEYS, *self.DETAIL_KEYS)}
        self.series.update({k: list(v) for k, v in state["series"].items()})

    def to_json(self) -> dict:
        """``groups`` and ``group_weights`` are ``None`` for methods that do not group tasks;
        ``detail`` (``steps``, ``smooth_alignment``, ``indicators``) is ``None`` for methods
        without them."""
        trace = {"steps": self.steps, **{k: (self.series[k] or None) for k in self.KEYS}}
        detail = {k: self.series[k] for k in self.DETAIL_KEYS if self.series[k]}
        trace["detail"] = {"steps": self.detail_steps, **detail} if detail else None
        return trace
