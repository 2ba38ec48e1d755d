"""GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020, arXiv 2010.06808)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ._checks import check_bool, check_number, check_seed
from .gradient import Aggregation, GradientWeighting

__all__ = ["GradDrop"]


class GradDrop(GradientWeighting):
    r"""Randomly keep, per feature of the shared representation, only the gradients of one sign.

    With :math:`G_m` the gradient of task ``m`` w.r.t. the representation ``z`` (batch first),
    :math:`S_m = \sum_{batch} G_m \odot \mathrm{sign}(z)` (the sign factor when
    ``activation_sign``), the sign purity is :math:`P = \frac12 (1 + \sum_m S_m / \sum_m |S_m|)`
    per feature. With :math:`U \sim \mathcal U(0, 1)` per feature, task ``m`` keeps its gradient on
    the features where :math:`P > U` and :math:`S_m > 0`, or :math:`P < U` and :math:`S_m < 0`;
    the gradient reaching ``z`` is :math:`\sum_m G_m (\ell + (1 - \ell) \mathrm{mask}_m)` with
    leak :math:`\ell`. Heads receive their plain task gradients. There are no task weights:
    :meth:`backward` returns ``None`` and the diagnostics hold each task's kept fraction of
    features and the mean purity instead. Paper: https://arxiv.org/abs/2010.06808 (the
    formulation follows LibMTL's, the reference repositories have none).

    Args:
        num_tasks: ``M``.
        leak: :math:`\ell \in [0, 1]`; ``1`` disables dropping (plain sum).
        activation_sign: multiply the gradients by the sign of ``z`` before summing over the batch
            (the paper and LibMTL: ``True``).
        seed: seed of the generator of ``U`` (saved in ``state_dict``).
        batched, validate: see :class:`~go4align.weighting.gradient.GradientWeighting`; the
            target is always the shared representation and the heads are unweighted.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        leak: float = 0.0,
        activation_sign: bool = True,
        seed: int = 0,
        batched: bool = False,
        validate: bool = True,
    ):
        super().__init__(num_tasks, target="representation", head_gradients="unweighted", batched=batched, validate=validate)
        self.leak = check_number("leak", leak, low=0.0, high=1.0)
        self.activation_sign = check_bool("activation_sign", activation_sign)
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        z = targets[0].detach()
        grads = jacobian.view(self.num_tasks, *z.shape)
        signed = grads * z.sign() if self.activation_sign else grads
        summed = signed.sum(1) if z.dim() > 1 else signed
        purity = 0.5 * (1 + summed.sum(0) / (summed.abs().sum(0) + 1e-7))
        draw = torch.rand(purity.shape, generator=self.generator, dtype=purity.dtype).to(purity.device)
        mask = ((purity > draw) & (summed > 0)) | ((purity < draw) & (summed < 0))
        keep = self.leak + (1 - self.leak) * mask.to(grads.dtype)
        if z.dim() > 1:
            keep = keep.unsqueeze(1)
        direction = (grads * keep).sum(0).reshape(-1)
        kept = mask.flatten(1).to(torch.float64).mean(1)
        return Aggregation(None, direction, {"kept_fraction": kept, "mean_purity": purity.mean().to(torch.float64)})

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, leak={self.leak}, activation_sign={self.activation_sign}, "
            f"seed={self.seed}, batched={self.batched}"
        )
