"""GO4Align: adaptive group risk minimisation (Shen et al., NeurIPS 2024, arXiv 2404.06486)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from .base import LossWeighting, cast, check_choice, check_nonnegative
from .grouping import Grouping

__all__ = ["GO4Align"]


class GO4Align(LossWeighting):
    r"""GO4Align task weighting: one backward pass, like summing the losses.

    Each step, from the detached task losses :math:`L \in \mathbb{R}^M`:

    * scale-balance (Eq. 5): :math:`p_m = \mathrm{mean}_j L_j / L_m`;
    * smooth-alignment (Eq. 6): :math:`Q_t = \mathrm{softmax}(-\beta \sum_{\tau \le t} L_\tau)`,
      i.e. :math:`Q_t \propto Q_{t-1} e^{-\beta L_t}` from :math:`Q_0 = 1/M`, kept in log space
      so that no task's term underflows to zero and stays there;
    * indicator (Eq. 7): :math:`\gamma_m = p_m Q_m`;
    * dynamical group assignment (Eq. 3): the globally optimal 1-D K-means of :math:`\gamma`
      into ``num_groups`` groups; each task gets its group's mean indicator as its weight;

    and the objective is :math:`\sum_m w_m L_m` with :math:`w` detached.

    Args:
        num_tasks: ``M``.
        num_groups: ``K`` in ``[1, M]``. Default ``min(2, M)``: the paper's choice for NYUv2 and
            CityScapes and the smallest grouping that is not a moving multiple of plain summing
            (``K = 1``); ``K = M`` is the method without grouping (``w = gamma``). The paper tunes
            ``K`` by the elbow of Delta-m against ``K`` (QM9: ``K = 5``).
        beta: temperature of smooth-alignment, ``>= 0`` (``0``: uniform). Default ``1e-4`` as
            the authors' code (the paper prints no value).
        scale_balance: ``"mean"`` (Eq. 5, default), ``"sum"`` (the released code: ``M`` times
            larger weights), or ``None`` (ablation: ``p = 1``).
        smooth_alignment: ``False`` for the ablation without it (``Q = 1/M``).
        clustering: how groups are formed; see :class:`~go4align.weighting.grouping.Grouping`
            (``"exact"``, ``"lloyd"``, ``"spectral"``, ``"random"``, a fixed partition, or a callable).
        group_weights: ``None`` (group means, the method), fixed weights per group, or
            ``"random"`` (Fig. 5 ablations).
        loss_floor: ``None`` (default) requires positive losses, since ``p`` divides by them. For
            losses that can be zero or negative, pass a small positive floor: the indicators then
            use ``max(L, loss_floor)`` (the objective still uses the true losses).
        min_weight_ratio: weights below this fraction of the largest weight are raised to it, so
            that no task is abandoned outright when its smooth-alignment term underflows after a
            long run (below ``1e-8`` relative weight a task's gradient is lost in float32
            summation anyway). ``0`` disables it.
        seed: seed of the random ablation options.
        validate: check loss values each step (the only host synchronisation on CUDA).
    """

    positive_losses = True

    def __init__(
        self,
        num_tasks: int,
        num_groups: int | None = None,
        *,
        beta: float = 1e-4,
        scale_balance: str | None = "mean",
        smooth_alignment: bool = True,
        clustering: str | Sequence[int] | Callable[[Tensor, int], Tensor] = "exact",
        group_weights: Sequence[float] | str | None = None,
        loss_floor: float | None = None,
        min_weight_ratio: float = 1e-8,
        seed: int = 0,
        validate: bool = True,
    ):
        super().__init__(num_tasks, validate=validate)
        if num_groups is None:
            num_groups = min(2, self.num_tasks)
        self.beta = check_nonnegative("beta", beta)
        check_choice("scale_balance", scale_balance, ("mean", "sum", None))
        self.scale_balance = scale_balance
        if not isinstance(smooth_alignment, bool):
            raise ValueError(f"smooth_alignment must be a bool, got {smooth_alignment!r}")
        self.smooth_alignment = smooth_alignment
        if loss_floor is not None:
            if check_nonnegative("loss_floor", loss_floor) == 0:
                raise ValueError(f"loss_floor must be > 0, got {loss_floor!r}")
            self.positive_losses = False
        self.loss_floor = loss_floor
        ratio = check_nonnegative("min_weight_ratio", min_weight_ratio)
        if ratio >= 1:
            raise ValueError(f"min_weight_ratio must be in [0, 1), got {min_weight_ratio!r}")
        self.min_weight_ratio = ratio
        self.grouping = Grouping(self.num_tasks, num_groups, clustering, group_weights, seed)
        self.register_buffer(
            "mean_weights", torch.full((self.num_tasks,), 1 / self.num_tasks, dtype=torch.float64), persistent=False
        )
        # log Q_t up to an additive constant: -beta times the cumulative risk (Eq. 6 as written;
        # Q_t = softmax of it), from log Q_0 = -log M.
        self.register_buffer(
            "log_alignment", torch.full((self.num_tasks,), -math.log(self.num_tasks), dtype=torch.float64)
        )

    @property
    def num_groups(self) -> int:
        return self.grouping.num_groups

    def indicators(self, losses: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Scale-balance, smooth-alignment and indicators for detached ``losses``; updates Q."""
        # As few tensor operations as possible: each costs microseconds of dispatch on a CPU;
        # buffers through _buffers, not nn.Module.__getattr__, for the same reason.
        buffers = self._buffers
        risk = cast(losses, torch.float64)
        if self.loss_floor is not None:
            risk = risk.clamp_min(self.loss_floor)
        if self.smooth_alignment:
            if self.beta > 0:  # log Q_t = log Q_{t-1} - beta L_t, up to a constant (new tensor:
                # a state_dict taken earlier keeps its values)
                buffers["log_alignment"] = torch.sub(buffers["log_alignment"], risk, alpha=self.beta)
            smooth = torch.softmax(buffers["log_alignment"], 0)
        else:
            smooth = torch.full_like(risk, 1 / self.num_tasks)
        if self.scale_balance is None:
            return torch.ones_like(risk), smooth, smooth
        # the mean as one dot product rather than sum and division
        total = torch.dot(risk, buffers["mean_weights"]) if self.scale_balance == "mean" else risk.sum()
        scale = torch.div(total, risk)
        return scale, smooth, torch.mul(smooth, scale)

    def weigh(self, losses: Tensor) -> Tensor:
        scale, smooth, gamma = self.indicators(losses)
        assignment = self._modules["grouping"].forward(gamma)  # a plain call: no hooks to run
        weights = assignment.weights
        if self.min_weight_ratio > 0:
            weights = weights.clamp_min(weights.max().mul_(self.min_weight_ratio))
        self.record(
            losses=losses,
            scale_balance=scale,
            smooth_alignment=smooth,
            indicators=gamma,
            weights=weights,
            **assignment.diagnostics(),
        )
        return weights

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, num_groups={self.num_groups}, beta={self.beta}, "
            f"scale_balance={self.scale_balance!r}, smooth_alignment={self.smooth_alignment}, "
            f"loss_floor={self.loss_floor}, min_weight_ratio={self.min_weight_ratio}"
        )
