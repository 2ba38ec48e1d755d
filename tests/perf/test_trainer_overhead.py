"""The trainer-overhead script runs, and compares like with like."""

import warnings

import pytest
import torch

from go4align.benchmarks import get_benchmark


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("trainer_overhead")


@pytest.mark.parametrize("method", ["ls", "go4align"])
def test_the_bare_loop_trains_the_same_model_as_the_trainer(script, method, tmp_path):
    bench = get_benchmark("digits").with_protocol(epochs=1)
    (tmp_path / "bare").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert script.bare_run(bench, method, 0, tmp_path / "bare") > 0
        assert script.trainer_run(bench, method, 0, tmp_path / "trainer") > 0
    bare, trainer = (torch.load(tmp_path / side / "checkpoint.pt", weights_only=True) for side in ("bare", "trainer"))
    assert bare["model"].keys() == trainer["model"].keys()
    assert all(torch.equal(bare["model"][k], trainer["model"][k]) for k in bare["model"])


@pytest.mark.slow
def test_quick_prints_both_ratios_for_both_methods(script, capsys):
    assert script.main(["--quick"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = {
        line.split(" | ")[0].strip("| "): line for line in table if line.startswith("| ls") or line.startswith("| go4")
    }
    assert set(rows) == {"ls", "go4align"}
    for row in rows.values():
        ratios = [float(cell) for cell in row.strip("| ").split(" | ")[3::3]]
        assert len(ratios) == 2 and all(ratio > 0 for ratio in ratios)


def test_bad_arguments_are_refused(script):
    with pytest.raises(SystemExit):
        script.main(["--repeats", "0"])
