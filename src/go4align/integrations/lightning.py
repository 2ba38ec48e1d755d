"""Train with PyTorch Lightning: :class:`MultiTaskModule`, a ``LightningModule`` that runs any
go4align weighting (the recipe, with a complete example: ``docs/lightning.md``).

Subclass it: build the network in ``__init__`` (after ``super().__init__(weighting)``), and
implement :meth:`~MultiTaskModule.task_losses` (the batch's task losses, and the shared
representation where the method needs it), ``configure_optimizers`` (over
``self.parameters()``, which hold the weighting's own trainable parameters, UW's, as well) and,
for gradient-oriented methods, :meth:`~MultiTaskModule.shared_parameters`.

How a method trains (``optimization="auto"``):

* Loss-oriented methods (:class:`~go4align.weighting.LossWeighting`: ls, go4align, uw, dwa,
  famo, ...) use automatic optimisation: ``training_step`` returns the weighted objective
  ``weighting(losses)`` (for GO4Align ``sum_m w_m L_m``) and Lightning back-propagates it, with its
  precision plugin, gradient clipping and accumulation as for any loss. Methods that update
  after the optimiser step (FAMO, from the losses of the updated model on the same batch) do so
  in ``on_train_batch_end``, which follows the step.
* Gradient-oriented methods (``reduces_gradients``: mgda, pcgrad, cagrad, nash-mtl, ...) use
  manual optimisation (``automatic_optimization = False``): ``training_step`` zeroes the
  gradients, ``weighting.backward`` back-propagates each task and writes the aggregated
  gradient into ``.grad`` (the part ``manual_backward`` plays otherwise; under a precision
  plugin with a gradient scaler, scaled, as ``manual_backward`` would), then
  ``optimizer.step()`` and ``weighting.after_step``. The learning-rate schedulers that Lightning
  steps only under automatic optimisation are stepped here as configured (``interval``,
  ``frequency``, ``monitor``).

``optimization="manual"`` trains a loss-oriented method the second way too (needed for FAMO with
``max_norm > 0``, whose ``backward`` clips the shared gradient).

State: the weighting is a submodule, so its ``state_dict`` (GO4Align's smooth-alignment history
and running loss sums, FAMO's logits and Adam moments, the step count, random generators) is in
the module's ``state_dict`` and so in every Lightning checkpoint, and ``ckpt_path=...`` restores
it with the model and optimiser: a resumed fit continues the weighting exactly. Lightning
resumes exactly at epoch ends; from a mid-epoch checkpoint it restarts the data of that epoch
unless the data loader is resumable (Lightning's rule, not this module's).

Not covered: Lightning's multi-process strategies for gradient-oriented methods (they average
gradients themselves and must run without DDP's hooks: use ``go4align bench`` under
``torchrun``, ``docs/distributed.md``); :meth:`MultiTaskModule.on_fit_start` refuses them.
Loss-oriented methods average their losses over ranks as in the library's own trainer.

Needs the ``lightning`` extra: ``pip install 'go4align[lightning]'``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from go4align.weighting import LossWeighting, Weighting

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError("go4align.integrations.lightning needs Lightning: pip install 'go4align[lightning]'") from error

__all__ = ["MultiTaskModule", "OPTIMIZATION"]

OPTIMIZATION = ("auto", "automatic", "manual")


class MultiTaskModule(pl.LightningModule):
    """A ``LightningModule`` training M tasks with a go4align ``weighting`` (see the module docstring).

    Args:
        weighting: the method, a :class:`~go4align.weighting.Weighting` (``GO4Align(3)``,
            ``go4align.weighting.make("pcgrad", 3)``, ...).
        optimization: ``"auto"`` (automatic for loss-oriented methods, manual for
            gradient-oriented ones), ``"automatic"`` or ``"manual"``.
        task_names: when given, each training step logs ``loss/<task>`` and ``weight/<task>``
            through ``self.log`` (read by Lightning's loggers at their own interval).
    """

    def __init__(self, weighting: Weighting, *, optimization: str = "auto", task_names: Sequence[str] | None = None):
        super().__init__()
        if not isinstance(weighting, Weighting):
            raise TypeError(f"weighting must be a go4align Weighting, got {type(weighting).__name__}")
        if optimization not in OPTIMIZATION:
            raise ValueError(f"optimization must be one of {OPTIMIZATION}, got {optimization!r}")
        loss_oriented = isinstance(weighting, LossWeighting)
        if optimization == "automatic" and not loss_oriented:
            raise ValueError(
                f"optimization='automatic' needs a loss-oriented method: {type(weighting).__name__} writes the "
                "gradients itself and has no objective to return; use 'auto' or 'manual'"
            )
        if optimization != "manual" and loss_oriented and getattr(weighting, "max_norm", 0) > 0:
            raise ValueError(
                f"{type(weighting).__name__}(max_norm={weighting.max_norm}) clips the shared gradient in its "
                "backward(), which automatic optimisation does not call: pass optimization='manual'"
            )
        if task_names is not None and len(task_names) != weighting.num_tasks:
            raise ValueError(f"task_names must name the {weighting.num_tasks} tasks, got {list(task_names)!r}")
        self.weighting = weighting  # a submodule: its state is in every checkpoint
        self.automatic_optimization = optimization == "automatic" or (optimization == "auto" and loss_oriented)
        self.task_names = list(task_names) if task_names is not None else None

    # -- what a subclass implements -------------------------------------------------------------
    def task_losses(self, batch: Any) -> Tensor | tuple[Tensor, Tensor]:
        """The batch's task losses, a 1-D tensor of length ``num_tasks``; or ``(losses,
        shared_representation)`` for methods that take the gradient at the representation."""
        raise NotImplementedError(f"{type(self).__name__} must implement task_losses(batch)")

    def shared_parameters(self) -> Iterable[Tensor] | None:
        """The parameters shared by the tasks (gradient-oriented methods combine the task
        gradients on them); ``None`` by default, which such a method refuses by name."""
        return None

    # -- training ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        trainer = self.trainer
        if not self.automatic_optimization and trainer.world_size > 1:
            raise ValueError(
                f"{type(self.weighting).__name__} under Lightning's {type(trainer.strategy).__name__} with "
                f"{trainer.world_size} processes is not supported: the method averages the gradients itself and "
                "must run without DDP's hooks; use `go4align bench` under torchrun (docs/distributed.md)"
            )
        updates_after_step = type(self.weighting).after_step is not Weighting.after_step
        if self.automatic_optimization and updates_after_step and trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"{type(self.weighting).__name__} updates after every optimiser step from the losses of its batch: "
                f"accumulate_grad_batches must be 1, got {trainer.accumulate_grad_batches}"
            )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        losses, representation = self._losses(batch)
        if self.automatic_optimization:
            objective = self.weighting(losses)
            self._log_step(losses)
            return objective
        optimizer = self.optimizers()
        if isinstance(optimizer, list):
            raise ValueError(f"{type(self).__name__} trains with one optimiser, got {len(optimizer)}")
        optimizer.zero_grad()
        self.weighting.backward(
            losses,
            shared_parameters=self.shared_parameters(),
            shared_representation=representation,
            grad_scaler=getattr(self.trainer.precision_plugin, "scaler", None),
        )
        optimizer.step()
        self.weighting.after_step(lambda: self._losses(batch)[0])
        self._log_step(losses)
        self._step_schedulers("step")
        return None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.automatic_optimization:
            self.weighting.after_step(lambda: self._losses(batch)[0])

    def on_train_epoch_end(self) -> None:
        self.weighting.end_epoch()
        if not self.automatic_optimization:
            self._step_schedulers("epoch")

    # -- helpers ----------------------------------------------------------------------------------
    def _losses(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        out = self.task_losses(batch)
        return out if isinstance(out, tuple) else (out, None)

    def _log_step(self, losses: Tensor) -> None:
        if self.task_names is None:
            return
        weights = self.weighting.diagnostics["weights"]
        values = {f"loss/{name}": losses[m].detach() for m, name in enumerate(self.task_names)}
        values.update({f"weight/{name}": weights[m] for m, name in enumerate(self.task_names)})
        self.log_dict(values, on_step=True, on_epoch=False)

    def _step_schedulers(self, interval: str) -> None:
        """Step the schedulers of ``interval`` as Lightning's automatic optimisation would."""
        trainer = self.trainer
        count = trainer.global_step if interval == "step" else trainer.current_epoch + 1
        for config in trainer.lr_scheduler_configs:
            if config.interval != interval or count % config.frequency:
                continue
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                monitored = trainer.callback_metrics.get(config.monitor)
                if monitored is None:
                    if config.strict:
                        raise ValueError(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; "
                            f"logged: {sorted(trainer.callback_metrics)}"
                        )
                    continue
                config.scheduler.step(monitored)
            else:
                config.scheduler.step()
