"""The one gradient clipping of the package: ``max_norm`` of FAMO and the gradient methods.

Meaning, for every method that has the option: after the method has written its gradients, the
gradient that this ``backward`` call *added* to the shared parameters is rescaled to norm
``max_norm`` when it is longer, by ``torch.nn.utils.clip_grad_norm_``'s factor
``max_norm / (norm + 1e-6)``; the task-specific parameters are never clipped, and ``0`` turns
clipping off. After ``zero_grad()`` (the usual loop) this is exactly the reference code's
``clip_grad_norm_(shared_parameters, max_norm)`` after the backward; with gradient accumulation
the gradients of earlier calls are left alone instead of being shrunk again. The norm is taken in
float64 (squares of float32 gradients above ~1e19 overflow, and an infinite norm would clip the
gradient to zero). Under a ``GradScaler`` the gradients are scaled, and so is the norm they are
clipped to; the recorded norm is the unscaled one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["clip_", "GradientClip"]


def clip_(tensors: Sequence[Tensor], max_norm: float, scale: float = 1.0) -> Tensor:
    """Scale ``tensors`` in place to a joint norm of at most ``max_norm * scale``; return their
    norm before clipping, divided by ``scale``."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors]))
    factor = (max_norm * scale / (norm + 1e-6 * scale)).clamp(max=1.0)
    torch._foreach_mul_(list(tensors), factor.to(tensors[0].dtype))
    return (norm / scale).detach()


class GradientClip:
    """Clip what one ``backward`` call adds to ``parameters``' ``.grad``: built before the call
    (it keeps a copy of the gradients already there), applied after it."""

    def __init__(self, parameters: Sequence[Tensor], max_norm: float):
        self.parameters = list(parameters)
        self.max_norm = max_norm
        self.before = [None if p.grad is None else p.grad.clone() for p in self.parameters]

    def apply(self, scale: float = 1.0) -> Tensor | None:
        """Clip the added gradients; their norm before clipping, or ``None`` when nothing was added."""
        pairs = [(p, prior) for p, prior in zip(self.parameters, self.before) if p.grad is not None]
        if not pairs:
            return None
        added = [p.grad if prior is None else p.grad - prior for p, prior in pairs]
        norm = clip_(added, self.max_norm, scale)
        for (p, prior), piece in zip(pairs, added):
            if prior is not None:
                p.grad.copy_(prior + piece)
        return norm
