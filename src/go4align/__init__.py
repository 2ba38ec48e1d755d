"""go4align: GO4Align and the multi-task optimisation baselines behind one protocol.

The public names load lazily, so that ``import go4align.metrics`` or ``go4align.report`` does not
import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["GO4Align", "Grouped", "LossWeighting", "Weighting", "available", "make", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("go4align.weighting"), name)
    raise AttributeError(f"module 'go4align' has no attribute {name!r}")
