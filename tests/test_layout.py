"""The test tree's own rules: helpers come from the importable ``helpers`` package, never from a
``conftest.py`` (which pytest imports under a name that depends on the subset collected, so that
``pytest tests/train tests/benchmarks/test_toy.py`` would fail to collect)."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_from_conftest():
    importing = sorted(
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if re.search(r"^\s*(from conftest import|import conftest)", path.read_text(), re.MULTILINE)
    )
    assert importing == []
