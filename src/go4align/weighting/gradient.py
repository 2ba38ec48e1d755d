"""Gradient-oriented methods: one gradient per task, an aggregation, the gradients written.

Every gradient-oriented method (MGDA, PCGrad, CAGrad, IMTL-G, Nash-MTL, Aligned-MTL, GradDrop)
does the same three things, which :class:`GradientWeighting` does once for all of them:

1. **Collect** the task gradients as a Jacobian matrix ``J`` of shape ``[M, P]``, either with
   respect to an explicit list of ``shared_parameters`` (``target="parameters"``, the reference
   code's default) or with respect to the ``shared_representation`` tensor
   (``target="representation"``: MGDA-UB, GradDrop, feature-level IMTL-G), ``P`` being the
   total number of entries.
2. **Aggregate** ``J`` into task weights ``w`` (MGDA, IMTL-G, Nash-MTL, Aligned-MTL; also the
   *effective* weights of PCGrad and CAGrad, whose directions are combinations of the task
   gradients too), and/or a direction ``d`` of shape ``[P]`` (GradDrop, whose masks are not a
   combination of task gradients). Without a direction, ``d = w @ J``.
3. **Write the gradients**: the shared part receives ``d``; every other parameter the losses
   reach (the task-specific heads, found by walking the autograd graph, so they never have to be
   listed) receives the gradient of ``sum_m h_m L_m``, where ``h = w``
   (``head_gradients="weighted"``: the reference behaviour of the weight methods, whose weighted
   loss reaches the heads) or ``h = 1`` (``"unweighted"``: PCGrad, CAGrad and GradDrop in the
   reference, whose heads get the plain summed gradient). Gradients are added into ``.grad``
   like autograd does (earlier gradients are kept).

   With ``target="parameters"`` the per-task passes already give every parameter's per-task
   gradient, so the heads' gradients are combined from them and nothing more is back-propagated:
   ``M`` backward passes in all, the cost of a plain per-task backward loop. With
   ``target="representation"`` the per-task passes stop at the representation (cheap), and one
   backward of ``sum_m h_m L_m`` follows, in which a tensor hook on the representation replaces
   the gradient arriving there by ``d``.

Distributed data parallel (``torch.distributed`` initialised, world size ``R > 1``): the direct
writes bypass the accumulation hooks that ``DistributedDataParallel`` averages gradients with,
so these methods do the reductions themselves, and the forward and :meth:`backward` must run
inside ``ddp_model.no_sync()`` (otherwise DDP would expect a reduction that never comes, or
average a second time). Every rank then aggregates the same global Jacobian, so the weights,
the direction and the method's state (random generators included) stay identical:

* ``target="parameters"``: ``J`` is averaged over ranks (the per-task gradients of the global
  batch when the shards are equal), and so are the heads' gradients before they are written.
* ``target="representation"``: the representation's rows are different samples on every rank,
  so ``J`` (viewed per sample) and the representation are *gathered* along the batch dimension
  (dim 0 of the representation) into the global batch's, divided by ``R`` (each rank's loss is a
  mean over ``1/R`` of the batch). Each rank injects ``R`` times its own slice of ``d``, and after
  the backward the gradients of every parameter the losses reach are averaged over ranks.

``.grad`` thus receives the global gradient exactly once; earlier contents of ``.grad`` (gradient
accumulation) must be local too, or identical on every rank.

Mixed precision: with ``grad_scaler=`` (a ``torch.amp.GradScaler``), every backward pass starts
from the scaled losses (``scale * L_m``, as ``scaler.scale(loss).backward()`` does, so small
half-precision gradients do not underflow); the Jacobian is unscaled, in float32 at least, before
the aggregation, and everything written to ``.grad`` is scaled again, so that
``scaler.step(optimizer)`` unscales it as usual. An overflow (a non-finite scaled Jacobian) skips
the aggregation and writes NaN into the gradients of the parameters the losses reach, which
makes ``scaler.step`` skip the step and ``scaler.update`` lower the scale, as it would for
``scaler.scale(loss).backward()``.

Batching: the Jacobian is computed with one ``torch.autograd.grad`` call per task
(``batched=False``, the default) or with one vmapped call (``batched=True``,
``is_grads_batched=True``), which falls back to the per-task loop, once and for the rest of the
run, when the model has an operation that vmap cannot batch. The loop is the default because it
was faster in every measurement: ``perf/methods_cost.py`` (IMTL-G, MLP, CPU, one thread) gives
3.1 / 4.8 / 15.5 / 59 ms a step looped against 3.8 / 5.1 / 19.5 / 181 ms vmapped at
``M`` = 2 / 3 / 11 / 40, with twice the memory at ``M = 40``; benchmarks.md found the vmapped
call 3x slower on QM9's graph network. When the losses were put together with ``torch.stack``,
each looped pass starts at its own task loss instead of at ``losses[m]``, which would send zero
gradients through every other task's head (``M^2`` head passes per step); the vmapped call
cannot do that.

Post-processing: :meth:`GradientWeighting.transform_weights` is called on the weights before the
direction is formed; a wrapper that groups the weights of a gradient method (GO4Align Table 4)
overrides it, and the direction becomes ``transformed_weights @ J``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from ._checks import check_bool
from ._distributed import average, gather_batches, world_size
from .base import Weighting, check_choice, check_parameters

__all__ = ["GradientWeighting", "Aggregation", "TARGETS", "HEAD_GRADIENTS", "gramian", "combination"]

TARGETS = ("parameters", "representation")
HEAD_GRADIENTS = ("weighted", "unweighted")


class Aggregation(NamedTuple):
    """What a method's :meth:`~GradientWeighting.aggregate` returns.

    ``weights``: effective task weights ``[M]`` (float64), or ``None`` when the direction is not a
    combination of the task gradients. ``direction``: ``[P]`` in the Jacobian's dtype, or ``None``
    for ``weights @ J``. ``extras``: method-specific diagnostics.
    """

    weights: Tensor | None
    direction: Tensor | None = None
    extras: dict[str, Tensor] | None = None


def gramian(jacobian: Tensor) -> Tensor:
    """``J J^T`` as float64 (the inner products of the task gradients).

    Below float64 each row is divided by its largest entry before the product, and the result
    rescaled in float64: squares of gradients above ~1e19 overflow float32 (which gave infinite
    Gramians and NaN weights although every gradient was finite), and a row far smaller than the
    largest one (losses spanning 1e-30..1e30) would otherwise underflow to a zero gradient."""
    if jacobian.dtype == torch.float64:
        return jacobian @ jacobian.T
    peaks = jacobian.abs().amax(1).clamp_min(torch.finfo(jacobian.dtype).tiny)
    normed = jacobian / peaks[:, None]
    peaks = peaks.to(torch.float64)
    return (normed @ normed.T).to(torch.float64) * peaks[:, None] * peaks[None, :]


def combination(weights: Tensor, jacobian: Tensor) -> Tensor:
    """``w @ J`` in the Jacobian's dtype. Weights beyond that dtype's range (PCGrad's
    projections between gradients 1e30 apart in size) multiply in float64, where the
    products, of the size of the gradients themselves, stay finite."""
    if jacobian.dtype != torch.float64 and not bool(weights.abs().max() <= torch.finfo(jacobian.dtype).max):
        return (weights.to(torch.float64) @ jacobian.to(torch.float64)).to(jacobian.dtype)
    return weights.to(jacobian.dtype) @ jacobian


class GradientWeighting(Weighting):
    """Base class of the gradient-oriented methods (see the module docstring).

    Args:
        num_tasks: ``M``.
        target: ``"parameters"`` (gradients w.r.t. ``shared_parameters``) or
            ``"representation"`` (w.r.t. ``shared_representation``).
        head_gradients: ``"weighted"`` (the task-specific parameters receive
            ``sum_m w_m grad L_m``) or ``"unweighted"`` (``sum_m grad L_m``).
        batched: compute the Jacobian with one vmapped backward instead of ``M`` backwards.
        validate: check the loss values each step.

    Subclasses implement :meth:`aggregate`; they may override :meth:`reuse` to skip the Jacobian
    on some steps (Nash-MTL's ``update_weights_every``).
    """

    reduces_gradients = True

    def __init__(
        self,
        num_tasks: int,
        *,
        target: str = "parameters",
        head_gradients: str = "weighted",
        batched: bool = False,
        validate: bool = True,
    ):
        super().__init__(num_tasks, validate=validate)
        check_choice("target", target, TARGETS)
        check_choice("head_gradients", head_gradients, HEAD_GRADIENTS)
        self.target = target
        self.head_gradients = head_gradients
        self.batched = check_bool("batched", batched)
        self._vmap_failed = False

    # -- to implement ---------------------------------------------------------------------------
    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        """Task weights and/or direction from the Jacobian ``[M, P]`` and the detached losses."""
        raise NotImplementedError

    def reuse(self) -> Aggregation | None:
        """An aggregation to use this step without computing the Jacobian, or ``None``."""
        return None

    def transform_weights(self, weights: Tensor) -> Tensor:
        """Post-process the task weights (identity); the direction follows the result."""
        return weights

    # -- the protocol -----------------------------------------------------------------------------
    def backward(
        self,
        losses: Tensor,
        *,
        shared_parameters: Sequence[Tensor] | None = None,
        shared_representation: Tensor | None = None,
        retain_graph: bool = False,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> Tensor | None:
        losses = self.check_losses(losses)
        self.check_differentiable(losses)
        detached = self.global_losses(losses, positive=self.positive_losses)  # checked values (and the mean over ranks)
        targets = self.targets(shared_parameters, shared_representation)
        scale = scaler_factor(grad_scaler, losses.device)
        aggregation = self.reuse()
        # Gradients w.r.t. parameters: the per-task passes also yield the other parameters'
        # (heads') gradients, so no backward is needed after the aggregation.
        direct = aggregation is None and self.target == "parameters"
        others = reachable_leaves(losses, exclude=targets) if direct else []
        jacobian = other_grads = span = None
        # averaged over ranks after the backward (or poisoned on an overflow); found now,
        # while the graph exists
        leaves = reachable_leaves(losses) if (world_size() > 1 and not direct) or scale != 1.0 else []
        if aggregation is None:
            keep = retain_graph or not direct
            jacobian, other_grads = self.task_gradients(losses, targets, others, keep, scale)
            jacobian, seen, span = self.global_jacobian(unscaled(jacobian, scale), targets)
            if not self.finite(jacobian, scale):
                return self.overflow(leaves, detached)
            aggregation = self.aggregate(jacobian, detached, seen)
        weights, direction, extras = aggregation
        if weights is not None:
            transformed = self.transform_weights(weights)
            if transformed is not weights:
                weights, direction = transformed, None
        unweighted = weights is None or self.head_gradients == "unweighted"
        heads = torch.ones_like(losses) if unweighted else weights.to(losses.dtype)
        if direction is None and (jacobian is not None or unweighted):
            if jacobian is None:  # reused weights with unweighted heads: w @ J is still needed
                local = unscaled(self.task_gradients(losses, targets, [], True, scale)[0], scale)
                jacobian, _, span = self.global_jacobian(local, targets)
                if not self.finite(jacobian, scale):
                    return self.overflow(leaves, detached)
            direction = combination(weights, jacobian)
        if direction is not None and scale != 1.0:
            direction = direction * scale  # the other gradients come scaled from their backward
        if direct:
            accumulate(targets, direction.split([t.numel() for t in targets]))
            accumulate(others, average_present(combine(None if unweighted else heads, other_grads)))
        else:
            if span is not None and direction is not None:
                direction = local_share(direction, targets[0], *span)
            self.backpropagate(losses, heads * scale, targets, direction, retain_graph)
            if world_size() > 1:
                present = [leaf.grad for leaf in leaves if leaf.grad is not None]
                for grad, mean in zip(present, average(present)):
                    grad.copy_(mean)
        self.count_step()
        record = {"losses": detached} if weights is None else {"losses": detached, "weights": weights.detach()}
        self.record(**record, **(extras or {}))
        return None if weights is None else weights.detach()

    def finite(self, jacobian: Tensor, scale: float) -> bool:
        """Whether the task gradients are finite: checked under a scaler (an overflow skips the
        step) and when ``validate`` (a non-finite gradient, say float16 overflowing, would make
        the solvers return NaN weights: it raises a ValueError naming the tasks instead)."""
        if scale == 1.0 and not self.validate:
            return True
        rows = torch.isfinite(jacobian).all(1)
        if bool(rows.all()):
            return True
        if scale != 1.0:
            return False
        bad = [m for m, ok in enumerate(rows.tolist()) if not ok]
        raise ValueError(
            f"{type(self).__name__}: non-finite gradient at step {self.step} for task(s) {bad} "
            f"(dtype {jacobian.dtype}): the losses are finite, so the backward overflowed; "
            "use torch.amp.GradScaler (grad_scaler=...) or a wider dtype"
        )

    def overflow(self, leaves: Sequence[Tensor], losses: Tensor) -> None:
        """A scaled backward overflowed: NaN gradients make ``scaler.step`` skip this step."""
        accumulate(leaves, [torch.full_like(leaf, math.nan) for leaf in leaves])
        self.count_step()
        self.record(losses=losses, overflow=torch.ones((), device=losses.device))
        return None

    # -- the machinery ------------------------------------------------------------------------------
    def targets(self, shared_parameters, shared_representation) -> list[Tensor]:
        """The tensors the task gradients are taken with respect to."""
        if self.target == "representation":
            if shared_representation is None:
                raise ValueError(f"{type(self).__name__} with target='representation' needs shared_representation=...")
            if not isinstance(shared_representation, Tensor) or not shared_representation.requires_grad:
                raise ValueError("shared_representation must be a tensor that requires grad")
            return [shared_representation]
        if shared_parameters is None:
            raise ValueError(f"{type(self).__name__} with target='parameters' needs shared_parameters=...")
        params = [p for p in check_parameters(shared_parameters) if p.requires_grad]
        if not params:
            raise ValueError("shared_parameters holds no tensor that requires grad")
        return params

    def global_jacobian(
        self, jacobian: Tensor, targets: Sequence[Tensor]
    ) -> tuple[Tensor, list[Tensor], tuple[int, int] | None]:
        """The Jacobian of the global batch, the targets it is taken w.r.t., and (representation
        under DDP) this rank's ``(offset, length)`` in the gathered batch; see the module docstring."""
        world = world_size()
        if world == 1:
            return jacobian, list(targets), None
        if self.target == "parameters":
            return average([jacobian])[0], list(targets), None
        representation = targets[0]
        if representation.dim() == 0:
            raise ValueError("under torch.distributed, shared_representation needs a batch dimension (dim 0)")
        per_sample = jacobian.view(self.num_tasks, *representation.shape)
        whole, offset, length = gather_batches(per_sample, 1)
        gathered, _, _ = gather_batches(representation.detach(), 0)
        return whole.reshape(self.num_tasks, -1) / world, [gathered], (offset, length)

    def jacobian(self, losses: Tensor, targets: Sequence[Tensor]) -> Tensor:
        """Per-task gradients w.r.t. ``targets`` as a ``[M, P]`` matrix, rows in task order."""
        return self.task_gradients(losses, targets, [], True)[0]

    def task_gradients(
        self,
        losses: Tensor,
        targets: Sequence[Tensor],
        others: Sequence[Tensor],
        retain_graph: bool,
        scale: float = 1.0,
    ) -> tuple[Tensor, list[list[Tensor | None]]]:
        """The Jacobian w.r.t. ``targets`` and, for each tensor of ``others``, its gradient from
        each task (``None`` where a task does not reach it), of the losses times ``scale``."""
        m, inputs = self.num_tasks, [*targets, *others]
        if self.batched and not self._vmap_failed:
            eye = scale * torch.eye(m, dtype=losses.dtype, device=losses.device)
            try:
                # the graph is kept even when it is not needed later: the loop below may need it
                grads = torch.autograd.grad(
                    losses, inputs, eye, retain_graph=True, is_grads_batched=True, allow_unused=True
                )
            except (RuntimeError, NotImplementedError):
                self._vmap_failed = True  # an operation vmap cannot batch: loop from now on
            else:
                if all(g is None for g in grads[: len(targets)]):
                    self.unreached()
                rows = [
                    (torch.zeros((m, t.numel()), dtype=t.dtype, device=t.device) if g is None else g.reshape(m, -1))
                    for g, t in zip(grads, targets)
                ]
                tail = [[None] * m if g is None else list(g.unbind(0)) for g in grads[len(targets) :]]
                return torch.cat(rows, 1), tail
        size = sum(t.numel() for t in targets)
        jacobian = torch.empty(m, size, dtype=targets[0].dtype, device=targets[0].device)
        tail = [[] for _ in others]
        one = torch.full((), scale, dtype=losses.dtype, device=losses.device)
        reached = False
        for task, (row, output) in enumerate(zip(jacobian, task_outputs(losses))):
            keep = retain_graph or task < m - 1
            grads = torch.autograd.grad(output, inputs, one, retain_graph=keep, allow_unused=True)
            reached = reached or any(g is not None for g in grads[: len(targets)])
            # rows written in place: peak memory J plus one gradient
            torch.cat(
                [torch.zeros_like(t).reshape(-1) if g is None else g.reshape(-1) for g, t in zip(grads, targets)],
                out=row,
            )
            for collected, g in zip(tail, grads[len(targets) :]):
                collected.append(g)
        if not reached:
            self.unreached()
        return jacobian, tail

    def unreached(self) -> None:
        """No task loss depends on the targets: every task gradient would be zero, silently."""
        name = "shared_representation" if self.target == "representation" else "shared_parameters"
        raise ValueError(
            f"{type(self).__name__}: no task loss depends on {name} at step {self.step}: pass the "
            f"{'tensor the task heads read' if self.target == 'representation' else 'parameters the losses go through'}"
        )

    @staticmethod
    def backpropagate(
        losses: Tensor, heads: Tensor, targets: Sequence[Tensor], direction: Tensor | None, retain_graph: bool
    ) -> None:
        """Back-propagate ``sum_m heads_m L_m``; the gradient arriving at the targets is ``direction``."""
        handles = []
        if direction is not None:
            offset = 0
            for tensor in targets:
                piece = direction[offset : offset + tensor.numel()].view_as(tensor).to(tensor.dtype)
                offset += tensor.numel()
                handles.append(tensor.register_hook(lambda _grad, piece=piece: piece))
        try:
            torch.autograd.backward((heads * losses).sum(), retain_graph=retain_graph)
        finally:
            for handle in handles:
                handle.remove()

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, target={self.target!r}, "
            f"head_gradients={self.head_gradients!r}, batched={self.batched}"
        )


def task_outputs(losses: Tensor) -> list[Tensor | GradientEdge]:
    """Where each task's backward pass starts. When ``losses`` was made by ``torch.stack``, its
    inputs, the task losses themselves: starting from ``losses[m]`` would send zero gradients
    through every other task's head, ``M^2`` head backward passes per step instead of ``M``."""
    node = losses.grad_fn
    if node is not None and node.name() == "StackBackward0" and len(node.next_functions) == losses.shape[0]:
        if all(child is not None for child, _ in node.next_functions):
            return [GradientEdge(child, index) for child, index in node.next_functions]
    return list(losses)


def reachable_leaves(losses: Tensor, exclude: Sequence[Tensor] = ()) -> list[Tensor]:
    """The leaf tensors that back-propagating ``losses`` accumulates into (every parameter the
    losses depend on), in a deterministic order, less ``exclude``."""
    excluded = {id(t) for t in exclude}
    found, seen, stack = [], set(), [losses.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None and id(variable) not in excluded:
            found.append(variable)
        stack.extend(child for child, _ in node.next_functions)
    return found


def combine(weights: Tensor | None, grads: Sequence[Sequence[Tensor | None]]) -> list[Tensor | None]:
    """For each tensor, ``sum_m weights_m grads[tensor][m]`` (``weights=None``: all ones) over the
    tasks whose gradient exists; one fused multiply-add per task over all the tensors."""
    totals = [next((torch.zeros_like(g) for g in per_task if g is not None), None) for per_task in grads]
    for task in range(len(grads[0]) if grads else 0):
        present = [k for k, per_task in enumerate(grads) if per_task[task] is not None]
        if not present:
            continue
        terms = [grads[k][task] for k in present]
        if weights is not None:
            terms = torch._foreach_mul(terms, weights[task].to(terms[0].dtype))
        torch._foreach_add_([totals[k] for k in present], terms)
    return totals


def scaler_factor(grad_scaler: torch.amp.GradScaler | None, device: torch.device) -> float:
    """The scaler's current factor (1 without an enabled scaler). Read through ``scale()``, which
    also initialises a fresh scaler's state as ``scaler.scale(loss)`` would, so ``scaler.step``
    accepts the step; one host synchronisation."""
    if grad_scaler is None or not grad_scaler.is_enabled():
        return 1.0
    return float(grad_scaler.scale(torch.ones((), device=device)))


def unscaled(jacobian: Tensor, scale: float) -> Tensor:
    """The Jacobian divided by the scaler's factor, in float32 at least (half-precision
    representation gradients come from autocast; solvers need more digits)."""
    if jacobian.dtype in (torch.float16, torch.bfloat16):
        jacobian = jacobian.float()
    return jacobian / scale if scale != 1.0 else jacobian


def average_present(values: Sequence[Tensor | None]) -> list[Tensor | None]:
    """``values`` averaged over ranks, ``None`` entries (identical on every rank) kept."""
    means = iter(average([v for v in values if v is not None]))
    return [None if v is None else next(means) for v in values]


def local_share(direction: Tensor, representation: Tensor, offset: int, length: int) -> Tensor:
    """This rank's rows of the global batch's direction, times the world size: the gradients it
    produces are averaged over ranks afterwards, and each rank's loss covers ``1/R`` of the batch."""
    rows = direction.view(-1, *representation.shape[1:]).narrow(0, offset, length)
    return rows.reshape(-1) * world_size()


def accumulate(tensors: Sequence[Tensor], values: Sequence[Tensor | None]) -> None:
    """Add ``values`` into ``.grad`` as autograd would (set when there is none yet)."""
    for tensor, value in zip(tensors, values):
        if value is None:
            continue
        value = value.detach().reshape(tensor.shape).to(tensor.dtype)
        if tensor.grad is None:
            tensor.grad = value
        else:
            tensor.grad.add_(value)
