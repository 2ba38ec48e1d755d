import math

import numpy as np
import pytest
from helpers.report import RUNS, STL_RUNS, m, result, write_grid

from go4align.report import load_grid, summarise


def by_label(summary):
    return {method.label: method for method in summary.methods}


def test_delta_m_is_computed_per_seed_then_mean_and_standard_error(grid_dir):
    methods = by_label(summarise(load_grid(grid_dir)))
    assert methods["ls"].delta_m_per_seed == pytest.approx([0.0, -10 / 3])
    # Two seeds: s.e. = std(ddof=1) / sqrt(2) = |x0 - x1| / 2.
    assert (methods["ls"].delta_m, methods["ls"].delta_m_se) == pytest.approx((-5 / 3, 5 / 3))
    assert methods["go4align:num_groups=2"].delta_m_per_seed == pytest.approx([-50 / 3, -40 / 3])
    assert (methods["go4align:num_groups=2"].delta_m, methods["go4align:num_groups=2"].delta_m_se) == pytest.approx(
        (-15.0, 5 / 3)
    )
    assert (methods["go4align:num_groups=1"].delta_m, methods["go4align:num_groups=1"].delta_m_se) == pytest.approx(
        (10 / 3, 0.0)
    )
    # FAMO's second seed is incomplete: excluded, so one seed and an undefined s.e.
    famo = methods["famo"]
    assert famo.seeds == [0] and famo.incomplete_seeds == [1]
    assert famo.delta_m == pytest.approx(-20 / 3) and math.isnan(famo.delta_m_se)


def test_metric_means_and_mean_rank_by_hand(grid_dir):
    summary = summarise(load_grid(grid_dir))
    methods = by_label(summary)
    assert methods["ls"].metrics == pytest.approx({"acc_a": 0.525, "err_b": 1.9, "err_c": 4.2})
    assert methods["famo"].metrics == pytest.approx({"acc_a": 0.55, "err_b": 1.9, "err_c": 3.8})
    # Printed with 4 significant digits of the smallest value: 0.475 -> 4 decimals, 1.6 and 3.8 -> 3.
    assert summary.decimals == {"acc_a": 4, "err_b": 3, "err_c": 3}
    # Ranks (acc_a, err_b, err_c); ls's err_b mean (2.0 + 1.8) / 2 ties famo's 1.9 once rounded:
    #   K=2: 1, 1, 1 -> 1;  famo: 2, 2, 1 -> 5/3;  ls: 3, 2, 4 -> 3;  K=1: 4, 4, 3 -> 11/3
    ranks = {label: method.mean_rank for label, method in methods.items()}
    assert ranks == pytest.approx(
        {"go4align:num_groups=2": 1.0, "famo": 5 / 3, "ls": 3.0, "go4align:num_groups=1": 11 / 3}
    )


def test_time_is_relative_to_ls_and_memory_is_a_mean(grid_dir):
    summary = summarise(load_grid(grid_dir))
    methods = by_label(summary)
    assert summary.time_baseline == "ls"
    # Step times (conftest: median ms = epoch seconds): the median over seeds of the runs' medians.
    assert methods["ls"].step_time_ms == 11.0 and methods["ls"].relative_time == 1.0
    assert methods["ls"].step_time_iqr_ms == 2.0
    assert methods["go4align:num_groups=2"].relative_time == pytest.approx(12 / 11)
    assert methods["famo"].relative_time == pytest.approx(15 / 11)  # complete seed only
    assert methods["go4align:num_groups=2"].peak_memory_mb == 130.0


def test_times_are_absolute_without_ls(tmp_path):
    grid = write_grid(tmp_path, runs=[r for r in RUNS if r["method"] != "ls"])
    summary = summarise(load_grid(grid))
    assert summary.time_baseline is None
    assert all(method.relative_time is None for method in summary.methods)


def test_stl_runs_take_precedence_over_the_stored_reference(tmp_path):
    summary = summarise(load_grid(write_grid(tmp_path, stl_runs=STL_RUNS)))
    assert summary.reference.source == "stl-runs"
    assert summary.reference.values == pytest.approx({"acc_a": 0.4, "err_b": 2.0, "err_c": 4.0})
    # ls seed 0 against the STL runs: -(0.5 - 0.4) / 0.4 = -0.25, 0, 0 -> -8.333 (not 0.0).
    assert by_label(summary)["ls"].delta_m_per_seed[0] == pytest.approx(-25 / 3)


def test_incomplete_stl_runs_are_not_a_reference(tmp_path):
    stl = [dict(run, complete=False) for run in STL_RUNS]
    summary = summarise(load_grid(write_grid(tmp_path, stl_runs=stl)))
    assert summary.reference.source == "results-files"
    assert "2 incomplete STL run(s) ignored" in summary.reference.description
    assert by_label(summary)["ls"].delta_m_per_seed[0] == 0.0


def test_without_any_reference_delta_m_is_unavailable_not_zero(tmp_path):
    runs = [dict(run, stl_reference=None) for run in RUNS]
    summary = summarise(load_grid(write_grid(tmp_path, runs=runs)))
    assert summary.reference.source == "none"
    for method in summary.methods:
        assert method.delta_m is None and method.delta_m_per_seed is None
        assert "no STL reference" in method.delta_m_note


def test_a_reference_for_other_metrics_is_not_used_on_a_subset(tmp_path):
    runs = [dict(run, stl_reference={"acc_a": 0.5, "err_b": 2.0}) for run in RUNS]
    methods = by_label(summarise(load_grid(write_grid(tmp_path, runs=runs))))
    assert methods["ls"].delta_m is None and "covers ['acc_a', 'err_b']" in methods["ls"].delta_m_note


def test_a_zero_reference_value_makes_delta_m_unavailable_with_the_reason(tmp_path):
    """An STL metric of 0 (CelebA's F1 on a rare attribute) cannot divide: the report says so
    for every method instead of failing or printing a number."""
    stl = [result("stl", "stl", seed, m(0.0, 2.0, 4.0), stl_reference=None) for seed in (0, 1)]
    summary = summarise(load_grid(write_grid(tmp_path, stl_runs=stl)))
    for method in summary.methods:
        assert method.delta_m is None and method.delta_m_per_seed is None
        assert "'acc_a': 0.0" in method.delta_m_note and "0 or not finite" in method.delta_m_note


def test_convergence_epochs_and_spread(grid_dir):
    methods = by_label(summarise(load_grid(grid_dir)))
    # Hand-made curves of ls (conftest.CURVES): a at epoch 4, b at 5, c at 2.
    assert methods["ls"].convergence == {"a": 4.0, "b": 5.0, "c": 2.0}
    assert methods["ls"].convergence_spread == pytest.approx(np.std([4, 5, 2]))
    assert methods["ls"].convergence_spread_se == 0.0  # both seeds share the curves
    # EVEN_CURVES: every task converges at epoch 4, so no spread.
    assert methods["famo"].convergence_spread == 0.0


def test_methods_of_the_grid_without_results_are_listed(tmp_path):
    grid = write_grid(tmp_path / "no_stl", methods=["ls", "pcgrad", "stl"], runs=RUNS[:2])
    assert summarise(load_grid(grid)).missing == ["pcgrad", "stl"]
    # "stl" in grid.json is the single-task runs, which live in runs/stl.
    grid = write_grid(tmp_path / "stl", methods=["ls", "pcgrad", "stl"], runs=RUNS[:2], stl_runs=STL_RUNS)
    assert summarise(load_grid(grid)).missing == ["pcgrad"]


def test_paper_columns_match_published_methods(tmp_path):
    runs = [dict(result("go4align", "go4align", seed, m(0.5, 2.0, 4.0)), benchmark="nyuv2") for seed in (0, 1)]
    grid = write_grid(tmp_path, runs=runs)
    (tmp_path / "grid.json").write_text((tmp_path / "grid.json").read_text().replace("toy3", "nyuv2"))
    method = summarise(load_grid(grid)).methods[0]
    assert method.paper_delta_m == -6.08
    assert method.paper_relative_time == pytest.approx(87.8 / 86.2)
