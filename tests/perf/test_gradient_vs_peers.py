"""The gradient-methods comparison script runs, and its reference loop writes the gradients the
method itself writes (it is a fair peer)."""

import pytest
import torch

pytest.importorskip("torchjd")


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("gradient_vs_peers")


@pytest.mark.slow
def test_quick_run_prints_the_ratios(script, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["gradient_vs_peers.py", "--quick", "--no-memory"])
    script.main()
    out = capsys.readouterr().out
    assert "| mgda |" in out and "/ torchjd" in out


@pytest.mark.parametrize("name", ["mgda", "imtl-g", "aligned-mtl"])
def test_the_reference_loop_writes_what_go4align_writes(script, name):
    torch.manual_seed(0)
    model = script.MLP(3)
    grads = []
    for peer in ("go4align", "loop"):
        model.zero_grad(set_to_none=True)
        script.PEERS[peer](model, name)()
        grads.append([p.grad.clone() for p in model.parameters()])
    for ours, loop in zip(*grads):
        torch.testing.assert_close(ours, loop, rtol=1e-4, atol=1e-6)
