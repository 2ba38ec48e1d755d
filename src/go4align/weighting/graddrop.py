"""GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020, arXiv 2010.06808)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_bool, check_max_norm, check_number, check_seed
from .gradient import Aggregation, GradientWeighting

__all__ = ["GradDrop"]

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
        max_norm: clip the norm of the shared parameters' gradient to this value (``0``: no
            clipping). ``None``: 1.0 with ``target="parameters"`` (the reference), 0 with
            ``"representation"`` (LibMTL), where a positive value is an error (the gradient
            there is not the parameters').
        seed: seed of the generator of ``U`` (saved in ``state_dict``).
        batched, validate: see :class:`~go4align.weighting.gradient.GradientWeighting`; the
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
        batched: bool = False,
        validate: bool = True,
    ):
        super().__init__(num_tasks, target=target, head_gradients="unweighted", batched=batched, validate=validate)
        self.leak = check_number("leak", leak, low=0.0, high=1.0)
        self.activation_sign = self._activation_sign(activation_sign)
        self.max_norm = self._max_norm(max_norm)
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def _activation_sign(self, value: bool | None) -> bool:
        if value is None:
            return self.target == "representation"
        check_bool("activation_sign", value)
        if value and self.target == "parameters":
            raise ValueError("activation_sign=True needs target='representation': parameters have no activation sign")
        return value

    def _max_norm(self, value: float | None) -> float:
        if value is None:
            return DEFAULT_MAX_NORM[self.target]
        value = check_max_norm(value)
        if value > 0 and self.target == "representation":
            raise ValueError(
                f"max_norm={value} clips the shared parameters' gradient, which target='representation' "
                "does not form; use max_norm=0 (or None) with it"
            )
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
        purity = 0.5 * (1 + signed.sum(0) / (signed.abs().sum(0) + PURITY_EPS[self.target]))
        draw = torch.rand(purity.shape, generator=self.generator, dtype=purity.dtype).to(purity.device)
        mask = ((purity > draw) & (signed > 0)) | ((purity < draw) & (signed < 0))
        keep = self.leak + (1 - self.leak) * mask.to(grads.dtype)
        if self.target == "representation" and grads.dim() > 2:
            keep = keep.unsqueeze(1)  # the same features kept for every sample
        direction = (grads * keep).sum(0).reshape(-1)
        extras = {
            "kept_fraction": mask.flatten(1).to(torch.float64).mean(1),
            "mean_purity": purity.mean().to(torch.float64),
        }
        if self.max_norm > 0:
            direction, extras["shared_grad_norm"] = clip_norm(direction, self.max_norm)
        return Aggregation(None, direction, extras)

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, target={self.target!r}, leak={self.leak}, "
            f"activation_sign={self.activation_sign}, max_norm={self.max_norm}, seed={self.seed}, "
            f"batched={self.batched}"
        )


def clip_norm(direction: Tensor, max_norm: float) -> tuple[Tensor, Tensor]:
    """``direction`` scaled to norm ``max_norm`` when longer, as ``clip_grad_norm_`` does (the
    same ``1e-6`` in the factor), and its norm before clipping. The norm is taken in float64:
    squares of float32 gradients above ~1e19 overflow, and an infinite norm would clip the
    gradient to zero."""
    norm = torch.linalg.vector_norm(direction, dtype=torch.float64)
    factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return direction * factor.to(direction.dtype), norm.detach()
