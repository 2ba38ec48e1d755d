"""go4align: GO4Align and the multi-task optimisation baselines behind one protocol."""

from .weighting import GO4Align, Grouped, LossWeighting, Weighting, available, make

__version__ = "0.1.0"
__all__ = ["GO4Align", "Grouped", "LossWeighting", "Weighting", "available", "make", "__version__"]
