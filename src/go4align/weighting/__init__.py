"""Multi-task weighting methods behind one protocol (see :mod:`go4align.weighting.base`)."""

from .base import LossWeighting, NonFiniteLossError, Weighting
from .go4align import GO4Align
from .grouped import Grouped
from .grouping import Grouping, kmeans_1d, lloyd_1d, spectral_1d
from .ls import LS
from .registry import available, get, make, register

register("ls")(LS)
register("go4align")(GO4Align)

__all__ = [
    "Weighting",
    "LossWeighting",
    "NonFiniteLossError",
    "GO4Align",
    "Grouped",
    "Grouping",
    "LS",
    "kmeans_1d",
    "lloyd_1d",
    "spectral_1d",
    "available",
    "get",
    "make",
    "register",
]
