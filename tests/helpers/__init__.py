"""What the tests share, as an ordinary package (pyproject puts ``tests/`` on ``sys.path`` through
pytest's ``pythonpath``), so that any subset of the suite collects and nothing is imported from a
``conftest.py``:

- ``helpers.methods``: the table of methods and their option sets that drives the generic tests;
- ``helpers.weighting``: a tiny hard-sharing model, the protocol's training loop, property checks;
- ``helpers.training``: a two-task benchmark on random data for the trainer and grid tests;
- ``helpers.report``: fake run directories in the trainer's layout for the report tests;
- ``helpers.ddp_worker``: a few steps of several methods as one rank of a gloo process group.

Import what a test uses by name, ``from helpers.weighting import HardSharing, train``; fixtures stay
in the ``conftest.py`` of the folder that uses them.

Device and dtype of the weighting tests come from the environment, so one suite runs on CPU and
GPU: ``GO4ALIGN_TEST_DEVICE`` (default ``cpu``), ``GO4ALIGN_TEST_DTYPE`` (``float32`` or
``float64``, default ``float64``).

Tests that start DDP or torchrun process groups, train in a child process, or take more than about
5 s are marked ``slow`` (registered in pyproject.toml, with ``--strict-markers``): ``pytest -m "not
slow"`` is the fast subset for local work; CI runs everything.
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICE", "DTYPE"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dtype_from_environment() -> torch.dtype:
    name = os.environ.get("GO4ALIGN_TEST_DTYPE", "float64")
    if name not in _DTYPES:
        raise ValueError(f"GO4ALIGN_TEST_DTYPE must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


DEVICE = torch.device(os.environ.get("GO4ALIGN_TEST_DEVICE", "cpu"))
DTYPE = _dtype_from_environment()
