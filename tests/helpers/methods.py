"""The table of methods that drives the generic tests, after torch's ``OptimizerInfo``: one
:class:`MethodInfo` per method, with the option sets worth running through the same tests (the
defaults first, then non-default ones: presets, group counts, clusterings, solvers, targets...) and
what the tests may expect of it. A generic test is parametrised over method x option set
(:data:`OPTION_SETS`) and asks the record, never the method's name, what applies.

A new registered method must get a row: importing this module fails until it has one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from go4align.weighting import FAMO, UW, GradientWeighting, Grouped, Weighting, available, get, make

__all__ = ["MethodInfo", "METHODS", "OPTION_SETS", "DEFAULTS", "by_label", "option_id"]


@dataclass(frozen=True)
class MethodInfo:
    """A method of the table.

    ``label``: the registry name, or a label for a method that is not registered (the Grouped
    wrapper). ``option_sets``: keyword arguments, each a configuration the generic tests run
    (the first is the method's defaults, ``{}``). ``weightless``: ``backward`` may return
    ``None`` (its direction is not a combination of the task gradients). ``ddp``: the options
    the two-process DDP test runs it with, ``None`` for a method left out of that test (each
    case costs steps in two processes). ``build``: ``(num_tasks, **options)`` to the method;
    ``make`` by default. ``cls``: the class whose constructor arguments are fuzzed; the
    registered class by default.
    """

    label: str
    option_sets: tuple[dict, ...] = ({},)
    weightless: bool = False
    ddp: dict | None = None
    build: Callable | None = None
    cls: type | None = None

    def make(self, num_tasks: int, **options) -> Weighting:
        if self.build is not None:
            return self.build(num_tasks, **options)
        return make(self.label, num_tasks, **options)

    def make_or_skip(self, num_tasks: int, **options) -> Weighting:
        """``make``, skipping the test when an optional dependency of the method is missing."""
        try:
            return self.make(num_tasks, **options)
        except ImportError as error:
            pytest.skip(f"{self.label}: {error}")

    @property
    def method_class(self) -> type:
        return self.cls if self.cls is not None else get(self.label)

    @property
    def gradient_oriented(self) -> bool:
        return issubclass(self.method_class, GradientWeighting)

    def parameters(self) -> list[str]:
        """The constructor's arguments (``num_tasks`` included), in signature order."""
        names = list(inspect.signature(self.method_class.__init__).parameters)[1:]
        return [n for n in names if n not in ("method",)]


def _grouped(inner: type) -> Callable:
    """Grouped over a fresh ``inner(num_tasks)``; the fuzzed options are the wrapper's."""

    def build(num_tasks: int, **options):
        return Grouped(inner(num_tasks), **options)

    return build


# the options every gradient method shares (GradientWeighting's)
REPRESENTATION = {"target": "representation"}
UNWEIGHTED_HEADS = {"head_gradients": "unweighted"}
BATCHED = {"jacobian": "batched"}

METHODS: tuple[MethodInfo, ...] = (
    MethodInfo("ls"),
    MethodInfo("stl", ({}, {"task": 2})),
    MethodInfo("si", ({}, {"variant": "log1p"}), ddp={}),
    MethodInfo("gls"),
    MethodInfo("rlw", ({}, {"seed": 3})),
    MethodInfo(
        "dwa", ({}, {"mode": "epoch"}, {"window": 1, "reduction": "sum", "temperature": 0.5}), ddp={"window": 1}
    ),
    MethodInfo("uw", ({}, {"init": -0.5}), ddp={}),
    MethodInfo("famo", ({}, {"max_norm": 1.0}, {"gamma": 0.0, "lr": 0.1, "eps": 1e-3}), ddp={}),
    MethodInfo(
        "go4align",
        (
            {},
            {"num_groups": 3},
            {"num_groups": 1, "beta": 1.0, "scale_balance": "sum"},
            {"loss_floor": 1e-6, "clustering": "lloyd"},
            {"smooth_alignment": False, "group_weights": "random", "min_weight_ratio": 0.0},
            {"clustering": "kmeans-random", "seed": 4, "max_scale": 10.0},
            {"preset": "paper", "num_groups": 3},
        ),
        ddp={},
    ),
    MethodInfo("go4align-paper", ({}, {"num_groups": 3, "loss_floor": 1e-6})),
    MethodInfo(
        "mgda",
        ({}, {"solver": "exact", "normalisation": "loss+"}, {"normalisation": "norm", **REPRESENTATION}),
        ddp={},
    ),
    MethodInfo("mgda-ub", ({}, {"normalisation": "loss"})),
    MethodInfo("pcgrad", ({}, {"reduction": "mean", "seed": 5}, {**BATCHED, "max_norm": 1.0}), ddp={"seed": 3}),
    MethodInfo("graddrop", ({}, {"leak": 0.5, "activation_sign": False}), weightless=True, ddp={"seed": 3}),
    MethodInfo("cagrad", ({}, {"c": 0.0, "rescale": 2}, {"solver": "projected", **UNWEIGHTED_HEADS})),
    # on the representation: the DDP case whose Jacobian is gathered over ranks, not averaged
    MethodInfo("imtl-g", ({}, REPRESENTATION, BATCHED), ddp=REPRESENTATION),
    MethodInfo("nash-mtl", ({}, {"max_norm": 0.0, "update_weights_every": 2}, {"optim_niter": 1})),
    MethodInfo("aligned-mtl", ({}, {"scale_mode": "median"}, {"scale_mode": "rmse", **REPRESENTATION})),
    MethodInfo("torchjd", ({}, {"aggregator": "Mean"}, {"aggregator": "MGDA", **UNWEIGHTED_HEADS}), weightless=True),
    MethodInfo("grouped-uw", ({}, {"num_groups": 3}), build=_grouped(UW), cls=Grouped),
    MethodInfo("grouped-famo", ({}, {"clustering": "lloyd"}), build=_grouped(FAMO), cls=Grouped),
)


def by_label(label: str) -> MethodInfo:
    return next(info for info in METHODS if info.label == label)


def option_id(label: str, options: dict) -> str:
    """A test id: ``go4align-num_groups=3,clustering=lloyd``; ``go4align`` for the defaults."""
    return "-".join([label, *([",".join(f"{k}={v}" for k, v in options.items())] if options else [])])


#: ``(info, options)`` for every option set of every method, for
#: ``pytest.mark.parametrize("info, options", OPTION_SETS)``.
OPTION_SETS = [
    pytest.param(info, options, id=option_id(info.label, options)) for info in METHODS for options in info.option_sets
]

#: ``(info, options)`` for the defaults of every method only, for the tests too costly to multiply.
DEFAULTS = [pytest.param(info, {}, id=info.label) for info in METHODS]


def _check_table() -> None:
    """Every registered method has a row (a new method must say which options to test), and the
    first option set of every row is the defaults."""
    missing = set(available()) - {info.label for info in METHODS}
    if missing:
        raise AssertionError(f"methods without a row in tests/helpers/methods.py: {sorted(missing)}")
    not_defaults = [info.label for info in METHODS if info.option_sets[0] != {}]
    if not_defaults:
        raise AssertionError(f"rows whose first option set is not the defaults {{}}: {not_defaults}")


_check_table()
