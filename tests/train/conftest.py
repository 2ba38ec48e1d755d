"""Fixtures of the trainer and grid tests; what they are built from is in ``helpers.training``."""

import pytest
from helpers.training import make_tiny

from go4align.benchmarks import get_benchmark


@pytest.fixture
def tiny():
    return make_tiny()


@pytest.fixture(scope="session")
def digits():
    return get_benchmark("digits").with_protocol(epochs=2, lr=1e-2)
