"""Fixtures of the whole suite. What tests share beyond fixtures is in the ``helpers`` package;
its docstring says how the device, the dtype and the fast subset (``-m "not slow"``) are chosen."""

import pytest
import torch
from helpers import DEVICE, DTYPE


@pytest.fixture
def device() -> torch.device:
    return DEVICE


@pytest.fixture
def dtype() -> torch.dtype:
    return DTYPE


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """The tests run networks on tiny tensors, where a second intra-op thread only adds
    synchronisation; on a busy 2-core machine the spinning threads made suites about 5x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
