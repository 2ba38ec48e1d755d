"""Multi-task weighting methods behind one protocol (see :mod:`go4align.weighting.base`)."""

from .aligned_mtl import AlignedMTL
from .base import LossWeighting, NonFiniteLossError, Weighting
from .cagrad import CAGrad
from .dwa import DWA
from .famo import FAMO
from .gls import GLS
from .go4align import GO4Align, GO4AlignPaper
from .graddrop import GradDrop
from .gradient import Aggregation, GradientWeighting
from .grouped import Grouped
from .grouping import Grouping
from .imtl_g import IMTLG
from .kmeans import kmeans_1d, kmeans_random_1d, lloyd_1d, spectral_1d
from .ls import LS
from .mgda import MGDA, MGDAUB
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .registry import available, get, make, register
from .rlw import RLW
from .si import SI
from .stl import STL
from .torchjd_adapter import TorchJD
from .uw import UW

register("ls")(LS)
register("go4align")(GO4Align)
register("go4align-paper")(GO4AlignPaper)
register("stl")(STL)
register("si")(SI)
register("gls")(GLS)
register("rlw")(RLW)
register("dwa")(DWA)
register("uw")(UW)
register("famo")(FAMO)
register("mgda")(MGDA)
register("mgda-ub")(MGDAUB)
register("pcgrad")(PCGrad)
register("graddrop")(GradDrop)
register("cagrad")(CAGrad)
register("imtl-g")(IMTLG)
register("nash-mtl")(NashMTL)
register("aligned-mtl")(AlignedMTL)
register("torchjd")(TorchJD)

__all__ = [
    "Weighting",
    "LossWeighting",
    "GradientWeighting",
    "Aggregation",
    "NonFiniteLossError",
    "GO4Align",
    "GO4AlignPaper",
    "Grouped",
    "Grouping",
    "LS",
    "STL",
    "SI",
    "GLS",
    "RLW",
    "DWA",
    "UW",
    "FAMO",
    "MGDA",
    "MGDAUB",
    "PCGrad",
    "GradDrop",
    "CAGrad",
    "IMTLG",
    "NashMTL",
    "AlignedMTL",
    "TorchJD",
    "kmeans_1d",
    "kmeans_random_1d",
    "lloyd_1d",
    "spectral_1d",
    "available",
    "get",
    "make",
    "register",
]
