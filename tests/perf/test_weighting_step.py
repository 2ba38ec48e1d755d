"""The weighting-step script's table: ratios within a run, steps scaled to the reference machine
speed by this run's own spectral step at M = 3, and the busy processes of ``--load``."""

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("weighting_step")


def cells(rows):
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_steps_are_scaled_by_the_runs_own_spectral_step(script):
    results = [  # (CPU, wall) seconds: a machine at half the reference speed
        (3, 2, {"go4align": (2e-4, 3e-4), "ls": (2e-5, 2e-5), "spectral": (3.2e-3, 3.3e-3)}),
        (40, 5, {"go4align": (4e-4, 5e-4), "ls": (2e-5, 2e-5), "spectral": (1e-2, 1e-2)}),
        (1000, 5, {"go4align": (4e-3, 8e-3), "ls": (5e-5, 5e-5)}),
    ]
    rows = script.format_weighting_table(results)
    table = cells(rows)
    assert table[0] == ["3", "2", "0.200", "0.300", "0.020", "3.20", "16x", "0.100", "0.3"]
    assert table[1][6:] == ["25x", "0.200", "0.3"]
    assert table[2][2:4] == ["4.000", "8.000"] and table[2][5:] == ["n/a", "n/a", "2.000", "5"]
    assert all(len(row.split("|")) == len(rows[0].split("|")) for row in rows)


def test_without_a_spectral_step_nothing_is_scaled(script):
    results = [
        (3, 2, {"go4align": (2e-4, 2e-4), "ls": (2e-5, 2e-5)}),
        (11, 5, {"go4align": (3e-4, 3e-4), "ls": (2e-5, 2e-5)}),
    ]
    assert [row[7] for row in cells(script.format_weighting_table(results))] == ["n/a", "n/a"]


def test_every_case_has_a_goal(script):
    assert {m for m, _ in script.CASES} <= set(script.GOALS)


def children_of_this_process():
    """The command lines of this process's children (zombies included)."""
    listing = subprocess.run(["ps", "-o", "args=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    return listing.stdout


def test_busy_processes_spin_while_the_block_runs_and_end_with_it(script):
    with script.busy_processes(2):
        assert children_of_this_process().count("while True: pass") == 2
    assert "while True: pass" not in children_of_this_process()  # ended with the block


def test_a_negative_load_is_refused_naming_the_value(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["weighting_step.py", "--load", "-1"])
    with pytest.raises(SystemExit):
        script.main()
    assert "argument --load: must be an int >= 0, got -1" in capsys.readouterr().err


def test_a_revision_is_imported_beside_this_checkout(script):
    """--against: the revision's weighting package is a separate module that runs on its own."""
    if subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    import torch

    from go4align import GO4Align

    old = script.revision_weighting("HEAD")
    assert old.__name__ == "go4align_at_HEAD.weighting" and old.GO4Align is not GO4Align
    losses = torch.tensor([0.5, 1.0, 2.0])
    assert torch.isfinite(old.GO4Align(3, 2).weigh(losses)).all()
    with pytest.raises(ValueError, match=r"cannot read src/go4align at git revision 'no-such-revision': \S"):
        script.revision_weighting("no-such-revision")


def test_an_unreadable_revision_is_refused_naming_it_before_anything_is_timed(script, monkeypatch, capsys):
    if subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    monkeypatch.setattr(script, "weighting_table", lambda *args: pytest.fail("measured before the check"))
    monkeypatch.setattr(sys, "argv", ["weighting_step.py", "--against", "no-such-revision"])
    with pytest.raises(SystemExit):
        script.main()
    assert "argument --against: cannot read src/go4align at git revision 'no-such-revision'" in capsys.readouterr().err
