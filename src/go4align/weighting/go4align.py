"""GO4Align: adaptive group risk minimisation (Shen et al., NeurIPS 2024, arXiv 2404.06486)."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import LossWeighting, cast, check_choice, check_nonnegative
from .grouping import Grouping

__all__ = ["GO4Align", "GO4AlignPaper", "PRESETS"]

#: The options each preset gives to the arguments left at ``None``. ``"paper"`` is Eq. 5-7 and 3
#: exactly as printed (with the authors' beta); ``"default"`` keeps them but bounds the
#: scale-balance term, tolerates solved tasks and smooths unit-free risks (see the class
#: docstring for why and docs of the evidence behind the values).
PRESETS = {
    "default": {"beta": 1e-4, "smoothing": "relative", "max_scale": 100.0, "strict": False, "min_weight_ratio": 1e-8},
    "paper": {"beta": 1e-4, "smoothing": "absolute", "max_scale": math.inf, "strict": True, "min_weight_ratio": 0.0},
}
SMOOTHINGS = ("absolute", "relative")


class GO4Align(LossWeighting):
    r"""GO4Align task weighting: one backward pass, like summing the losses.

    Each step, from the detached task losses :math:`L \in \mathbb{R}^M`:

    * scale-balance (Eq. 5): :math:`p_m = \mathrm{mean}_j L_j / L_m`, at most ``max_scale``;
    * smooth-alignment (Eq. 6): :math:`Q_t = \mathrm{softmax}(-\beta \sum_{\tau \le t} r_\tau)`,
      i.e. :math:`Q_t \propto Q_{t-1} e^{-\beta r_t}` from :math:`Q_0 = 1/M`, kept in log space
      so that no task's term underflows to zero and stays there. The risk :math:`r` is the loss
      itself (``smoothing="absolute"``, the paper) or the unit-free
      :math:`r_{m,t} = L_{m,t} / \bar L_{m,t}`, the loss over its own running mean since step 1
      (``"relative"``, the default);
    * indicator (Eq. 7): :math:`\gamma_m = p_m Q_m`;
    * dynamical group assignment (Eq. 3): the globally optimal 1-D K-means of :math:`\gamma`
      into ``num_groups`` groups; each task gets its group's mean indicator as its weight;

    and the objective is :math:`\sum_m w_m L_m` with :math:`w` detached.

    Two presets (``preset=``, or the registry names ``"go4align"`` and ``"go4align-paper"``):

    * ``"paper"`` (also :meth:`paper`): the equations as printed, with the authors' ``beta =
      1e-4``: absolute risks in Eq. 6, unbounded ``p``, and a loss ``<= 0`` is an error.
    * ``"default"``: three changes for real training runs. (1) ``p <= max_scale = 100``: as a
      task is solved its ``p = mean(L) / L`` grows without bound (a task whose cross-entropy
      reached 0 had weight 33,206 against 0.3 for the others, then ended the run); with the
      bound a task can weigh at most 100 times a task at the mean loss, and a loss of exactly 0
      gets ``p = max_scale`` (recorded as ``bounded`` in ``diagnostics``, warned about once).
      Negative losses are still an error. (2) Eq. 6 on unit-free risks: on absolute losses the
      term depends on the losses' units (losses of ~1e4 with ``beta = 1e-4`` put all of ``Q``
      on one task within a few steps); the relative risk makes the weights invariant to the
      scale of each task's loss. (3) weights below ``1e-8`` of the largest are raised to it.

    The evidence behind the defaults (``results/evidence/pilot.md``, ``q_collapse.md``; chosen on
    validation Delta-m, never test): on the synthetic design A (20 tasks, 100 epochs, 3 seeds)
    the default, the paper's form, ``beta = 0`` and the relative form without a bound are within
    0.2 points of each other (paired s.e. ~0.1); ``max_scale = 10`` is worse by ~0.7 points;
    ``beta = 1e-2`` on relative risks by 3-14 points; the absolute form with the bound diverged on
    2 of 3 seeds (Q of the large-loss group fell to 1e-9). Over 1e6 steps of losses 1e-4..1e4, one
    task held > 99% of Q in 25.5% of steps with the paper's form and in 0.0% with the default.

    Any option given explicitly overrides its preset.

    Args:
        num_tasks: ``M``.
        num_groups: ``K`` in ``[1, M]``. Default ``min(2, M)``: the paper's choice for NYUv2 and
            CityScapes and the smallest grouping that is not a moving multiple of plain summing
            (``K = 1``); ``K = M`` is the method without grouping (``w = gamma``). **With two
            tasks the default K = 2 = M means no grouping at all** (a one-time warning says so;
            pass ``num_groups`` to silence it). The paper tunes ``K`` by the elbow of Delta-m
            against ``K`` (QM9: ``K = 5``).
        preset: ``"default"`` or ``"paper"`` (see above).
        beta: temperature of smooth-alignment, ``>= 0`` (``0``: uniform). Both presets: ``1e-4``,
            the authors' code (the paper prints no value).
        smoothing: ``"relative"`` (unit-free risks) or ``"absolute"`` (Eq. 6 as printed).
        max_scale: upper bound of ``p_m`` (``>= 1``; ``math.inf``: none). The bound acts as a
            floor ``mean(L) / max_scale`` on each loss inside Eq. 5 only.
        strict: ``True`` makes a loss ``<= 0`` an error (the paper's Eq. 5 divides by it);
            ``False`` accepts zero (a solved task, bounded by ``max_scale``).
        scale_balance: ``"mean"`` (Eq. 5, default), ``"sum"`` (the released code: ``M`` times
            larger weights), or ``None`` (ablation: ``p = 1``).
        smooth_alignment: ``False`` for the ablation without it (``Q = 1/M``).
        clustering: how groups are formed; see :class:`~go4align.weighting.grouping.Grouping`
            (``"exact"``, ``"kmeans-random"`` as the authors' code, ``"lloyd"``, ``"spectral"``,
            ``"random"``, a fixed partition, or a callable).
        group_weights: ``None`` (group means, the method), fixed weights per group, or
            ``"random"`` (Fig. 5 ablations).
        loss_floor: ``None`` (default) or a positive floor: the indicators then use
            ``max(L, loss_floor)``, which also accepts negative losses (the objective still uses
            the true losses).
        min_weight_ratio: weights below this fraction of the largest weight are raised to it, so
            that no task is abandoned outright (below ``1e-8`` relative weight a task's gradient
            is lost in float32 summation anyway). ``0`` disables it.
        seed: seed of the random options (random clustering, ``"kmeans-random"``'s centres).
        validate: check loss values each step (the only host synchronisation on CUDA).

    Weights never overflow the losses' dtype, nor does the objective: when the largest weight
    would (unbounded ``p`` with losses 60 orders of magnitude apart), or ``sum_m w_m |L_m|``
    would exceed half the dtype's largest number (losses near float32's maximum with weights
    above 1, whose weighted gradients overflowed), all are divided by the same factor so that
    they fit, and ``diagnostics["weight_rescale"]`` records the factor (1 otherwise).
    """

    positive_losses = True
    _warned_two_tasks = False

    def __init__(
        self,
        num_tasks: int,
        num_groups: int | None = None,
        *,
        preset: str = "default",
        beta: float | None = None,
        smoothing: str | None = None,
        max_scale: float | None = None,
        strict: bool | None = None,
        scale_balance: str | None = "mean",
        smooth_alignment: bool = True,
        clustering: str | Sequence[int] | Callable[[Tensor, int], Tensor] = "exact",
        group_weights: Sequence[float] | str | None = None,
        loss_floor: float | None = None,
        min_weight_ratio: float | None = None,
        seed: int = 0,
        validate: bool = True,
    ):
        super().__init__(num_tasks, validate=validate)
        check_choice("preset", preset, tuple(PRESETS))
        self.preset = preset
        chosen = {"beta": beta, "smoothing": smoothing, "max_scale": max_scale, "strict": strict}
        chosen["min_weight_ratio"] = min_weight_ratio
        options = {key: PRESETS[preset][key] if value is None else value for key, value in chosen.items()}
        if num_groups is None:
            num_groups = min(2, self.num_tasks)
            if self.num_tasks == 2 and not GO4Align._warned_two_tasks:
                GO4Align._warned_two_tasks = True
                warnings.warn(
                    "GO4Align with 2 tasks: the default num_groups = min(2, M) = 2 gives each task its own "
                    "group, so there is no grouping (w = gamma); pass num_groups=2 to say so, or 1 for one group",
                    UserWarning,
                    stacklevel=2,
                )
        self.beta = check_nonnegative("beta", options["beta"])
        check_choice("smoothing", options["smoothing"], SMOOTHINGS)
        self.smoothing = options["smoothing"]
        self.max_scale = _check_max_scale(options["max_scale"])
        if not isinstance(options["strict"], bool):
            raise ValueError(f"strict must be a bool, got {options['strict']!r}")
        self.strict = options["strict"]
        check_choice("scale_balance", scale_balance, ("mean", "sum", None))
        self.scale_balance = scale_balance
        if not isinstance(smooth_alignment, bool):
            raise ValueError(f"smooth_alignment must be a bool, got {smooth_alignment!r}")
        self.smooth_alignment = smooth_alignment
        if loss_floor is not None:
            floor = check_nonnegative("loss_floor", loss_floor)  # a float: clamp_min refuses ints beyond int64
            if floor == 0:
                raise ValueError(f"loss_floor must be > 0, got {loss_floor!r}")
            loss_floor = floor
        self.loss_floor = loss_floor
        # the base class refuses losses <= 0 in strict mode without a floor, and losses < 0
        # without a floor otherwise (a zero loss is then bounded by max_scale)
        self.positive_losses = self.strict and loss_floor is None
        self.nonnegative_losses = not self.strict and loss_floor is None
        if not self.strict and self.max_scale == math.inf and loss_floor is None:
            raise ValueError(
                "strict=False needs a finite max_scale or a loss_floor: a loss of 0 would get an infinite "
                f"scale-balance weight (got max_scale={self.max_scale})"
            )
        ratio = check_nonnegative("min_weight_ratio", options["min_weight_ratio"])
        if ratio >= 1:
            raise ValueError(f"min_weight_ratio must be in [0, 1), got {options['min_weight_ratio']!r}")
        self.min_weight_ratio = ratio
        self.grouping = Grouping(self.num_tasks, num_groups, clustering, group_weights, seed)
        self._warned_bound = False
        # log Q_t up to an additive constant: -beta times the cumulative risk (Eq. 6 as written;
        # Q_t = softmax of it), from log Q_0 = -log M.
        self.register_buffer(
            "log_alignment", torch.full((self.num_tasks,), -math.log(self.num_tasks), dtype=torch.float64)
        )
        # sum of each task's losses so far: its running mean is the unit of the relative risk
        self.register_buffer("loss_totals", torch.zeros(self.num_tasks, dtype=torch.float64))

    @classmethod
    def paper(cls, num_tasks: int, num_groups: int | None = None, **options) -> GO4Align:
        """``GO4Align(num_tasks, num_groups, preset="paper", **options)``: the printed equations."""
        return cls(num_tasks, num_groups, preset="paper", **options)

    @property
    def num_groups(self) -> int:
        return self.grouping.num_groups

    def _risk(self, losses: Tensor) -> Tensor:
        """The risk of Eq. 6: the loss, or the loss over its running mean (0 while that is 0)."""
        if self.smoothing == "absolute":
            return losses
        # a new tensor rather than in place: a state_dict taken earlier keeps its values
        self.loss_totals = totals = self.loss_totals + losses
        return torch.where(totals > 0, torch.div(losses * (self.step + 1), totals), 0.0)

    def indicators(self, losses: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Scale-balance, smooth-alignment and indicators for detached ``losses``; updates Q."""
        risk = cast(losses, torch.float64)
        if self.loss_floor is not None:
            risk = risk.clamp_min(self.loss_floor)
        if self.smooth_alignment:
            if self.beta > 0:  # log Q_t = log Q_{t-1} - beta r_t, up to a constant (a new tensor, as above)
                self.log_alignment = torch.sub(self.log_alignment, self._risk(risk), alpha=self.beta)
            smooth = torch.softmax(self.log_alignment, 0)
        else:
            smooth = torch.full_like(risk, 1 / self.num_tasks)
        if self.scale_balance is None:
            return torch.ones_like(risk), smooth, smooth
        mean = risk.mean()
        total = mean if self.scale_balance == "mean" else mean * self.num_tasks
        if self.max_scale < math.inf:  # p <= max_scale: each loss at least mean / max_scale
            floor = mean / self.max_scale
            scale = torch.where(mean > 0, torch.div(total, torch.maximum(risk, floor)), 1.0)
        else:
            scale = torch.div(total, risk)
        return scale, smooth, torch.mul(smooth, scale)

    def weigh(self, losses: Tensor) -> Tensor:
        scale, smooth, gamma = self.indicators(losses)
        assignment = self.grouping(gamma)
        weights = assignment.weights
        largest = weights.max()  # also after the floor below, which is under it
        if self.min_weight_ratio > 0:
            weights = weights.clamp_min(largest * self.min_weight_ratio)
        # the largest weight must fit the losses' dtype, and the objective sum_m w_m |L_m| half of
        # it (room for rounding): beyond, losses near the range's edge times weights > 1 give
        # infinite gradients. All weights divided alike, no host round trip; |L| scaled first so
        # that float64 losses near their own maximum do not overflow the product.
        limit = torch.finfo(losses.dtype).max
        objective = torch.dot(weights, cast(losses, torch.float64).abs() / (limit / 2))
        rescale = torch.clamp_min(torch.maximum(largest / limit, objective), 1.0)
        weights = weights / rescale
        self.record(
            losses=losses,
            scale_balance=scale,
            smooth_alignment=smooth,
            indicators=gamma,
            weights=weights,
            weight_rescale=rescale,
            bounded=lambda: self._bounded(losses),
            **assignment.diagnostics(),
        )
        return weights

    @property
    def loss_sign_reason(self) -> str:
        return "Eq. 5 divides by the losses (pass loss_floor=... for losses that can be zero or negative)"

    def _bounded(self, losses: Tensor) -> Tensor:
        """Which tasks' ``p`` the bound ``max_scale`` holds down this step."""
        risk = cast(losses, torch.float64)
        if self.loss_floor is not None:
            risk = risk.clamp_min(self.loss_floor)
        return risk * self.max_scale < risk.mean()

    def _check_values(self, losses: Tensor, positive: bool, nonnegative: bool = False) -> list[float] | None:
        values = super()._check_values(losses, positive, nonnegative)
        if not self._warned_bound and not self.positive_losses and self.scale_balance is not None:
            self._warn_if_bounded(losses, values)
        return values

    def _warn_if_bounded(self, losses: Tensor, values: list[float] | None) -> None:
        """Warn the first time ``max_scale`` binds: from the losses that validation read to the
        host when there are few, else with one more read."""
        if values is None:
            bounded = self._bounded(losses)
            tasks = bounded.nonzero().flatten().tolist() if bounded.any() else []
        else:
            risks = values if self.loss_floor is None else [max(v, self.loss_floor) for v in values]
            mean = sum(risks) / len(risks)
            tasks = [m for m, risk in enumerate(risks) if risk * self.max_scale < mean]
        if tasks:
            self._warned_bound = True
            warnings.warn(
                f"GO4Align: at step {self.step} task(s) {tasks} have a loss below mean(L) / max_scale "
                f"(max_scale={self.max_scale}): a solved task, or losses orders of magnitude apart; their scale-balance p is held at "
                f"max_scale; diagnostics['bounded'] says when (warned once)",
                UserWarning,
                stacklevel=4,
            )

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, num_groups={self.num_groups}, preset={self.preset!r}, beta={self.beta}, "
            f"smoothing={self.smoothing!r}, max_scale={self.max_scale}, strict={self.strict}, "
            f"scale_balance={self.scale_balance!r}, smooth_alignment={self.smooth_alignment}, "
            f"loss_floor={self.loss_floor}, min_weight_ratio={self.min_weight_ratio}"
        )


def _check_max_scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise ValueError(f"max_scale must be a number >= 1 (math.inf for no bound), got {value!r}")
    return float(value)


class GO4AlignPaper(GO4Align):
    """GO4Align with ``preset="paper"``, under the registry name ``"go4align-paper"``."""

    #: a benchmark protocol's options for ``go4align`` (its ``num_groups``) apply here too
    option_defaults_from = "go4align"

    def __init__(self, num_tasks: int, num_groups: int | None = None, **options):
        if "preset" in options:
            raise ValueError(f"go4align-paper fixes preset='paper'; got preset={options['preset']!r}")
        super().__init__(num_tasks, num_groups, preset="paper", **options)


def _without_preset() -> inspect.Signature:
    """GO4Align's signature less ``preset``: what option checks and documentation read."""
    signature = inspect.signature(GO4Align)
    return signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "preset"])


GO4AlignPaper.__signature__ = _without_preset()
