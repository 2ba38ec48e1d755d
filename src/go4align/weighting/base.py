"""The weighting protocol shared by every multi-task method of go4align.

One object per training run, used like a ``torch.optim`` optimiser::

    weighting = GO4Align(num_tasks=3)            # or any other method
    for batch in loader:
        losses = torch.stack([task_loss(...) for ...])   # 1-D, one entry per task
        optimizer.zero_grad()
        weighting.backward(losses, shared_parameters=shared, shared_representation=rep)
        optimizer.step()
        weighting.after_step(closure)            # FAMO: closure() recomputes the losses
    weighting.end_epoch()                        # DWA (epoch mode)

Rules every method follows, so that a training loop never needs a special case by name:

* ``backward(losses, ...)`` writes (accumulates into) ``.grad`` of the model's parameters and
  returns the task weights it used, detached. Keyword arguments that a method does not need are
  ignored, so a loop may always pass ``shared_parameters`` and ``shared_representation``;
  a method that needs one of them raises a ``ValueError`` naming it when it is missing.
* ``backward(..., grad_scaler=scaler)`` (a ``torch.amp.GradScaler``) writes *scaled* gradients,
  as ``scaler.scale(loss).backward()`` would, so that ``scaler.step(optimizer)`` unscales them and
  skips the step on an overflow; weights and solvers always work in float32 or float64 on
  unscaled quantities, whatever the dtype of the losses (``bfloat16``/``float16`` under autocast).
* ``after_step(closure=None)`` is called after ``optimizer.step()``. Methods that need the losses
  of the updated model on the same batch (FAMO) call ``closure()``, which must return them as a
  1-D tensor; the others never call it, so passing it costs nothing.
* ``end_epoch()`` is called once at the end of every epoch.
* Trainable parameters of a method (UW's log-variances) are ordinary ``nn.Parameter`` s of the
  weighting, which is an ``nn.Module``: give ``weighting.parameters()`` to an optimiser.
* ``state_dict()`` / ``load_state_dict()`` hold all state (buffers, parameters, random
  generators, counters), so a resumed run continues bit-identically.
* ``diagnostics`` is a dict of detached tensors describing the last step (at least ``losses``
  and ``weights``; GO4Align adds its indicators and groups), ready for a logger or a plot.

Distributed data parallel training (``torch.distributed`` initialised, one process per device,
each with its shard of the global batch; the recipe is ``docs/distributed.md``):

* Weights and method state are computed from :meth:`Weighting.global_losses`, the losses
  averaged over ranks, so every rank holds identical weights and state.
* Loss-oriented methods (``reduces_gradients = False``) back-propagate one scalar objective of
  the *local* losses, linearised around the averaged ones (see :meth:`LossWeighting.forward`);
  ``DistributedDataParallel``'s hooks average the model's gradients during that backward, as
  for any loss. A method's own trainable parameters (UW), which DDP does not see, get their
  gradient from the averaged losses, identical on every rank.
* Gradient-oriented methods (``reduces_gradients = True``) must see *local* gradients and do
  every reduction themselves: call the forward and ``backward`` inside ``ddp_model.no_sync()``.
  They average the per-task gradients over ranks before aggregating (identically on every rank)
  and average every gradient they write, so ``.grad`` ends up holding the global gradient
  exactly once.

Loss-oriented methods (:class:`LossWeighting`) also offer the plain PyTorch idiom
``weighting(losses).backward()``: calling the module returns the scalar objective, which is what
to hand to ``GradScaler.scale`` under mixed precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence

import torch
from torch import Tensor, nn

from ._checks import finite
from ._distributed import average, world_size

__all__ = ["Weighting", "LossWeighting", "Diagnostics", "NonFiniteLossError", "check_num_tasks", "check_parameters"]


_HALF = (torch.float16, torch.bfloat16)
#: Losses of up to this many tasks are checked by reading them (one operation), more through
#: their minimum and maximum.
_READ_WHOLE = 64
#: ``Tensor.to(dtype)`` parses its many overloads on every call (microseconds in a step of tiny
#: tensors); the dtype's own method does not.
_CASTS = {
    torch.float32: Tensor.float,
    torch.float64: Tensor.double,
    torch.float16: Tensor.half,
    torch.bfloat16: Tensor.bfloat16,
}


def cast(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """``tensor.to(dtype)`` for floating ``dtype``, without a call when it already has it."""
    return tensor if tensor.dtype == dtype else _CASTS[dtype](tensor)


class NonFiniteLossError(ValueError):
    """A task loss was NaN or infinite. ``tasks`` holds the offending task indices."""

    def __init__(self, message: str, tasks: Sequence[int], step: int):
        super().__init__(message)
        self.tasks = list(tasks)
        self.step = step


#: More tasks than this is a mistake (a count of samples or parameters passed as ``num_tasks``):
#: refused at once rather than after minutes of allocating per-task state.
MAX_TASKS = 2**31 - 1


def check_num_tasks(num_tasks: object) -> int:
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
    if num_tasks > MAX_TASKS:
        raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r} (more than {MAX_TASKS})")
    return num_tasks


def check_parameters(shared_parameters: object) -> list[Tensor]:
    """``shared_parameters`` as a list of tensors: one tensor, or an iterable of them (a
    generator such as ``model.parameters()`` is read once)."""
    if isinstance(shared_parameters, Tensor):
        return [shared_parameters]
    try:
        params = list(shared_parameters)
    except TypeError:
        params = None
    if params is None or not all(isinstance(p, Tensor) for p in params):
        raise TypeError(f"shared_parameters must be a tensor or an iterable of tensors, got {shared_parameters!r}")
    return params


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Diagnostics(MutableMapping):
    """The detached tensors that describe one step, by name. An entry recorded as a
    zero-argument callable (GO4Align's group labels and sizes) is computed when first read and
    then kept, so that a step nobody inspects does not pay for it."""

    def __init__(self, entries: dict):
        self._entries = entries

    def __getitem__(self, key: str) -> Tensor:
        value = self._entries[key]
        if not isinstance(value, Tensor):
            value = self._entries[key] = value()
        return value

    def __setitem__(self, key: str, value) -> None:
        self._entries[key] = value

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:  # copies and pickles hold values, not the callables
        return {"_entries": {key: self[key] for key in self._entries}}

    def __repr__(self) -> str:
        return f"Diagnostics({dict(self)!r})"


class Weighting(nn.Module):
    """Base class of every method: validation, step counting, diagnostics, the hooks.

    Subclasses implement :meth:`backward`. ``validate=False`` skips the value checks on the
    losses (finiteness, positivity), which on CUDA are the only host synchronisation of a step.
    """

    #: registry name; set by :func:`go4align.weighting.registry.register`.
    name: str = ""
    #: whether :meth:`backward` averages the gradients it writes over ranks itself (run it inside
    #: DDP's ``no_sync()``) rather than leaving that to DDP's hooks; see the module docstring.
    reduces_gradients: bool = False
    #: whether the losses must be positive (methods that divide by them or take their logs).
    positive_losses: bool = False
    #: whether they must be positive or zero (FAMO's logs of ``L + eps``).
    nonnegative_losses: bool = False

    def __init__(self, num_tasks: int, *, validate: bool = True):
        super().__init__()
        self.num_tasks = check_num_tasks(num_tasks)
        if not isinstance(validate, bool):
            raise ValueError(f"validate must be a bool, got {validate!r}")
        self.validate = validate
        self._step = 0
        # follows .to(device) with the method's state, so that a step can tell where it lives
        self.register_buffer("_device_probe", torch.empty(0), persistent=False)
        self.diagnostics: Diagnostics = Diagnostics({})

    @property
    def step(self) -> int:
        """Steps taken. A plain int: counting costs no tensor operation, and reading it no host
        synchronisation on a GPU; ``state_dict`` holds it as ``step`` (a 0-d int64 tensor)."""
        return self._step

    def count_step(self) -> None:
        """Called once by every step."""
        self._step += 1

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "step"] = torch.tensor(self._step, dtype=torch.int64)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        key = prefix + "step"
        if key in state_dict:
            if key in unexpected_keys:
                unexpected_keys.remove(key)
            step = state_dict[key]
            if isinstance(step, Tensor) and step.shape == () and not step.is_floating_point() and int(step) >= 0:
                self._step = int(step)
            else:
                error_msgs.append(f'"{key}" must be a 0-d integer tensor >= 0 (the step count), got {step!r}')
        elif strict:
            missing_keys.append(key)

    # -- the protocol -------------------------------------------------------------------------
    def backward(
        self,
        losses: Tensor,
        *,
        shared_parameters: Sequence[Tensor] | None = None,
        shared_representation: Tensor | None = None,
        retain_graph: bool = False,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def after_step(self, closure: Callable[[], Tensor] | None = None) -> None:
        """Hook after ``optimizer.step()``; only methods that need new losses call ``closure``."""

    def end_epoch(self) -> None:
        """Hook at the end of every epoch."""

    # -- helpers for subclasses ---------------------------------------------------------------
    def check_losses(self, losses: object) -> Tensor:
        """Check that ``losses`` is a 1-D floating tensor of length ``num_tasks``."""
        if not isinstance(losses, Tensor):
            raise TypeError(f"losses must be a torch.Tensor, got {type(losses).__name__}")
        if losses.shape != (self.num_tasks,):
            raise ValueError(
                f"losses must be a 1-D tensor of length num_tasks={self.num_tasks}, got shape {tuple(losses.shape)}"
            )
        if not losses.is_floating_point():
            raise TypeError(f"losses must be a floating-point tensor, got dtype {losses.dtype}")
        if losses.is_meta:  # checked before the state follows the losses there and loses its values
            raise ValueError("losses are on the meta device, which holds no values: compute them on a real device")
        if self._device_probe.device != losses.device:
            self.to(losses.device)
        return losses

    def check_differentiable(self, losses: Tensor) -> None:
        """A step back-propagates the losses: detached ones would write no model gradient (a
        method with parameters of its own, UW, would still train those, silently)."""
        if not losses.requires_grad:
            raise ValueError(
                f"{type(self).__name__}: losses must require grad (they are detached, or were computed "
                f"under torch.no_grad()) at step {self.step}: backward() writes the model's gradients from them"
            )

    def global_losses(self, losses: Tensor, *, positive: bool = False, nonnegative: bool = False) -> Tensor:
        """The detached losses that weights are computed from: under ``torch.distributed`` the
        mean over all ranks, so that every rank computes identical weights and state; float32 at
        least (half-precision losses come from autocast, and weights must not be rounded to 3
        significant digits). Checked here (when ``validate``), after the mean, so that every
        rank raises or none does."""
        losses = losses.detach()
        if losses.dtype in _HALF:
            losses = losses.float()
        if world_size() > 1:
            (losses,) = average([losses])
        if self.validate:
            self._check_values(losses, positive, nonnegative)
        return losses

    def _check_values(self, losses: Tensor, positive: bool, nonnegative: bool = False) -> list[float] | None:
        """Raise on a non-finite loss or one of the refused sign; return the losses as read to
        the host (a subclass may check more of them without another read), or ``None`` where
        only their extremes were read."""
        # The one host synchronisation of a validated step. A few losses are read as they are
        # (one operation); many through their extremes (NaN propagates into min and max).
        # ``nonnegative``: 0 allowed, the floor just below it.
        floor = 0.0 if positive else -math.ulp(0.0) if nonnegative else -math.inf
        if losses.shape[0] <= _READ_WHOLE:
            values = losses.tolist()
            if all(floor < v < math.inf for v in values):  # False for NaN
                return values
        else:
            low, high = torch.stack(torch.aminmax(losses)).tolist()  # one copy to the host, not two
            if floor < low and high < math.inf:
                return None
            values = losses.tolist()
        bad = [m for m, v in enumerate(values) if not math.isfinite(v)]
        step = self.step
        if bad:
            raise NonFiniteLossError(
                f"{type(self).__name__}: non-finite loss at step {step} for task(s) {bad}: {[values[m] for m in bad]}",
                bad,
                step,
            )
        bad = [m for m, v in enumerate(values) if not v > floor]
        relation = "< 0" if nonnegative else "<= 0"
        raise ValueError(
            f"{type(self).__name__}: loss {relation} at step {step} for task(s) {bad}: "
            f"{[values[m] for m in bad]}; {self.loss_sign_reason}"
        )

    @property
    def loss_sign_reason(self) -> str:
        """Why the method refuses losses of that sign (the error's last words); a method with an
        option for such losses names it in its own."""
        return "the method takes logs of the losses or divides by them"

    def record(self, **tensors: Tensor | Callable[[], Tensor]) -> None:
        """Keep the tensors of this step for ``diagnostics``; callers pass detached tensors, or
        zero-argument callables that compute one when it is first read."""
        self.diagnostics = Diagnostics(tensors)

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}"


class LossWeighting(Weighting):
    """A loss-oriented method: one backward pass through a scalar objective of the losses.

    Subclasses implement :meth:`weigh` (update state, return the task weights) and, when their
    objective is not ``sum_m w_m L_m``, :meth:`objective`. The returned weights are the effective
    ones: the objective's gradient is ``sum_m w_m * grad L_m`` (for the trainable parameters of
    a method such as UW they may carry a graph).
    """

    def weigh(self, losses: Tensor) -> Tensor:
        raise NotImplementedError

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return torch.dot(cast(weights, losses.dtype), losses)

    def forward(self, losses: Tensor) -> Tensor:
        losses = self.check_losses(losses)
        half = losses.dtype if losses.dtype in _HALF else None
        if half is not None:
            losses = losses.float()  # objectives such as log(L + 1e-8) need float32 at least
        averaged = self.global_losses(losses, positive=self.positive_losses, nonnegative=self.nonnegative_losses)
        weights = self.weigh(averaged)
        if self.validate:
            self._check_representable(weights, half or losses.dtype)
        self.count_step()
        if world_size() == 1:
            return self.objective(losses, weights)
        # Under DDP an objective that is not linear in the losses (FAMO's and SI's logs) of the
        # local losses would give each rank a gradient at its own losses' scale, which DDP's
        # average does not undo. Its value at the averaged losses plus the linear term
        # sum_m w_m L_m (zero in value) has the gradient of one process on the global batch:
        # sum_m w_m grad L_m for the model, and, through ``weights``, the averaged losses'
        # gradient for a method's own parameters (UW's s), which DDP does not average.
        local = torch.dot(weights.detach().to(losses.dtype), losses - losses.detach())
        return self.objective(averaged, weights) + local

    def _check_representable(self, weights: Tensor, dtype: torch.dtype) -> None:
        """The gradient reaching a loss is its weight in the loss's dtype: a weight beyond its
        range (SI's 1 / L for L < 1.5e-5 in float16, GO4Align's mean(L) / L for losses spanning
        1e-30..1e30 in float32) would silently become inf, and the model's gradients with it."""
        largest = float(weights.detach().abs().max())
        if not largest <= torch.finfo(dtype).max:
            wider = "float32 (autocast does for its loss functions)" if dtype in _HALF else "float64"
            raise ValueError(
                f"{type(self).__name__}: weight {largest:.3g} at step {self.step} does not fit the "
                f"losses' dtype {dtype}; compute the losses in {wider}, or bring them to similar scales"
            )

    def backward(
        self,
        losses: Tensor,
        *,
        shared_parameters: Sequence[Tensor] | None = None,
        shared_representation: Tensor | None = None,
        retain_graph: bool = False,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> Tensor:
        self.check_differentiable(self.check_losses(losses))
        objective = self(losses)
        if grad_scaler is not None:
            objective = grad_scaler.scale(objective)
        objective.backward(retain_graph=retain_graph)
        return self.diagnostics["weights"]
