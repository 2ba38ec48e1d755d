"""Constructor argument checks shared by the methods: each raises ``ValueError`` naming the
parameter and the value received."""

from __future__ import annotations

import math


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


#: Counts (windows, iterations) beyond this are mistakes; refused before they allocate or loop.
MAX_COUNT = 2**31 - 1


def check_int(name: str, value: object, minimum: int, maximum: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an int in [{minimum}, {maximum}], got {value!r}")
    return value


#: float32's smallest normal number.
TINY_NORM = 1.1754943508222875e-38


def check_max_norm(value: object) -> float:
    """A gradient clipping norm: 0 (off), or one that float32 gradients can be clipped to
    without becoming zero."""
    norm = check_number("max_norm", value, low=0.0)
    if 0 < norm < TINY_NORM:
        raise ValueError(f"max_norm must be 0 (no clipping) or >= {TINY_NORM:.3g}, got {value!r}")
    return norm


def check_seed(value: object) -> int:
    """An int that ``torch.Generator.manual_seed`` accepts."""
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**64:
        raise ValueError(f"seed must be an int in [-2**63, 2**64), got {value!r}")
    return value


def check_number(
    name: str, value: object, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False
) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and finite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a finite number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def finite(value: int | float) -> bool:
    """``math.isfinite``, false (rather than ``OverflowError``) for an int beyond float's range."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
