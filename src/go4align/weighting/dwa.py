"""Dynamic weight average (Liu et al., CVPR 2019, arXiv 1803.10704)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_int, check_number
from .base import LossWeighting, check_choice

__all__ = ["DWA"]


class DWA(LossWeighting):
    r"""Weights from the rate at which each loss falls:
    :math:`\lambda_m = M\, \mathrm{softmax}_m(r_m / T)`, :math:`r_m` = recent loss / earlier loss.

    ``mode="iteration"`` (the reference: Nash-MTL/FAMO code): a float32 window of the last
    ``2 * window`` losses, initially filled with ones, the current step's losses included;
    :math:`r_m` = mean of the newer half / mean of the older half; the weights stay all ones
    until the step count exceeds ``window`` (from the ``window + 2``-th call on), and the objective
    is the *mean* :math:`\frac1M \sum_m \lambda_m L_m`. The ones in the window shape the
    first ``2 * window`` steps, so they are kept; the float32 arithmetic too (torch's float32
    reductions may differ from numpy's in the last bit).

    ``mode="epoch"`` (the original MTAN code, LibMTL, TorchJD): :math:`r_m` = average loss of the
    last epoch / average loss of the epoch before, updated by :meth:`end_epoch`; all ones for the
    first two epochs; the objective is the *sum*.

    The returned weights are the effective ones (:math:`\lambda / M` for the mean); the
    diagnostics add ``dwa_weights`` (:math:`\lambda`).
    Paper: https://arxiv.org/abs/1803.10704.

    Args:
        num_tasks: ``M``.
        temperature: ``T > 0`` (default 2).
        mode: ``"iteration"`` (default, reference) or ``"epoch"``.
        window: iterations per half-window in iteration mode (reference 25).
        reduction: ``"mean"`` or ``"sum"`` of the weighted losses; default ``"mean"`` in
            iteration mode, ``"sum"`` in epoch mode, as in the respective references.
        validate: check the loss values each step.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        temperature: float = 2.0,
        mode: str = "iteration",
        window: int = 25,
        reduction: str | None = None,
        validate: bool = True,
    ):
        super().__init__(num_tasks, validate=validate)
        self.temperature = check_number("temperature", temperature, low=0.0, low_open=True)
        check_choice("mode", mode, ("iteration", "epoch"))
        self.mode = mode
        self.window = check_int("window", window, 1)
        check_choice("reduction", reduction, ("mean", "sum", None))
        self.reduction = reduction or ("mean" if mode == "iteration" else "sum")
        m = self.num_tasks
        self.register_buffer("dwa_weights", torch.ones(m, dtype=torch.float32))
        if mode == "iteration":
            self.register_buffer("costs", torch.ones(2 * self.window, m, dtype=torch.float32))
        else:
            self.register_buffer("epoch_sum", torch.zeros(m, dtype=torch.float64))
            self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.int64))
            self.register_buffer("epoch_means", torch.zeros(2, m, dtype=torch.float64))
            self.register_buffer("epochs", torch.zeros((), dtype=torch.int64))

    def _from_ratio(self, ratio: Tensor) -> Tensor:
        return self.num_tasks * torch.softmax(ratio / self.temperature, 0)

    def weigh(self, losses: Tensor) -> Tensor:
        if self.mode == "iteration":
            self.costs = torch.cat([self.costs[1:], losses.to(torch.float32)[None]])
            if self.step > self.window:
                ratio = self.costs[self.window :].mean(0) / self.costs[: self.window].mean(0)
                self.dwa_weights = self._from_ratio(ratio)
        else:
            self.epoch_sum += losses.to(torch.float64)
            self.epoch_steps += 1
        scale = self.num_tasks if self.reduction == "mean" else 1
        weights = self.dwa_weights.to(losses.dtype) / scale
        self.record(losses=losses, weights=weights, dwa_weights=self.dwa_weights)
        return weights

    def end_epoch(self) -> None:
        if self.mode != "epoch" or int(self.epoch_steps) == 0:
            return
        mean = self.epoch_sum / self.epoch_steps
        self.epoch_means = torch.stack([self.epoch_means[1], mean])
        self.epochs += 1
        self.epoch_sum.zero_()
        self.epoch_steps.zero_()
        if int(self.epochs) >= 2:
            ratio = self.epoch_means[1] / self.epoch_means[0]
            self.dwa_weights = self._from_ratio(ratio).to(torch.float32)

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, temperature={self.temperature}, mode={self.mode!r}, "
            f"window={self.window}, reduction={self.reduction!r}"
        )
