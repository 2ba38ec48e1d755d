"""The benchmarks: the public benchmark API and a registry of benchmarks by name.

Registry entries are ``"module:function"`` strings resolved on first use, so that importing this
package loads no data set, no model and no optional dependency, and so that a benchmark module
can be registered before it exists in a given build (its use then raises a clear error).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

from .api import (
    Benchmark,
    HardSharing,
    Metric,
    MetricAccumulator,
    Protocol,
    SampleMean,
    Task,
    TensorTaskDataset,
    check_model,
    task_losses,
)

__all__ = [
    "Benchmark",
    "HardSharing",
    "Metric",
    "MetricAccumulator",
    "Protocol",
    "SampleMean",
    "Task",
    "TensorTaskDataset",
    "check_model",
    "task_losses",
    "register_benchmark",
    "unregister_benchmark",
    "get_benchmark",
    "available_benchmarks",
    "installed_benchmarks",
    "benchmark_options",
]

_REGISTRY: dict[str, str | Callable[..., Benchmark]] = {}


def register_benchmark(name: str, factory: str | Callable[..., Benchmark]) -> None:
    """Register ``factory`` (``"package.module:function"`` or a callable returning a
    :class:`Benchmark`) under ``name``; keyword options of ``get_benchmark`` go to it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"benchmark name must be a non-empty str, got {name!r}")
    if isinstance(factory, str) and factory.count(":") != 1:
        raise ValueError(f"a lazy benchmark entry must read 'module:function', got {factory!r}")
    if not isinstance(factory, str) and not callable(factory):
        raise ValueError(f"benchmark factory must be 'module:function' or a callable, got {factory!r}")
    _REGISTRY[name] = factory


def unregister_benchmark(name: str) -> str | Callable[..., Benchmark]:
    """Remove ``name`` from the registry (a plugin's or a test's own benchmark); returns its entry."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; registered: {', '.join(available_benchmarks())}")
    return _REGISTRY.pop(name)


def available_benchmarks() -> list[str]:
    """Every registered name, including lazy entries whose module this build lacks."""
    return sorted(_REGISTRY)


def installed_benchmarks() -> list[str]:
    """The registered names whose module is present (found without importing it)."""
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if callable(entry) or importlib.util.find_spec(entry.split(":")[0]) is not None
    )


def _factory(name: str) -> Callable[..., Benchmark]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; installed: {', '.join(installed_benchmarks())}")
    entry = _REGISTRY[name]
    if callable(entry):
        return entry
    module_name, function = entry.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise  # a dependency of the module is missing: let its own message through
        raise ValueError(
            f"benchmark {name!r} is registered to {entry}, but module {module_name} is not part of "
            f"this installation of go4align; installed benchmarks: {', '.join(installed_benchmarks())}"
        ) from error
    if not hasattr(module, function):
        raise ValueError(f"benchmark {name!r}: {module_name} has no function {function!r}")
    return getattr(module, function)


def benchmark_options(name: str) -> list[str]:
    """The keyword options the factory of benchmark ``name`` accepts."""
    return [
        p.name
        for p in inspect.signature(_factory(name)).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def get_benchmark(name: str, **options: Any) -> Benchmark:
    """Build the benchmark registered as ``name`` with factory ``options`` (e.g. ``data_dir``)."""
    factory = _factory(name)
    accepted = benchmark_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"benchmark {name!r} takes no option(s) {unknown}; it accepts {accepted}")
    benchmark = factory(**options)
    if not isinstance(benchmark, Benchmark):
        raise TypeError(f"benchmark {name!r}: its factory returned {type(benchmark).__name__}, not a Benchmark")
    return benchmark


for _name in ("toy", "synthetic", "digits", "fashion", "qm9", "nyuv2", "cityscapes", "celeba"):
    register_benchmark(_name, f"go4align.benchmarks.{_name}:make_benchmark")
