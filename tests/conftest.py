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
