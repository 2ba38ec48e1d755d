"""docs/distributed.md names only what exists, and its recipe runs as written under torchrun."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "distributed.md"
SRC = ROOT / "src"


def recipe() -> str:
    text = DOC.read_text()
    section = text[text.index("## The recipe, for your own loop") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_every_go4align_name_in_the_doc_exists():
    names = set(re.findall(r"go4align(?:\.\w+)+", DOC.read_text()))
    assert "go4align.train.distributed" in names
    for name in sorted(names):
        assert resolve(name) is not None, name
    for path in re.findall(r"`((?:tests|src|docs)/[\w/.]+)`", DOC.read_text()):
        assert (ROOT / path).exists(), path


@pytest.mark.slow
@pytest.mark.parametrize("method", ["famo", "mgda"])  # loss-oriented with after_step, gradient-oriented
def test_the_recipe_runs_under_torchrun(tmp_path, method):
    script = tmp_path / "recipe.py"
    out = tmp_path / "rank{}.pt"
    script.write_text(
        recipe()
        + f"\ntorch.save({{'model': module.state_dict(), 'weighting': weighting.state_dict()}}, {str(out)!r}.format(rank))\n"
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), method,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(str(out).format(r), weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    initial = torch.nn.Linear(8, 16).weight  # the recipe's first layer before training
    assert not torch.equal(ranks[0]["model"]["encoder.0.weight"], initial)  # it trained
    for part in ("model", "weighting"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), (part, key)
