"""The weighting-step script's table: ratios within a run, and steps scaled to the core issue's
machine by this run's own spectral step at M = 3."""

import pytest


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("weighting_step")


def test_steps_are_scaled_by_the_runs_own_spectral_step(script):
    results = [
        (3, 2, {"go4align": 2e-4, "ls": 2e-5, "spectral": 3.2e-3}),  # a machine at half the speed
        (40, 5, {"go4align": 4e-4, "ls": 2e-5, "spectral": 1e-2}),
        (1000, 5, {"go4align": 4e-3, "ls": 5e-5}),
    ]
    rows = script.format_weighting_table(results)
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]
    assert cells[0] == ["3", "2", "0.200", "0.020", "3.20", "16x", "0.100", "0.15"]
    assert cells[1][5:] == ["25x", "0.200", "0.15"]
    assert cells[2][4:] == ["n/a", "n/a", "2.000", "3"]
    assert all(len(row.split("|")) == len(rows[0].split("|")) for row in rows)


def test_without_a_spectral_step_nothing_is_scaled(script):
    results = [(3, 2, {"go4align": 2e-4, "ls": 2e-5}), (11, 5, {"go4align": 3e-4, "ls": 2e-5})]
    rows = script.format_weighting_table(results)
    assert [row.split("|")[7].strip() for row in rows[2:]] == ["n/a", "n/a"]
