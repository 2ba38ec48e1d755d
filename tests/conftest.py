"""Device and dtype for the suite come from the environment, so one suite runs on CPU and GPU:
GO4ALIGN_TEST_DEVICE (default cpu), GO4ALIGN_TEST_DTYPE (float32 or float64, default float64)."""

import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("GO4ALIGN_TEST_DEVICE", "cpu"))
DTYPE = {"float32": torch.float32, "float64": torch.float64}[os.environ.get("GO4ALIGN_TEST_DTYPE", "float64")]


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
