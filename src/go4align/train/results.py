"""What a run reports: the reporting rule, the validation score, the subsampled trace."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from go4align.benchmarks.api import Protocol

__all__ = ["validation_score", "summarise", "Trace", "trace_points"]


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
        terms = [(1 if directions[n] == "lower" else -1) * (values[n] - reference[n]) / reference[n] for n in names]
        return 100.0 * sum(terms) / len(terms)
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


class Trace:
    """The weighting's ``diagnostics`` every ``stride`` steps, at most ``trace_points`` points."""

    KEYS = ("losses", "weights", "groups", "group_weights")

    def __init__(self, total_steps: int, num_tasks: int):
        self.stride = max(1, math.ceil(total_steps / trace_points(num_tasks)))
        self.steps: list[int] = []
        self.series: dict[str, list] = {key: [] for key in self.KEYS}

    def record(self, step: int, diagnostics: Mapping[str, torch.Tensor]) -> None:
        if step % self.stride:
            return
        self.steps.append(step)
        for key in self.KEYS:
            if key in diagnostics:
                self.series[key].append(diagnostics[key].detach().cpu().tolist())

    def state_dict(self) -> dict:
        return {
            "stride": self.stride,
            "steps": list(self.steps),
            "series": {k: list(v) for k, v in self.series.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.stride, self.steps = state["stride"], list(state["steps"])
        self.series = {k: list(v) for k, v in state["series"].items()}

    def to_json(self) -> dict:
        """``groups`` and ``group_weights`` are ``None`` for methods that do not group tasks."""
        return {"steps": self.steps, **{k: (v if v else None) for k, v in self.series.items()}}
