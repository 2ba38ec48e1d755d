"""GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020, arXiv 2010.06808)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_bool, check_number, check_seed
from .base import check_choice
from .gradient import TARGETS, Aggregation, GradientWeighting

__all__ = ["GradDrop", "graddrop_direction"]

# The small constant of the purity's denominator: the reference code's on the parameters,
# LibMTL's on the representation.
PURITY_EPS = {"parameters": 1e-8, "representation": 1e-7}
# The reference clips the shared parameters' gradient to norm 1; LibMTL does not clip.
DEFAULT_MAX_NORM = {"parameters": 1.0, "representation": 0.0}


class GradDrop(GradientWeighting):
    r"""Randomly keep, per entry of the shared gradient, only the task gradients of one sign.

    With :math:`g_m` the gradient of task ``m`` and, per entry, :math:`S_m` its signed value,
    the sign purity is :math:`P = \frac12 (1 + \sum_m S_m / (\sum_m |S_m| + \epsilon))`. With
    :math:`U \sim \mathcal U(0, 1)` drawn per entry, task ``m`` keeps its gradient on the entries
    where :math:`P > U` and :math:`S_m > 0`, or :math:`P < U` and :math:`S_m < 0`; the shared
    gradient is :math:`\sum_m g_m (\ell + (1 - \ell)\, \mathrm{mask}_m)` with leak :math:`\ell`.
    Heads receive their plain task gradients. There are no task weights: :meth:`backward`
    returns ``None`` and the diagnostics hold each task's kept fraction of entries and the mean
    purity instead. Paper: https://arxiv.org/abs/2010.06808.

    Two formulations, chosen by ``target``:

    * ``"parameters"`` (default): the reference code behind every published GradDrop row
      (``GradDrop`` in Cranial-XIX/FAMO ``methods/weight_methods.py``; the Nash-MTL repository
      has none). The entries are those of the shared parameters' gradient, :math:`S_m = g_m`,
      :math:`\epsilon = 10^{-8}`, one draw of :math:`U` per shared parameter entry, no leak, and
      the resulting gradient clipped to norm ``max_norm = 1`` (the reference's default
      ``max_norm``, applied after GradDrop writes the gradient, so it takes effect).
    * ``"representation"``: the paper's and LibMTL's. The entries are the features of the
      shared representation ``z`` (batch first); :math:`S_m = \sum_{batch} G_m \odot
      \mathrm{sign}(z)` with :math:`G_m` the task's gradient w.r.t. ``z`` (without the sign
      factor when ``activation_sign=False``), :math:`\epsilon = 10^{-7}`, one draw per feature,
      and no clipping. On SegNet-MTAN this is only the shared decoder's output.

    With the same seed, the draws are those the reference takes from torch's global generator
    seeded with that seed (``torch.rand`` over the entries), so one step matches the reference
    on identical inputs (tests/weighting/test_graddrop.py pins values computed with it); in a
    training run the reference's global generator is also drawn from by dropout and data
    loading, so only the distribution of the draws is the same there.

    Args:
        num_tasks: ``M``.
        target: ``"parameters"`` (the reference) or ``"representation"`` (the paper, LibMTL).
        leak: :math:`\ell \in [0, 1]`; ``1`` disables dropping (plain sum). Reference: 0.
        activation_sign: with ``target="representation"``, multiply the gradients by the sign
            of ``z`` before summing over the batch (``None`` or ``True``: as the paper and
            LibMTL; ``False``: not). Parameters have no activation: ``True`` is an error there.
        max_norm: clip the gradient added to the shared parameters to this norm (``0``: no
            clipping; the one meaning of :class:`~go4align.weighting.gradient.GradientWeighting`).
            ``None``: 1.0 with ``target="parameters"`` (the reference), 0 with
            ``"representation"`` (LibMTL). A positive value needs ``shared_parameters``.
        seed: seed of the generator of ``U`` (saved in ``state_dict``).
        jacobian, validate: see :class:`~go4align.weighting.gradient.GradientWeighting`; the
            heads always receive the plain sum of the task gradients, as in the reference.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        target: str = "parameters",
        leak: float = 0.0,
        activation_sign: bool | None = None,
        max_norm: float | None = None,
        seed: int = 0,
        jacobian: str = "auto",
        validate: bool = True,
    ):
        check_choice("target", target, TARGETS)
        super().__init__(
            num_tasks,
            target=target,
            head_gradients="unweighted",
            jacobian=jacobian,
            max_norm=DEFAULT_MAX_NORM[target] if max_norm is None else max_norm,
            validate=validate,
        )
        self.leak = check_number("leak", leak, low=0.0, high=1.0)
        self.activation_sign = self._activation_sign(activation_sign)
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def _activation_sign(self, value: bool | None) -> bool:
        if value is None:
            return self.target == "representation"
        check_bool("activation_sign", value)
        if value and self.target == "parameters":
            raise ValueError("activation_sign=True needs target='representation': parameters have no activation sign")
        return value

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        if self.target == "parameters":
            grads, signed = jacobian, jacobian
        else:
            z = targets[0].detach()
            grads = jacobian.view(self.num_tasks, *z.shape)
            signed = grads * z.sign() if self.activation_sign else grads
            if z.dim() > 1:
                signed = signed.sum(1)  # over the batch: one purity per feature
        draw = torch.rand(signed.shape[1:], generator=self.generator, dtype=signed.dtype).to(signed.device)
        direction, kept, purity = graddrop_direction(grads, signed, draw, leak=self.leak, eps=PURITY_EPS[self.target])
        return Aggregation(None, direction, {"kept_fraction": kept, "mean_purity": purity})

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, target={self.target!r}, leak={self.leak}, "
            f"activation_sign={self.activation_sign}, max_norm={self.max_norm}, seed={self.seed}, "
            f"jacobian={self.jacobian_strategy!r}"
        )


def graddrop_direction(
    grads: Tensor, signed: Tensor, draw: Tensor, *, leak: float = 0.0, eps: float = 1e-8
) -> tuple[Tensor, Tensor, Tensor]:
    """GradDrop's shared direction ``[P]`` from the task gradients ``grads`` (``[M, ...]``), their
    signed values per entry ``signed`` (``[M, E]``: the gradients themselves, or summed over the
    batch with the activation's sign) and one uniform draw per entry ``draw`` (``[E]``); with
    each task's kept fraction of entries and the mean purity (float64)."""
    purity = 0.5 * (1 + signed.sum(0) / (signed.abs().sum(0) + eps))
    mask = ((purity > draw) & (signed > 0)) | ((purity < draw) & (signed < 0))
    keep = leak + (1 - leak) * mask.to(grads.dtype)
    if grads.dim() > signed.dim():
        keep = keep.unsqueeze(1)  # the same features kept for every sample
    direction = (grads * keep).sum(0).reshape(-1)
    return direction, mask.flatten(1).to(torch.float64).mean(1), purity.mean().to(torch.float64)
