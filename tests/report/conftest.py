"""Fixtures of the report tests; the fake runs they write are described in ``helpers.report``."""

import pytest
from helpers.report import write_grid


@pytest.fixture
def grid_dir(tmp_path):
    return write_grid(tmp_path / "grid")
