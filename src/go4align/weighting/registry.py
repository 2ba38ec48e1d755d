"""Names of the methods, for configuration files and the command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .base import Weighting

__all__ = ["register", "make", "available", "get"]

_REGISTRY: dict[str, type[Weighting]] = {}
W = TypeVar("W", bound=type[Weighting])


def register(name: str) -> Callable[[W], W]:
    """Class decorator: make a method constructible by ``name``."""

    def decorate(cls: W) -> W:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name {name!r} is already registered to {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def get(name: str) -> type[Weighting]:
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    return _REGISTRY[key]


def make(name: str, num_tasks: int, **options) -> Weighting:
    """Build a method by name: ``make("go4align", 3, num_groups=2)``."""
    return get(name)(num_tasks, **options)


def available() -> list[str]:
    return sorted(_REGISTRY)
