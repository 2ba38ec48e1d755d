"""Aligned-MTL (Senushkin et al., CVPR 2023, arXiv 2305.19000)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import check_choice
from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["AlignedMTL", "aligned_mtl_weights"]

SCALE_MODES = ("min", "median", "rmse")


class AlignedMTL(GradientWeighting):
    r"""Align the principal components of the task-gradient matrix: condition number one.

    With the Gramian's eigendecomposition :math:`J J^\top = V \Lambda V^\top` (keeping the
    eigenvalues above the reference tolerance :math:`\lambda_{max} M \epsilon_{float32}`), the
    aligned gradients are :math:`J^\top W` with :math:`W = \sigma V \Lambda^{-1/2} V^\top`, whose
    singular values all equal :math:`\sigma`; the shared parameters receive their sum
    :math:`J^\top W \mathbf 1`, so the effective task weights are :math:`w = W \mathbf 1`, and the
    heads receive the same weights (as SamsungLabs' official code, which weights the losses).
    Paper: https://arxiv.org/abs/2305.19000.

    Args:
        num_tasks: ``M``.
        scale_mode: :math:`\sigma` is the square root of the smallest kept eigenvalue
            (``"min"``, the official default), of their median (``"median"``, the lower median
            as ``torch.median``), or of their mean (``"rmse"``).
        target, head_gradients, jacobian, max_norm, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting` (``"representation"`` gives
            the paper's Aligned-MTL-UB).
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        scale_mode: str = "min",
        target: str = "parameters",
        head_gradients: str = "weighted",
        jacobian: str = "auto",
        max_norm: float = 0.0,
        validate: bool = True,
    ):
        super().__init__(
            num_tasks,
            target=target,
            head_gradients=head_gradients,
            jacobian=jacobian,
            max_norm=max_norm,
            validate=validate,
        )
        check_choice("scale_mode", scale_mode, SCALE_MODES)
        self.scale_mode = scale_mode

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        weights, eigenvalues, rank = aligned_mtl_weights(gramian(jacobian), scale_mode=self.scale_mode)
        return Aggregation(weights, None, {"eigenvalues": eigenvalues, "rank": rank})

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_mode={self.scale_mode!r}"


def aligned_mtl_weights(gram: Tensor, *, scale_mode: str = "min") -> tuple[Tensor, Tensor, Tensor]:
    """Aligned-MTL's effective task weights from the float64 Gramian, with its eigenvalues and
    the number kept (the rank); see :class:`AlignedMTL`."""
    eigenvalues, basis = torch.linalg.eigh(gram)
    tolerance = eigenvalues.max() * gram.shape[0] * torch.finfo(torch.float32).eps
    keep = eigenvalues > tolerance
    if not bool(keep.any()):  # all gradients zero: the reference keeps one component
        keep = eigenvalues == eigenvalues.max()
    values, vectors = eigenvalues[keep], basis[:, keep]
    if scale_mode == "min":
        sigma2 = values.min()
    elif scale_mode == "median":
        sigma2 = values.median()
    else:
        sigma2 = values.mean()
    scale = torch.where(values > 0, (sigma2 / values.clamp_min(torch.finfo(values.dtype).tiny)).sqrt(), 0)
    weights = (vectors * scale[None, :]) @ vectors.T @ torch.ones_like(eigenvalues)
    return weights, eigenvalues, keep.sum()
