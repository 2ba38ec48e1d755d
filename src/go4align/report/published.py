"""The paper's numbers beside ours: the tables of :mod:`go4align.published`, looked up by the
report's method and benchmark names. Method names in the tables are the papers' spellings;
:func:`lookup_delta_m` and :func:`lookup_time_ratio` match them to ours ignoring case, "-" and "_".
"""

from __future__ import annotations

from ..published import PUBLISHED, TABLE9_SECONDS_PER_EPOCH

__all__ = [
    "PUBLISHED",
    "TABLE9_SECONDS_PER_EPOCH",
    "lookup_delta_m",
    "lookup_time_ratio",
    "method_key",
]


def method_key(name: str) -> str:
    """Spelling-insensitive key: "Nash-MTL", "nash_mtl" and "nashmtl" all give "nashmtl"."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _find(table: dict[str, float], method: str) -> float | None:
    wanted = method_key(method)
    return next((value for name, value in table.items() if method_key(name) == wanted), None)


def lookup_delta_m(benchmark: str, method: str) -> float | None:
    """The paper's Delta-m% of ``method`` on ``benchmark``, or None when it publishes none."""
    published = PUBLISHED.get(method_key(benchmark))
    return None if published is None else _find(published["delta_m"], method)


def lookup_time_ratio(benchmark: str, method: str) -> float | None:
    """The paper's time per epoch of ``method`` relative to LS (Table 9), or None."""
    seconds = TABLE9_SECONDS_PER_EPOCH.get(method_key(benchmark))
    if seconds is None:
        return None
    own = _find(seconds, method)
    return None if own is None else own / seconds["LS"]
