"""The grid's display, its skips and its warnings log (go4align.train.progress, run_grid)."""

import io
import json
import re
import sys
import warnings

import pytest

from go4align.benchmarks import get_benchmark
from go4align.train import run_grid
from go4align.train.grid import SKIPPED, steps_per_run
from go4align.train.progress import WARNINGS_LOG, GridProgress
from go4align.train.spec import parse_method_spec


def toy(steps=4, epochs=2):
    return get_benchmark("toy", steps_per_epoch=steps).with_protocol(epochs=epochs)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_one_line_per_run_with_k_of_n_elapsed_and_remaining(tmp_path):
    stream = io.StringIO()  # not a terminal: one line per finished run, no bar
    run_grid(toy(), ["ls", "go4align"], [0, 1], tmp_path, progress=GridProgress(stream=stream))
    shown = lines(stream)
    assert len(shown) == 4
    for k, (text, (seed, method)) in enumerate(zip(shown, [(0, "ls"), (0, "go4align"), (1, "ls"), (1, "go4align")]), 1):
        assert re.fullmatch(rf"run {k} of 4: toy {method} seed {seed} done, \d\d:\d\d elapsed, \d\d:\d\d left", text)
    assert shown[-1].endswith("00:00 left")


def test_epoch_lines_only_when_verbose(tmp_path):
    quiet, verbose = io.StringIO(), io.StringIO()
    run_grid(toy(), ["ls"], [0], tmp_path / "a", progress=GridProgress(stream=quiet))
    run_grid(toy(), ["ls"], [0], tmp_path / "b", progress=GridProgress(stream=verbose, verbose=True))
    assert not any("epoch" in line for line in lines(quiet))
    assert [line for line in lines(verbose) if "epoch" in line][1].startswith("[toy] ls seed0 epoch 2/2")


def test_a_resumed_grid_counts_its_complete_runs(tmp_path):
    run_grid(toy(), ["ls"], [0], tmp_path, progress=False)
    stream = io.StringIO()
    display = GridProgress(stream=stream)
    run_grid(toy(), ["ls", "si"], [0], tmp_path, progress=display)
    assert lines(stream) == [lines(stream)[0]] and lines(stream)[0].startswith("run 2 of 2: toy si seed 0 done")
    assert display.work == display.worked == steps_per_run(toy(), parse_method_spec("si"))


def test_a_shared_display_counts_planned_runs_once(tmp_path):
    display = GridProgress(enabled=False)
    bench = toy()
    for seed in (0, 1):
        display.plan((bench.name, "ls", seed), steps_per_run(bench, parse_method_spec("ls")))
    run_grid(bench, ["ls"], [0, 1], tmp_path, progress=display)
    assert display.runs == display.done == 2 and display.worked == display.work == 2 * 4 * 2


def test_a_method_that_does_not_apply_is_a_note_and_a_skip(tmp_path):
    stream = io.StringIO()
    results = run_grid(
        toy(), ["ls", "mgda-ub"], [0, 1], tmp_path, progress=GridProgress(stream=stream), skip_unrunnable=True
    )
    assert sorted(results) == [("ls", 0), ("ls", 1)]
    why = "MGDAUB with target='representation' needs shared_representation=..."
    assert [line for line in lines(stream) if line.startswith("note:")] == [
        f"note: toy: mgda-ub does not apply, skipped: {why}"
    ]
    assert lines(stream)[-1].startswith("run 2 of 2: toy ls seed 1 done")  # its runs left the count
    assert json.loads((tmp_path / SKIPPED).read_text()) == {"mgda-ub": f"does not apply to toy: {why}"}
    with pytest.raises(ValueError, match="needs shared_representation"):  # without the option it ends the grid
        run_grid(toy(), ["mgda-ub"], [0], tmp_path / "strict", progress=False)


def test_a_missing_optional_dependency_skips_the_method_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # import cvxpy raises ImportError
    results = run_grid(toy(), ["ls", "nash-mtl"], [0], tmp_path, progress=False, skip_unrunnable=True)
    assert list(results) == [("ls", 0)]
    assert (
        "note: toy: nash-mtl skipped: NashMTL needs cvxpy: pip install 'go4align[nashmtl]'" in capsys.readouterr().err
    )
    assert "go4align[nashmtl]" in json.loads((tmp_path / SKIPPED).read_text())["nash-mtl"]
    assert json.loads((tmp_path / "grid.json").read_text())["methods"] == ["ls"]
    with pytest.raises(ImportError, match="go4align\\[nashmtl\\]"):
        run_grid(toy(), ["nash-mtl"], [0], tmp_path / "none", progress=False, skip_unrunnable=True)
    monkeypatch.delitem(sys.modules, "cvxpy")
    run_grid(toy(), ["ls", "nash-mtl"], [0], tmp_path, progress=False, skip_unrunnable=True)
    assert not (tmp_path / SKIPPED).exists()  # it ran since: nothing is skipped any more


def test_warnings_go_to_the_log_with_method_seed_and_step(tmp_path, capsys):
    def solver_warning(info):
        if info.global_step in (2, 3, 5):
            warnings.warn("Solution may be inaccurate.", UserWarning, stacklevel=1)

    run_grid(toy(), ["ls"], [0], tmp_path, progress=False, callbacks=[solver_warning])
    err = capsys.readouterr().err
    assert "Solution may be inaccurate" not in err
    assert f"note: toy: 3 warning(s) written to {tmp_path / WARNINGS_LOG}" in err
    log = (tmp_path / WARNINGS_LOG).read_text().splitlines()
    assert log[0].startswith("ls seed 0 step 2: UserWarning: Solution may be inaccurate. (test_progress.py:")
    assert log[1] == "ls seed 0 step 8: the warnings above were repeated 2 more time(s)"
