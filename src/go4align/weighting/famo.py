"""FAMO, fast adaptive multitask optimisation (Liu et al., NeurIPS 2023, arXiv 2306.03792)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._checks import check_max_norm, check_number
from ._clipping import GradientClip
from .base import LossWeighting, check_parameters

__all__ = ["FAMO"]


class FAMO(LossWeighting):
    r"""Balance the rates at which the task losses decrease, with one backward pass per step.

    Task logits :math:`\xi` (zeros at the start) give :math:`z = \mathrm{softmax}(\xi)`; with
    :math:`D_m = L_m - L^*_m + \epsilon` (:math:`L^* = 0`), the objective is

    .. math:: \sum_m \frac{z_m}{c} \log D_m, \qquad c = \sum_m z_m / D_m \ \text{(detached)},

    whose effective (returned) weights are :math:`z_m / (c D_m)`, summing to one. After the
    optimiser step, :meth:`after_step` calls ``closure()`` for the losses :math:`L'` of the updated
    model on the same batch (evaluated under ``torch.no_grad``) and takes one Adam step on
    :math:`\xi` (lr ``lr``, L2 weight decay ``gamma``, as ``torch.optim.Adam``) along
    :math:`J_{\mathrm{softmax}}(\xi)^\top \delta`, :math:`\delta_m = \log D_m - \log D'_m`.
    The logits and Adam's moments are float64 buffers (the reference: float32).
    Paper: https://arxiv.org/abs/2306.03792.

    Negative losses are refused (a ``ValueError`` naming the step and the tasks, before and after
    the optimiser step): FAMO measures progress by :math:`\log(L - L^*)` with :math:`L^* = 0` as
    each loss's lower bound, and a loss below it would give the log of a negative number and a
    negative weight, a step that *increases* the healthy tasks' losses. Shift such losses by
    their known minimum first. A zero loss is accepted when ``eps > 0``.

    Args:
        num_tasks: ``M``.
        gamma: weight decay of the logits. Default ``1e-3``: the FAMO repository's NYUv2, QM9 and
            CelebA scripts (and LibMTL, TorchJD). The FAMO/GO4Align class default is ``1e-5``;
            the CityScapes script uses ``1e-2``.
        lr: Adam learning rate of the logits (reference 0.025).
        eps: :math:`\epsilon \in [0, 1]` (reference 1e-8), which keeps the log finite at a zero
            loss; larger values would drown the losses' own scale (and overflow the objective's
            coefficients ``z / c``).
        max_norm: if positive, clip the gradient the backward adds to the shared parameters to
            this norm (FAMO's standalone ``famo.py``, default 1.0 there; clipping has one
            meaning in this package: see ``go4align/weighting/_clipping.py``). Default ``0``:
            the repositories' shared base class clips *before* the backward, a no-op, and that
            is the code behind the published tables. A positive value is at least float32's
            smallest normal number (~1.2e-38), below which clipping writes zeros.
        validate: check the loss values each step.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        gamma: float = 1e-3,
        lr: float = 0.025,
        eps: float = 1e-8,
        max_norm: float = 0.0,
        validate: bool = True,
    ):
        super().__init__(num_tasks, validate=validate)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.lr = check_number("lr", lr, low=0.0, low_open=True)
        self.eps = check_number("eps", eps, low=0.0, high=1.0)
        # log(L + eps) must be finite: L >= 0, and L > 0 without eps
        self.positive_losses, self.nonnegative_losses = self.eps == 0, self.eps > 0
        self.max_norm = check_max_norm(max_norm)
        m = self.num_tasks
        for name in ("logits", "exp_avg", "exp_avg_sq", "previous"):
            self.register_buffer(name, torch.zeros(m, dtype=torch.float64))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("pending", torch.zeros((), dtype=torch.bool))
        self._coefficients: Tensor | None = None

    def weigh(self, losses: Tensor) -> Tensor:
        z = torch.softmax(self.logits, 0)
        distance = losses.to(torch.float64) + self.eps
        c = (z / distance).sum()
        self._coefficients = z / c
        weights = self._coefficients / distance
        self.previous = distance
        self.pending.fill_(True)
        self.record(losses=losses, weights=weights, task_logits=self.logits.clone(), softmax=z)
        return weights

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        coefficients = self._coefficients.to(losses.dtype)
        return (coefficients * torch.log(losses + self.eps)).sum()

    def backward(
        self,
        losses: Tensor,
        *,
        shared_parameters: Sequence[Tensor] | None = None,
        shared_representation: Tensor | None = None,
        retain_graph: bool = False,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> Tensor:
        clip = None
        if self.max_norm > 0:
            if shared_parameters is None:
                raise ValueError("FAMO with max_norm > 0 needs shared_parameters=... (the clipped gradients)")
            clip = GradientClip(check_parameters(shared_parameters), self.max_norm)
        weights = super().backward(losses, retain_graph=retain_graph, grad_scaler=grad_scaler)
        if clip is not None:
            scale = grad_scaler.get_scale() if grad_scaler is not None and grad_scaler.is_enabled() else 1.0
            norm = clip.apply(scale)
            if norm is not None:
                self.diagnostics["shared_grad_norm"] = norm
        return weights

    def after_step(self, closure: Callable[[], Tensor] | None = None) -> None:
        """One Adam step on the task logits from the losses ``closure()`` of the updated model."""
        if closure is None:
            raise ValueError("FAMO.after_step needs closure=..., returning the new losses on the same batch")
        if not bool(self.pending):
            raise ValueError("FAMO.after_step must follow a backward() (no losses recorded)")
        with torch.no_grad():
            new = closure()
        new = self.global_losses(
            self.check_losses(new), positive=self.positive_losses, nonnegative=self.nonnegative_losses
        ).to(torch.float64)
        self.update(torch.log(self.previous) - torch.log(new + self.eps))
        self.pending.fill_(False)

    def update(self, decrease: Tensor) -> None:
        """Adam step (L2 weight decay ``gamma``) on the logits along the softmax's Jacobian
        transposed times ``decrease``."""
        z = torch.softmax(self.logits, 0)
        grad = z * (decrease - (z * decrease).sum()) + self.gamma * self.logits
        beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
        self.adam_steps += 1
        t = int(self.adam_steps)
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(adam_eps)
        self.logits.addcdiv_(self.exp_avg, denominator, value=-self.lr / (1 - beta1**t))
        self.diagnostics["logit_gradient"] = grad.detach()

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, gamma={self.gamma}, lr={self.lr}, eps={self.eps}, max_norm={self.max_norm}"
