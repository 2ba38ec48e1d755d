"""One training step, driven only through the weighting protocol.

``zero_grad``; the predictions and the shared representation; the task losses;
``weighting.backward(losses, shared_parameters=..., shared_representation=...)``;
``optimizer.step()``; ``weighting.after_step(closure)``, where ``closure`` recomputes the losses
of the same batch without gradients.

Non-finite losses are found before any gradient or state changes, by the weighting's own check
or, for a weighting built with ``validate=False``, by the step's. Under ``nonfinite="raise"``
the :class:`~go4align.weighting.NonFiniteLossError` propagates; under ``"skip"`` the step is
dropped: no optimiser step, no weighting update, no gradient left behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from go4align.weighting import NonFiniteLossError, Weighting

from .placement import Placement

__all__ = ["NONFINITE", "TrainingStep"]

NONFINITE = ("raise", "skip")


class TrainingStep:
    """Calling it with a batch ``(inputs, targets)`` (on the device) and the run's step number
    takes one step, in train mode (the model is switched to it if it is not), and returns this
    process's losses (detached) and whether the step was skipped.

    Args:
        model: the model, never a wrapper; the ``no_grad`` recomputation of ``after_step`` runs it.
        weighting: the method.
        optimizer: steps the model's (and the weighting's) parameters.
        losses: ``(predictions, targets) -> 1-D tensor`` of task losses (the benchmark's).
        placement: ranks and the averaging of losses over them.
        net: what the training forward runs through (``DistributedDataParallel`` over ``model``
            on several processes); ``model`` when ``None``.
        nonfinite: ``"raise"`` or ``"skip"`` (see the module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        weighting: Weighting,
        optimizer: torch.optim.Optimizer,
        losses: Callable[[Mapping[str, Tensor], Any], Tensor],
        placement: Placement,
        *,
        net: nn.Module | None = None,
        nonfinite: str = "raise",
    ):
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        self.model, self.weighting, self.optimizer, self.losses = model, weighting, optimizer, losses
        self.placement = placement
        self.net = model if net is None else net
        self.nonfinite = nonfinite
        self.shared: Sequence[nn.Parameter] = model.shared_parameters()

    def __call__(self, batch: Any, step: int) -> tuple[Tensor, bool]:
        inputs, targets = batch
        model, weighting = self.model, self.weighting
        if not model.training:  # Module.train() walks every submodule: 80 us on a LeNet, 2% of its step
            model.train()
        self.optimizer.zero_grad(set_to_none=True)
        # Gradient-oriented methods average the gradients over ranks themselves: DDP must not.
        own_reduction = weighting.reduces_gradients and self.net is not model
        with self.net.no_sync() if own_reduction else contextlib.nullcontext():
            predictions, representation = self.net(inputs, return_representation=True)
            losses = self.losses(predictions, targets)
            try:
                if not weighting.validate:
                    self._check_finite(losses, step)
                weighting.backward(losses, shared_parameters=self.shared, shared_representation=representation)
            except NonFiniteLossError:
                if self.nonfinite == "raise":
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                return losses.detach(), True
        self.optimizer.step()

        def closure() -> Tensor:
            # the unwrapped model: no gradients, so nothing for DDP to synchronise
            with torch.no_grad():
                return self.losses(model(inputs), targets)

        weighting.after_step(closure)
        return losses.detach(), False

    def _check_finite(self, losses: Tensor, step: int) -> None:
        """The weighting's own check, for one built with ``validate=False`` (on the rank-averaged
        losses, so that every rank agrees)."""
        averaged = self.placement.mean(losses.detach())
        bad = [m for m, finite in enumerate(torch.isfinite(averaged).tolist()) if not finite]
        if bad:
            raise NonFiniteLossError(f"non-finite loss for task(s) {bad}", bad, step)
