"""The committed benchmark scripts under perf/ are not a package: tests load them by path."""

import importlib.util
from pathlib import Path

import pytest

PERF = Path(__file__).resolve().parents[2] / "perf"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PERF / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: the module of ``perf/<name>.py``."""
    return _load
