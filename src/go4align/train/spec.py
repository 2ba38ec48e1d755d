"""Method specs: ``name`` or ``name:key=value,key=value`` names one configured method.

Values are read as JSON literals (``3``, ``1e-3``, ``true``, ``[0, 1, 0]``, ``null``) and
otherwise kept as strings (``clustering=lloyd``). The spec string, with the method's name in
lower case, is the method's label (its directory in a grid and its row in a report), so that
``GO4Align`` and ``go4align`` name one run, also on file systems that ignore case. ``stl`` is the
single-task baseline: one model per task, each trained with the ``stl`` weighting
(:class:`~go4align.weighting.stl.STL`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from go4align.weighting import Weighting, available, get, make
from go4align.weighting.grouping import callable_name

__all__ = [
    "MethodSpec",
    "recordable",
    "parse_method_spec",
    "split_methods",
    "single_task_weighting",
    "STL",
]

STL = "stl"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def is_stl(self) -> bool:
        return self.name == STL

    def merged_options(self, defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The protocol's defaults for this method, overridden by the spec's own options. A
        preset variant (``go4align-paper``) takes the defaults of the method it presets first
        (a protocol's ``num_groups`` for GO4Align holds for both)."""
        base = getattr(get(self.name), "option_defaults_from", None) if self.name in available() else None
        return {**defaults.get(base, {}), **defaults.get(self.name, {}), **self.options}

    def effective_options(self, defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """:meth:`merged_options` as results record them, JSON-safe: a callable by its qualified name,
        any other object that JSON cannot hold by its ``repr``."""
        return {key: recordable(value) for key, value in self.merged_options(defaults).items()}

    def build(self, num_tasks: int, defaults: Mapping[str, Mapping[str, Any]] | None = None) -> Weighting:
        """The weighting, with a ``ValueError`` that names this spec when an option is wrong."""
        options = self.merged_options(defaults or {})
        cls = get(self.name)
        accepted = [p for p in inspect.signature(cls).parameters if p != "num_tasks"]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"method {self.label!r}: {self.name} takes no option(s) {unknown}; it accepts {accepted}")
        try:
            return make(self.name, num_tasks, **options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"method {self.label!r} with {num_tasks} tasks: {error}") from error


def recordable(value: Any) -> Any:
    """``value`` in a form JSON holds and a reader can recognise: numbers, strings, booleans and
    None as they are; lists, tuples and mappings element by element; tensors as lists; a
    function or class as ``module.qualified_name``; any other object by its ``repr``, or its class
    name where that ``repr`` is the default one (a memory address, different in every process)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [recordable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): recordable(v) for k, v in value.items()}
    if isinstance(value, Tensor):
        return value.tolist()
    return callable_name(value)


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside brackets and quotes, so that list values keep their commas."""
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_method_spec(text: str) -> MethodSpec:
    """``"GO4Align:num_groups=3,beta=0.001"`` -> ``MethodSpec("go4align", {...}, label)`` with the
    label ``"go4align:num_groups=3,beta=0.001"``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a method spec must be a non-empty string, got {text!r}")
    label = text.strip()
    if "/" in label or label in (".", ".."):
        raise ValueError(f"method spec {label!r} cannot name a directory: no '/' please")
    name, _, rest = label.partition(":")
    name = name.strip().lower()
    label = f"{name}:{rest.strip()}" if rest.strip() else name
    if name != STL and name not in available():
        raise ValueError(f"unknown method {name!r} in {label!r}; available: {', '.join(sorted({*available(), STL}))}")
    options: dict[str, Any] = {}
    if rest.strip():
        for item in _split_top_level(rest):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise ValueError(f"method spec {label!r}: expected key=value, got {item!r}")
            if key in options:
                raise ValueError(f"method spec {label!r}: option {key!r} given twice")
            options[key] = _parse_value(value.strip())
    if name == STL and options:
        raise ValueError(f"method spec {label!r}: stl takes no options")
    return MethodSpec(name, options, label)


def split_methods(text: str) -> list[str]:
    """Split a command-line list ``"go4align:num_groups=3,beta=0.001,ls"`` into specs.

    A comma-separated item continues the previous spec's options when it is ``key=value``
    without a ``:`` before its ``=``; otherwise it starts a new method.
    """
    specs: list[str] = []
    for item in _split_top_level(text):
        item = item.strip()
        if not item:
            raise ValueError(f"empty method in {text!r}")
        continues = "=" in item and ":" not in item.split("=", 1)[0]
        if continues:
            if not specs or ":" not in specs[-1]:
                raise ValueError(f"option {item!r} in {text!r} follows no 'method:' to belong to")
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def single_task_weighting(num_tasks: int, task: int) -> Weighting:
    """The weighting of one STL run: the registered ``stl`` method training task ``task`` only."""
    return make(STL, num_tasks, task=task)
