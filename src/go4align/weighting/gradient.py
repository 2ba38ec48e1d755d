"""Gradient-oriented methods in three stages: collect the Jacobian, aggregate it, write ``.grad``.

Every gradient-oriented method (MGDA, PCGrad, CAGrad, IMTL-G, Nash-MTL, Aligned-MTL, GradDrop,
the TorchJD adapter) is a :class:`GradientWeighting`, whose :meth:`~GradientWeighting.backward`
runs three stages, each a short method:

1. **Collect** (:meth:`~GradientWeighting.collect`) the task gradients as one Jacobian ``J`` of
   shape ``[M, P]`` in the model's dtype (float32 at least), kept once, either with respect to
   an explicit list of ``shared_parameters`` (``target="parameters"``, the reference code's
   default) or with respect to the ``shared_representation`` tensor
   (``target="representation"``: MGDA-UB, GradDrop, feature-level IMTL-G), ``P`` being the
   total number of entries. How (the ``jacobian`` option): ``"loop"``, one
   ``torch.autograd.grad`` per task; ``"batched"``, one vmapped call
   (``is_grads_batched=True``), which falls back to the loop, once and for the rest of the run,
   when the model has an operation that vmap cannot batch; ``"auto"`` (default), the loop (see
   below why).
2. **Aggregate** ``J`` with the method's pure function of the Jacobian or its Gramian
   (``mgda_weights``, ``pcgrad_weights``, ``cagrad_weights``, ``imtl_g_weights``,
   ``aligned_mtl_weights``, ``nash_mtl_weights``, ``graddrop_direction``: each testable alone,
   like TorchJD's aggregators), called by the method's :meth:`~GradientWeighting.aggregate`,
   which only adds the method's state (random draws, previous weights) and warnings. The result
   is an :class:`Aggregation`: task weights ``w`` (also the *effective* weights of PCGrad and
   CAGrad, whose directions are combinations of the task gradients too), and/or a direction
   ``d`` of shape ``[P]`` (GradDrop's masks are not a combination). Without a direction,
   ``d = w @ J``.
3. **Write** (:meth:`~GradientWeighting.write`) the gradients: the shared part receives ``d``;
   every other parameter the losses reach (the task-specific heads, found by walking the
   autograd graph, so they never have to be listed) receives the gradient of
   ``sum_m h_m L_m``, where ``h = w`` (``head_gradients="weighted"``: the reference behaviour
   of the weight methods, whose weighted loss reaches the heads) or ``h = 1``
   (``"unweighted"``: PCGrad, CAGrad and GradDrop in the reference, whose heads get the plain
   summed gradient). Gradients are added into ``.grad`` like autograd does (earlier gradients
   are kept). Then, with ``max_norm > 0``, the gradient added to the shared parameters is
   clipped (one meaning for every method: see ``_clipping.py``).

   With ``target="parameters"`` the per-task passes already give every parameter's per-task
   gradient, so the heads' gradients are combined from them and nothing more is back-propagated:
   ``M`` backward passes in all, one fewer than the reference code (which back-propagates the
   weighted loss once more for the heads). Each pass asks autograd only for the parameters its
   task reaches (one memoised walk of the graph finds them), not for every task's head. With
   ``target="representation"`` the per-task passes stop at the representation (cheap), and one
   backward of ``sum_m h_m L_m`` follows, in which a tensor hook on the representation replaces
   the gradient arriving there by ``d``.

Why the loop by default: ``perf/gradient_vs_peers.py`` (CPU, one thread; docs/performance.md)
found the looped Jacobian as fast as or faster than the vmapped one on an MLP at ``M`` = 2 to 40
and on a CNN, and the vmapped one needs ``M`` copies of every intermediate gradient at once
(benchmarks.md found it 3x slower on QM9's graph network). When the losses were put together
with ``torch.stack``, each looped pass starts at its own task loss instead of at ``losses[m]``,
which would send zero gradients through every other task's head (``M^2`` head passes per step).

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

Precision: the Gramian ``J J^T`` is formed in the Jacobian's dtype and only the ``M x M`` result
is widened to float64 for the solvers (:func:`gramian`), without a float64 copy of ``J``. That is
safe for the range (rows whose largest entry lies in ``[1e-15, 1e15]`` are multiplied as they
are; others are normalised first), but a float32 Gramian resolves its small eigenvalues only down
to ~1e-7 of the largest: directions in which the task gradients nearly cancel are lost. That is
what Aligned-MTL's rank tolerance (``lambda_max * M * eps_float32``) accounts for; MGDA's
minimum norm, Nash-MTL's solver and IMTL-G's linear system inherit the same relative accuracy.
A model in float64 gives a float64 Jacobian and Gramian throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from ._checks import check_max_norm
from ._clipping import GradientClip, clip_
from ._distributed import average, gather_batches, world_size
from .base import Weighting, check_choice, check_parameters

__all__ = [
    "GradientWeighting",
    "Aggregation",
    "Collected",
    "TARGETS",
    "HEAD_GRADIENTS",
    "JACOBIANS",
    "gramian",
    "combination",
]

TARGETS = ("parameters", "representation")
HEAD_GRADIENTS = ("weighted", "unweighted")
JACOBIANS = ("auto", "loop", "batched")

# Rows whose largest entry lies in this range are multiplied as they are in float32: their
# squares, summed over up to ~1e8 entries, neither overflow nor underflow.
_SAFE_PEAKS = (1e-15, 1e15)


class Aggregation(NamedTuple):
    """What a method's :meth:`~GradientWeighting.aggregate` returns.

    ``weights``: effective task weights ``[M]`` (float64), or ``None`` when the direction is not a
    combination of the task gradients. ``direction``: ``[P]`` in the Jacobian's dtype, or ``None``
    for ``weights @ J``. ``extras``: method-specific diagnostics.
    """

    weights: Tensor | None
    direction: Tensor | None = None
    extras: dict[str, Tensor] | None = None


class Collected(NamedTuple):
    """The collect stage's result.

    ``jacobian``: ``[M, P]``, unscaled, of the global batch under ``torch.distributed``.
    ``targets``: what it was taken w.r.t. (the gathered representation under DDP).
    ``span``: this rank's ``(offset, length)`` in the gathered batch (representation, DDP).
    ``heads`` and ``head_grads``: with ``target="parameters"``, the other parameters the losses
    reach and, per task, the indices into ``heads`` of those it reaches with their gradients
    from it (``None`` where autograd gave none), so that writing needs no further backward;
    empty otherwise.
    """

    jacobian: Tensor
    targets: list[Tensor]
    span: tuple[int, int] | None = None
    heads: list[Tensor] = []
    head_grads: list[tuple[list[int], list[Tensor | None]]] = []


def gramian(jacobian: Tensor) -> Tensor:
    """``J J^T`` as float64 (the inner products of the task gradients), formed in ``J``'s dtype.

    Below float64, a row whose largest entry is outside ``[1e-15, 1e15]`` would overflow
    (squares above ~1e38: infinite Gramians and NaN weights although every gradient is finite)
    or underflow (a row far smaller than the largest one, losses spanning 1e-30..1e30). Then
    each row is divided by its largest entry before the product (a normalised copy of ``J``),
    and the result rescaled in float64."""
    if jacobian.dtype == torch.float64:
        return jacobian @ jacobian.T
    peaks = row_peaks(jacobian)
    low, high = torch.aminmax(peaks)
    if _SAFE_PEAKS[0] <= float(low) and float(high) <= _SAFE_PEAKS[1]:
        return (jacobian @ jacobian.T).to(torch.float64)
    peaks = peaks.clamp_min(torch.finfo(jacobian.dtype).tiny)
    normed = jacobian / peaks[:, None]
    peaks = peaks.to(torch.float64)
    return (normed @ normed.T).to(torch.float64) * peaks[:, None] * peaks[None, :]


def row_peaks(jacobian: Tensor) -> Tensor:
    """Each row's largest magnitude (NaN for a row holding NaN), without a copy of ``J``.
    ``max(amax, -amin)`` selects the same element as ``vector_norm(ord=inf)``, which on CPU
    costs about 30 times more (1.5 ms for a 3 x 82k float32 matrix against 35 us)."""
    return torch.maximum(jacobian.amax(1), jacobian.amin(1).neg())


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
        jacobian: how the Jacobian is collected: ``"auto"`` (the loop), ``"loop"`` (one
            backward per task) or ``"batched"`` (one vmapped backward).
        max_norm: clip the gradient added to ``shared_parameters`` to this norm (``0``: off;
            else at least float32's smallest normal number, ~1.2e-38, below which clipping
            writes zeros); needs ``shared_parameters`` whatever the target.
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
        jacobian: str = "auto",
        max_norm: float = 0.0,
        validate: bool = True,
    ):
        super().__init__(num_tasks, validate=validate)
        check_choice("target", target, TARGETS)
        check_choice("head_gradients", head_gradients, HEAD_GRADIENTS)
        check_choice("jacobian", jacobian, JACOBIANS)
        self.target = target
        self.head_gradients = head_gradients
        self.jacobian_strategy = jacobian
        self.max_norm = check_max_norm(max_norm)
        self._vmap_failed = False

    # -- to implement ---------------------------------------------------------------------------
    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        """Task weights and/or direction from the Jacobian ``[M, P]`` and the detached losses."""
        raise NotImplementedError

    def reuse(self) -> Aggregation | None:
        """Weights to use this step without aggregating a new Jacobian, or ``None``."""
        return None

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
        clipped = self.clipped(shared_parameters)
        scale = scaler_factor(grad_scaler, losses.device)
        aggregation, collected = self.reuse(), None
        # reused weights reach the shared parameters through the weighted loss, without a Jacobian
        if aggregation is None or self.head_gradients == "unweighted":
            poisoned = reachable_leaves(losses) if scale != 1.0 else []  # found while the graph exists
            collected = self.collect(losses, targets, retain_graph, scale)
            if collected is None:
                return self.overflow(poisoned, detached)
            if aggregation is None:
                aggregation = self.aggregate(collected.jacobian, detached, collected.targets)
        weights, _, extras = aggregation
        norm = self.write(losses, targets, collected, aggregation, clipped, scale, retain_graph)
        self.count_step()
        record = {"losses": detached} if weights is None else {"losses": detached, "weights": weights.detach()}
        if norm is not None:
            record["shared_grad_norm"] = norm
        self.record(**record, **(extras or {}))
        return None if weights is None else weights.detach()

    # -- stage 1: collect ---------------------------------------------------------------------------
    def collect(self, losses: Tensor, targets: Sequence[Tensor], retain_graph: bool, scale: float) -> Collected | None:
        """The Jacobian of the (global) losses w.r.t. ``targets``, or ``None`` when a scaled
        backward overflowed. With ``target="parameters"`` the per-task passes also give the
        heads' gradients, and the graph is freed unless ``retain_graph``; otherwise it is kept
        for the write stage's backward."""
        direct = self.target == "parameters"
        # the heads each task reaches (with target="representation" the passes stop before them)
        reached = task_leaves(task_outputs(losses), targets) if direct else [[] for _ in range(len(losses))]
        heads = list({id(leaf): leaf for leaves in reached for leaf in leaves}.values())
        jacobian, head_grads = self.task_gradients(losses, targets, heads, reached, retain_graph or not direct, scale)
        jacobian = unscaled(jacobian, scale)
        if not self.finite(jacobian, scale):
            return None
        jacobian, seen, span = self.global_jacobian(jacobian, targets)
        return Collected(jacobian, seen, span, heads, head_grads)

    def task_gradients(
        self,
        losses: Tensor,
        targets: Sequence[Tensor],
        others: Sequence[Tensor],
        reached: Sequence[Sequence[Tensor]],
        retain_graph: bool,
        scale: float = 1.0,
    ) -> tuple[Tensor, list[tuple[list[int], list[Tensor | None]]]]:
        """The Jacobian w.r.t. ``targets`` and, per task, the indices into ``others`` of the
        tensors it reaches (``reached[m]``, a subset of ``others``) with their gradients, of the
        losses times ``scale``."""
        result = None
        if self.jacobian_strategy == "batched" and not self._vmap_failed:
            try:
                result = batched_task_gradients(losses, targets, others, scale)
            except (RuntimeError, NotImplementedError):
                self._vmap_failed = True  # an operation vmap cannot batch: loop from now on
        if result is None:
            result = looped_task_gradients(losses, targets, others, reached, retain_graph, scale)
        if result[0] is None:
            self.unreached()
        return result

    def jacobian(self, losses: Tensor, targets: Sequence[Tensor]) -> Tensor:
        """Per-task gradients w.r.t. ``targets`` as a ``[M, P]`` matrix, rows in task order."""
        return self.task_gradients(losses, targets, [], [[] for _ in range(losses.shape[0])], True)[0]

    def finite(self, jacobian: Tensor, scale: float) -> bool:
        """Whether the task gradients are finite: checked under a scaler (an overflow skips the
        step) and when ``validate`` (a non-finite gradient, say float16 overflowing, would make
        the solvers return NaN weights: it raises a ValueError naming the tasks instead)."""
        if scale == 1.0 and not self.validate:
            return True
        # a finite row sum means finite entries (inf and NaN propagate): the fast pass. Large
        # finite entries may still overflow the sum: their rows' largest magnitudes decide.
        if bool(torch.isfinite(jacobian.sum(1)).all()):
            return True
        rows = torch.isfinite(row_peaks(jacobian))
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

    # -- stage 3: write -----------------------------------------------------------------------------
    def write(
        self,
        losses: Tensor,
        targets: Sequence[Tensor],
        collected: Collected | None,
        aggregation: Aggregation,
        clipped: list[Tensor] | None,
        scale: float,
        retain_graph: bool,
    ) -> Tensor | None:
        """Add the aggregation's gradients into ``.grad`` (see the module docstring), clipped
        when ``max_norm > 0``; returns the shared gradient's norm before clipping, when clipped."""
        weights, direction, _ = aggregation
        if direction is None and collected is not None:
            direction = combination(weights, collected.jacobian)
        if direction is not None and scale != 1.0:
            direction = direction * scale  # the heads' gradients come scaled from their backward
        head_weights = None if weights is None or self.head_gradients == "unweighted" else weights
        if collected is not None and self.target == "parameters":
            # the direction is the shared parameters' whole new gradient: clipped before it is written
            pieces = list(direction.split([t.numel() for t in targets]))
            norm = None if clipped is None else clip_(pieces, self.max_norm, scale)
            accumulate(targets, pieces)
            totals = combine(head_weights, len(collected.heads), collected.head_grads)
            accumulate(collected.heads, average_present(totals))
            return norm
        clip = None if clipped is None else GradientClip(clipped, self.max_norm)
        if collected is not None and collected.span is not None:
            direction = local_share(direction, targets[0], *collected.span)
        heads = torch.ones_like(losses) if head_weights is None else head_weights.to(losses.dtype)
        leaves = reachable_leaves(losses) if world_size() > 1 else []  # averaged after the backward
        backpropagate(losses, heads * scale, targets if collected is not None else [], direction, retain_graph)
        present = [leaf.grad for leaf in leaves if leaf.grad is not None]
        for grad, mean in zip(present, average(present)):
            grad.copy_(mean)
        return None if clip is None else clip.apply(scale)

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

    def clipped(self, shared_parameters) -> list[Tensor] | None:
        """The parameters whose added gradient is clipped (``None`` without ``max_norm``)."""
        if self.max_norm == 0:
            return None
        if shared_parameters is None:
            raise ValueError(
                f"{type(self).__name__} with max_norm > 0 needs shared_parameters=... (the clipped gradients)"
            )
        return check_parameters(shared_parameters)

    def overflow(self, leaves: Sequence[Tensor], losses: Tensor) -> None:
        """A scaled backward overflowed: NaN gradients make ``scaler.step`` skip this step."""
        accumulate(leaves, [torch.full_like(leaf, math.nan) for leaf in leaves])
        self.count_step()
        self.record(losses=losses, overflow=torch.ones((), device=losses.device))
        return None

    def unreached(self) -> None:
        """No task loss depends on the targets: every task gradient would be zero, silently."""
        name = "shared_representation" if self.target == "representation" else "shared_parameters"
        raise ValueError(
            f"{type(self).__name__}: no task loss depends on {name} at step {self.step}: pass the "
            f"{'tensor the task heads read' if self.target == 'representation' else 'parameters the losses go through'}"
        )

    def extra_repr(self) -> str:
        return (
            f"num_tasks={self.num_tasks}, target={self.target!r}, head_gradients={self.head_gradients!r}, "
            f"jacobian={self.jacobian_strategy!r}, max_norm={self.max_norm}"
        )


# -- collecting ---------------------------------------------------------------------------------------
def looped_task_gradients(
    losses: Tensor,
    targets: Sequence[Tensor],
    others: Sequence[Tensor],
    reached: Sequence[Sequence[Tensor]],
    retain_graph: bool,
    scale: float = 1.0,
) -> tuple[Tensor | None, list[tuple[list[int], list[Tensor | None]]]]:
    """One backward per task: the Jacobian w.r.t. ``targets`` (``None`` when no task reaches
    them) and, per task, the indices into ``others`` of ``reached[m]`` with their gradients, of
    the losses times ``scale``. Each pass asks only for the tensors its task reaches: asking
    every task for every head costs ``M^2`` inputs in autograd's Python argument handling
    (milliseconds per step at ``M = 40``). The rows are written in place: peak memory ``J``
    plus one task's gradients."""
    m, count = losses.shape[0], len(targets)
    size = sum(t.numel() for t in targets)
    jacobian = torch.empty(m, size, dtype=targets[0].dtype, device=targets[0].device)
    index = {id(t): k for k, t in enumerate(others)}
    tail: list[tuple[list[int], list[Tensor | None]]] = []
    one = torch.full((), scale, dtype=losses.dtype, device=losses.device)
    found = False
    for task, (row, output, mine) in enumerate(zip(jacobian, task_outputs(losses), reached)):
        keep = retain_graph or task < m - 1
        grads = torch.autograd.grad(output, [*targets, *mine], one, retain_graph=keep, allow_unused=True)
        found = found or any(g is not None for g in grads[:count])
        torch.cat(
            [torch.zeros_like(t).reshape(-1) if g is None else g.reshape(-1) for g, t in zip(grads, targets)], out=row
        )
        tail.append(([index[id(t)] for t in mine], list(grads[count:])))
    return (jacobian if found else None), tail


def batched_task_gradients(
    losses: Tensor, targets: Sequence[Tensor], others: Sequence[Tensor], scale: float = 1.0
) -> tuple[Tensor | None, list[tuple[list[int], list[Tensor | None]]]]:
    """As :func:`looped_task_gradients`, with one vmapped backward (``is_grads_batched``) for
    every tensor of ``others`` at once (zero rows where a task does not reach one). The graph
    is kept: if vmap cannot batch an operation (a ``RuntimeError``), the loop needs it."""
    m, inputs = losses.shape[0], [*targets, *others]
    eye = scale * torch.eye(m, dtype=losses.dtype, device=losses.device)
    grads = torch.autograd.grad(losses, inputs, eye, retain_graph=True, is_grads_batched=True, allow_unused=True)
    if all(g is None for g in grads[: len(targets)]):
        return None, []
    rows = [
        torch.zeros((m, t.numel()), dtype=t.dtype, device=t.device) if g is None else g.reshape(m, -1)
        for g, t in zip(grads, targets)
    ]
    per_tensor = [[None] * m if g is None else g.unbind(0) for g in grads[len(targets) :]]
    indices = list(range(len(others)))
    return torch.cat(rows, 1), [(indices, [rows_[task] for rows_ in per_tensor]) for task in range(m)]


def task_outputs(losses: Tensor) -> list[Tensor | GradientEdge]:
    """Where each task's backward pass starts. When ``losses`` was made by ``torch.stack``, its
    inputs, the task losses themselves: starting from ``losses[m]`` would send zero gradients
    through every other task's head, ``M^2`` head backward passes per step instead of ``M``."""
    node = losses.grad_fn
    if node is not None and node.name() == "StackBackward0" and len(node.next_functions) == losses.shape[0]:
        if all(child is not None for child, _ in node.next_functions):
            return [GradientEdge(child, index) for child, index in node.next_functions]
    return list(losses)


def task_leaves(outputs: Sequence[Tensor | GradientEdge], exclude: Sequence[Tensor] = ()) -> list[list[Tensor]]:
    """For each of ``outputs`` (:func:`task_outputs`), the leaf tensors its backward pass
    accumulates into, less ``exclude``, in a deterministic order. One walk of the graph: each
    node's leaves are found once and shared by every task that reaches it (the trunk's nodes,
    whose leaves are the excluded shared parameters, cost one visit however many tasks)."""
    excluded = {id(t) for t in exclude}
    below: dict[object, dict[int, Tensor]] = {}
    return [list(leaves_below(start_node(output), below, excluded).values()) for output in outputs]


def start_node(output: Tensor | GradientEdge):
    """The autograd node where back-propagating ``output`` starts."""
    return output.node if isinstance(output, GradientEdge) else output.grad_fn


_NO_LEAVES: dict[int, Tensor] = {}


def leaves_below(root, below: dict, excluded: set[int]) -> dict[int, Tensor]:
    """The leaves reachable from ``root``, less ``excluded``, by id, memoised in ``below`` for
    every node visited. Iterative (deep graphs exceed Python's recursion limit): a node is
    finished once all its children are; one with a single contributing child shares that
    child's dict rather than copying it (stored dicts are never mutated)."""
    if root is None:
        return _NO_LEAVES
    stack = [root]
    while stack:
        node = stack[-1]
        if node in below:
            stack.pop()
            continue
        children = [child for child, _ in node.next_functions if child is not None]
        unfinished = [child for child in children if child not in below]
        if unfinished:
            stack.extend(unfinished)
            continue
        stack.pop()
        found = [below[child] for child in children if below[child]]
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None and id(variable) not in excluded:
            found.append({id(variable): variable})
        if len(found) > 1:
            below[node] = {key: leaf for leaves in found for key, leaf in leaves.items()}
        else:
            below[node] = found[0] if found else _NO_LEAVES
    return below[root]


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


# -- writing ----------------------------------------------------------------------------------------
def combine(
    weights: Tensor | None, count: int, per_task: Sequence[tuple[Sequence[int], Sequence[Tensor | None]]]
) -> list[Tensor | None]:
    """For each of ``count`` tensors, ``sum_m weights_m g_m`` (``weights=None``: all ones) over
    the tasks that gave it a gradient (``per_task[m]``: indices and gradients), in task order;
    ``None`` where no task did. One fused multiply-add per task over the tensors it reaches,
    into fresh totals (the gradients may be views of one batched tensor: left alone)."""
    totals: list[Tensor | None] = [None] * count
    for task, (indices, grads) in enumerate(per_task):
        present = [(k, g) for k, g in zip(indices, grads) if g is not None]
        if not present:
            continue
        for k, g in present:
            if totals[k] is None:
                totals[k] = torch.zeros_like(g)
        terms = [g for _, g in present]
        if weights is not None:
            terms = torch._foreach_mul(terms, weights[task].to(terms[0].dtype))
        torch._foreach_add_([totals[k] for k, _ in present], terms)
    return totals


def backpropagate(
    losses: Tensor, heads: Tensor, targets: Sequence[Tensor], direction: Tensor | None, retain_graph: bool
) -> None:
    """Back-propagate ``sum_m heads_m L_m``; the gradient arriving at the targets is ``direction``
    (when given)."""
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
