"""Shared set-up of the benchmark tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread():
    # The tests run networks on tiny tensors, where a second intra-op thread only adds
    # synchronisation; on a busy 2-core machine the spinning threads made this suite about 5x
    # slower (48 s against 10 s measured).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
