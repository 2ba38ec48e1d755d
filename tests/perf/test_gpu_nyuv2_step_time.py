"""The NYUv2 device-check script keeps working on CPU (it is run by hand when a GPU is lent)."""

import pytest
import torch

from go4align.benchmarks import nyuv2


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("gpu_nyuv2_step_time")


@pytest.mark.parametrize("method", ["ls", "famo", "mgda"])
def test_step_time_runs_a_method_through_the_protocol(script, method):
    torch.manual_seed(0)
    model = nyuv2.build_model("mtan", width=2)
    batch = script.random_batch(2, (32, 32), torch.device("cpu"))
    times = script.step_time(model, batch, method, steps=1, warmup=0)
    assert len(times) == 1 and times[0] > 0


def test_unknown_method_is_refused(script):
    with pytest.raises(SystemExit):
        script.parse_args(["--methods", "nope"])
    assert "stl" not in script.parse_args([]).methods
