"""Fuzzing every method's constructor and ``backward`` with hostile inputs.

Each input ends in one of four outcomes:

* ``named``: a ``ValueError`` or ``TypeError`` whose message names the offending argument (the
  constructor's parameter; ``losses`` and the task index or the step for the losses;
  ``shared_parameters``, ``shared_representation`` or ``closure`` for those);
* ``correct``: the call returned, and the result holds up: finite weights (nonnegative for the
  loss-oriented methods), finite gradients written into every parameter the losses reach, for
  the loss-oriented methods exactly ``sum_m w_m grad L_m``, and for the gradient-oriented ones a
  shared gradient that is not silently zero (a zero one must come with a warning);
* ``bare``: any other exception, or a named type whose message names nothing;
* ``wrong``: the call returned a result that fails those checks.

Run ``PYTHONPATH=src python tests/weighting/fuzzing.py`` (about 20 s) for the counts
(``--list`` prints every input that is not ``named`` or ``correct``); ``test_fuzz.py`` keeps ``bare`` and ``wrong`` at 0.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ``helpers`` when run as a script

from helpers.methods import METHODS, MethodInfo, by_label  # noqa: E402

NUM_TASKS = 3
OUTCOMES = ("named", "correct", "bare", "wrong")


# -- the inputs ---------------------------------------------------------------------------------

#: Hostile constructor values, each given in turn to every argument of every method.
HOSTILE_VALUES: tuple[tuple[str, object], ...] = (
    ("negative", -1),
    ("negative-float", -0.5),
    ("zero", 0),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("true", True),
    ("false", False),
    ("str", "x"),
    ("none", None),
    ("huge-int", 10**30),
    ("huge-float", 1e300),
    ("tiny-float", 1e-300),
    ("list", [1, 2]),
    ("list-3", [0.5, 0.3, 0.2]),
    ("three", 3),
    ("two-point-five", 2.5),
    ("tensor", torch.tensor(0.5)),
    ("numpy-int", np.int64(2)),
    ("object", object()),
)


class Model(nn.Module):
    """A shared trunk and one linear head per task, float32, on a fixed batch."""

    def __init__(self, num_tasks: int = NUM_TASKS):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
            self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(num_tasks))
            self.x = torch.randn(8, 4)
            self.y = torch.randn(8, num_tasks) * torch.logspace(0, 1, num_tasks)

    def shared(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.trunk(self.x)
        predictions = torch.cat([head(z) for head in self.heads], 1)
        return ((predictions - self.y) ** 2).mean(0), z


@dataclass
class Call:
    """One ``backward`` call: its arguments, the error name it may raise, and what it reaches."""

    losses: object
    shared_parameters: object
    shared_representation: object
    names: str  # regex an error message must match
    closure: Callable | None = None
    reached: tuple[nn.Parameter, ...] | None = None  # None: every parameter of the model
    exact: bool = True  # whether sum_m w_m grad L_m is checked (not for half-precision losses)
    rebuild: Callable[[], object] | None = None  # the same losses again, with a fresh graph


def _rescaled(values) -> Callable[[Model], Call]:
    """Losses with the given values (per task) and gradients scaled alike."""
    target = torch.tensor(values, dtype=torch.float64)

    def variant(model: Model) -> Call:
        losses, z = model()
        if torch.isfinite(target).all():
            scaled = losses * (target / losses.detach().double()).float()
        else:
            scaled = losses * 0 + target.float()  # a NaN/inf value with the graph kept
        return Call(scaled, model.shared(), z, r"task|step|loss")

    return variant


def _shape(make: Callable[[torch.Tensor], object]) -> Callable[[Model], Call]:
    def variant(model: Model) -> Call:
        losses, z = model()
        return Call(make(losses), model.shared(), z, r"losses")

    return variant


def _dtype(dtype: torch.dtype) -> Callable[[Model], Call]:
    def variant(model: Model) -> Call:
        losses, z = model()
        cast = losses.to(dtype) if dtype.is_floating_point or dtype.is_complex else losses.detach().to(dtype)
        half = dtype in (torch.float16, torch.bfloat16)
        return Call(cast, model.shared(), z, r"losses|dtype", exact=not half)

    return variant


def _detached(model: Model) -> Call:
    losses, z = model()
    return Call(losses.detach(), model.shared(), z.detach(), r"losses|grad|shared_representation")


def _leaf(model: Model) -> Call:
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    return Call(losses, model.shared(), model()[1], r"losses|shared_parameters|shared_representation|grad", reached=())


def _head_only_task(model: Model) -> Call:
    """Task 1's loss does not depend on the shared parameters (its head's bias only)."""
    losses, z = model()
    head = model.heads[1].bias
    own = (head.sum() - 3.0) ** 2 + 0.5
    mixed = torch.stack([losses[0], own, losses[2]])
    reached = tuple(p for p in model.parameters() if p is not model.heads[1].weight)
    return Call(mixed, model.shared(), z, r"task|shared|gradient", reached=reached)


def _no_shared_dependence(model: Model) -> Call:
    """No task depends on the shared parameters."""
    losses = torch.stack([(h.bias.sum() - 2.0) ** 2 + 0.1 for h in model.heads])
    z = model()[1]
    reached = tuple(h.bias for h in model.heads)
    return Call(losses, model.shared(), z, r"task|shared|gradient", reached=reached)


def _frozen_trunk(model: Model) -> Call:
    for p in model.shared():
        p.requires_grad_(False)
    losses, z = model()
    reached = tuple(p for h in model.heads for p in h.parameters())
    return Call(losses, model.shared(), z, r"shared_parameters|shared_representation", reached=reached)


def _empty_shared(model: Model) -> Call:
    losses, z = model()
    return Call(losses, [], z, r"shared_parameters")


def _shared_generator(model: Model) -> Call:
    losses, z = model()
    return Call(losses, model.trunk.parameters(), z, r"shared_parameters")


def _unused_shared(model: Model) -> Call:
    """A shared parameter that no loss reaches."""
    extra = nn.Parameter(torch.ones(3))
    losses, z = model()
    return Call(losses, [*model.shared(), extra], z, r"shared_parameters")


def _shared_not_tensors(model: Model) -> Call:
    losses, z = model()
    return Call(losses, ["weight", 3], z, r"shared_parameters")


def _representation_not_tensor(model: Model) -> Call:
    losses, z = model()
    return Call(losses, model.shared(), z.tolist(), r"shared_representation")


def _representation_unrelated(model: Model) -> Call:
    """A representation that requires grad but that the losses do not go through."""
    losses, _ = model()
    return Call(losses, model.shared(), torch.ones(8, 6, requires_grad=True), r"shared_representation")


def _meta(model: Model) -> Call:
    losses, z = model()
    return Call(losses.to("meta"), model.shared(), z, r"losses|meta")


def _bad_closure(values) -> Callable[[Model], Call]:
    def variant(model: Model) -> Call:
        losses, z = model()
        return Call(
            losses,
            model.shared(),
            z,
            r"closure|losses|task|step",
            closure=lambda: torch.tensor(values, dtype=torch.float32),
        )

    return variant


LOSS_VARIANTS: dict[str, Callable[[Model], Call]] = {
    "healthy": _rescaled([0.7, 1.3, 2.2]),
    "nan": _rescaled([1.0, math.nan, 1.0]),
    "inf": _rescaled([1.0, 1.0, math.inf]),
    "-inf": _rescaled([-math.inf, 1.0, 1.0]),
    "negative-one": _rescaled([-0.5, 4.0, 9.0]),
    "negative-all": _rescaled([-1.0, -2.0, -3.0]),
    "zero-one": _rescaled([0.0, 1.0, 2.0]),
    "zero-all": _rescaled([0.0, 0.0, 0.0]),
    "ties": _rescaled([1.5, 1.5, 1.5]),
    "span-1e-30-1e30": _rescaled([1e-30, 1.0, 1e30]),
    "span-1e-20-1e20": _rescaled([1e20, 1e-20, 1.0]),
    "tiny-all": _rescaled([1e-30, 3e-30, 2e-30]),
    "subnormal": _rescaled([1e-40, 1.0, 1.0]),
    "huge-all": _rescaled([1e30, 2e30, 3e30]),
    "near-float32-max": _rescaled([1.0, 1e38, 3e38]),
    "shape-0d": _shape(lambda l: l.sum()),
    "shape-column": _shape(lambda l: l[:, None]),
    "shape-row": _shape(lambda l: l[None, :]),
    "shape-short": _shape(lambda l: l[:2]),
    "shape-long": _shape(lambda l: torch.cat([l, l[:1]])),
    "shape-empty": _shape(lambda l: l[:0]),
    "type-list": _shape(lambda l: list(l)),
    "type-numpy": _shape(lambda l: l.detach().numpy()),
    "type-none": _shape(lambda l: None),
    "dtype-float16": _dtype(torch.float16),
    "dtype-bfloat16": _dtype(torch.bfloat16),
    "dtype-float64": _dtype(torch.float64),
    "dtype-int64": _dtype(torch.int64),
    "dtype-bool": _dtype(torch.bool),
    "dtype-complex64": _dtype(torch.complex64),
    "device-meta": _meta,
    "detached": _detached,
    "leaf-losses": _leaf,
    "task-without-shared-dependence": _head_only_task,
    "no-task-with-shared-dependence": _no_shared_dependence,
    "frozen-shared-parameters": _frozen_trunk,
    "empty-shared-parameters": _empty_shared,
    "shared-parameters-generator": _shared_generator,
    "unused-shared-parameter": _unused_shared,
    "shared-parameters-not-tensors": _shared_not_tensors,
    "representation-not-tensor": _representation_not_tensor,
    "representation-unrelated": _representation_unrelated,
    "closure-nan": _bad_closure([1.0, math.nan, 1.0]),
    "closure-negative": _bad_closure([-1.0, 1.0, 1.0]),
    "closure-short": _bad_closure([1.0, 1.0]),
}


#: Inputs that still fail, in code owned by other changes, by id (``Case.id``) with the reason.
#: Each runs in test_fuzz.py as a strict xfail: fixing one makes its test pass, which fails the
#: suite until it is removed from this list. Empty: every input ends in a named error or a correct
#: result.
OWNED_ELSEWHERE: dict[str, str] = {}


# -- running one input ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fuzzed input: a method with an option set, and a constructor value or a loss variant."""

    label: str
    options: tuple[tuple[str, object], ...]
    argument: str | None = None  # constructor argument fuzzed, with ``value``
    value_label: str | None = None
    variant: str | None = None  # loss variant

    @property
    def id(self) -> str:
        options = ",".join(f"{k}={v!r}" for k, v in self.options)
        what = f"{self.argument}={self.value_label}" if self.argument else self.variant
        return f"{self.label}[{options}]:{what}"


@dataclass
class Outcome:
    kind: str  # one of OUTCOMES
    detail: str = ""


def cases() -> Iterator[Case]:
    """Every input: each constructor argument of each method with each hostile value, and each
    option set of each method with each loss variant."""
    for info in METHODS:
        for argument in info.parameters():
            for value_label, _ in HOSTILE_VALUES:
                yield Case(info.label, (), argument=argument, value_label=value_label)
        for options in info.option_sets:
            for variant in LOSS_VARIANTS:
                yield Case(info.label, tuple(sorted(options.items())), variant=variant)


def run(case: Case) -> Outcome:
    info = by_label(case.label)
    options = dict(case.options)
    if case.argument is not None:
        value = dict(HOSTILE_VALUES)[case.value_label]
        if case.argument == "num_tasks":
            build = lambda: info.make(value, **options)  # noqa: E731
        else:
            build = lambda: info.make(NUM_TASKS, **{**options, case.argument: value})  # noqa: E731
        try:
            method = build()
        except (ValueError, TypeError) as error:
            return _named(error, re.escape(case.argument))
        except Exception as error:  # noqa: BLE001 - counting what escapes is the point
            return Outcome("bare", f"{type(error).__name__}: {error}")
        variant = "healthy"
    else:
        try:
            method = info.make(NUM_TASKS, **options)
        except Exception as error:  # noqa: BLE001
            return Outcome("bare", f"option set refused: {type(error).__name__}: {error}")
        variant = case.variant
    return _step(info, method, LOSS_VARIANTS[variant], twice=case.argument is not None)


def _named(error: Exception, names: str) -> Outcome:
    message = str(error)
    if re.search(names, message):
        return Outcome("named", f"{type(error).__name__}: {message}")
    return Outcome("bare", f"names nothing of /{names}/: {type(error).__name__}: {message}")


def _step(info: MethodInfo, method, variant: Callable[[Model], Call], twice: bool) -> Outcome:
    """One step (two for an accepted constructor value, so that the state update is used)."""
    if method.num_tasks > 10_000:  # accepted 10**30 tasks: building the model would never end
        return Outcome("wrong", f"accepted num_tasks={method.num_tasks}")
    for _ in range(2 if twice else 1):
        model = Model(method.num_tasks)  # an accepted num_tasks: the model follows it
        call = variant(model)
        call.rebuild = lambda: variant(model).losses
        closure = call.closure or (lambda: model()[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                weights = method.backward(
                    call.losses,
                    shared_parameters=call.shared_parameters,
                    shared_representation=call.shared_representation,
                )
                method.after_step(closure)
                method.end_epoch()
            except (ValueError, TypeError) as error:
                return _named(error, call.names)
            except Exception as error:  # noqa: BLE001
                return Outcome("bare", f"{type(error).__name__}: {error}")
        problem = _check(info, method, model, call, weights, caught)
        if problem:
            return Outcome("wrong", problem)
    return Outcome("correct")


def _check(info: MethodInfo, method, model: Model, call: Call, weights, caught) -> str:
    """What is wrong with a returned step, or ''."""
    m = method.num_tasks
    if weights is None:
        if not info.weightless:
            return "no weights returned"
    else:
        if not isinstance(weights, torch.Tensor) or weights.shape != (m,):
            return f"weights {weights!r} are not a tensor of shape ({m},)"
        if not torch.isfinite(weights).all():
            return f"non-finite weights {weights.tolist()}"
        if not info.gradient_oriented and (weights < 0).any():
            return f"negative weights {weights.tolist()} of a loss-oriented method"
    reached = set(model.parameters()) if call.reached is None else set(call.reached)
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return f"non-finite gradient of {name}"
        if p in reached and p.requires_grad and p.grad is None:
            return f"no gradient written into {name}, which the losses reach"
    clipped = getattr(method, "max_norm", 0) > 0  # clipping changes the shared gradient
    if weights is not None and not info.gradient_oriented and call.exact and not clipped:
        problem = _exact(model, call, weights)
        if problem:
            return problem
    if info.gradient_oriented and not caught and _silently_zero(model, call):
        return "a zero shared gradient, silently (no warning), although a task's shared gradient is not zero"
    return ""


def _silently_zero(model: Model, call: Call) -> bool:
    """Whether no shared parameter received a gradient although some task's loss has one there."""
    shared = [p for p in model.shared() if p.requires_grad]
    if not shared or any(p.grad is not None and bool((p.grad != 0).any()) for p in shared):
        return False
    fresh = call.rebuild()
    if not isinstance(fresh, torch.Tensor) or not fresh.requires_grad or fresh.dim() != 1:
        return False
    for loss in fresh:
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        if any(g is not None and bool((g != 0).any()) for g in grads):
            return True
    return False


def _exact(model: Model, call: Call, weights: torch.Tensor) -> str:
    """The loss-oriented gradient: ``sum_m w_m grad L_m`` from the losses' own graph."""
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not params or not isinstance(call.losses, torch.Tensor):
        return ""
    # the losses' graph was freed by the backward: rebuild the same losses (deterministic)
    fresh = call.rebuild()
    objective = (weights.to(fresh.dtype) * fresh).sum()
    expected = torch.autograd.grad(objective, params, allow_unused=True)
    for p, e in zip(params, expected):
        e = torch.zeros_like(p) if e is None else e
        scale = float(e.abs().max()) + float(p.grad.abs().max()) + 1e-30
        if float((p.grad.double() - e.double()).abs().max()) > 1e-3 * scale:
            return f"model gradient differs from sum_m w_m grad L_m (weights {weights.tolist()})"
    return ""


def count(selected: list[Case] | None = None) -> dict[str, list[tuple[Case, Outcome]]]:
    torch.set_num_threads(1)
    results: dict[str, list[tuple[Case, Outcome]]] = {kind: [] for kind in OUTCOMES}
    for case in selected if selected is not None else cases():
        outcome = run(case)
        results[outcome.kind].append((case, outcome))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every bare traceback and wrong result")
    parser.add_argument("--method", help="only this method label")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if args.method in (None, c.label)]
    results = count(selected)
    warnings.resetwarnings()
    print(f"inputs tried           {len(selected)}")
    print(f"named errors           {len(results['named'])}")
    print(f"correct results        {len(results['correct'])}")
    print(f"bare tracebacks        {len(results['bare'])}")
    print(f"silent wrong results   {len(results['wrong'])}")
    elsewhere = [case for kind in ("bare", "wrong") for case, _ in results[kind] if case.id in OWNED_ELSEWHERE]
    print(f"  of which in code owned by other changes (strict xfails in test_fuzz.py): {len(elsewhere)}")
    if args.list:
        for kind in ("bare", "wrong"):
            for case, outcome in results[kind]:
                print(f"{kind:5} {case.id}: {outcome.detail[:300]}")


if __name__ == "__main__":
    main()
