import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from go4align.metrics import (
    convergence_epoch,
    delta_m,
    delta_p,
    mean_and_standard_error,
    mean_rank,
    standard_error,
)
from go4align.published import CITYSCAPES, NYUV2, QM9


def delta_m_bounds(row, table):
    """Delta-m range over every true row that prints as ``row`` (each value +- half a last digit)."""
    low, high = {}, {}
    for name, value in row.items():
        half = 0.5 * 10.0 ** -table["decimals"][name]
        # Delta-m rises with a lower-is-better metric and falls with a higher-is-better one.
        up = half if table["directions"][name] == "lower" else -half
        low[name], high[name] = value - up, value + up
    return (delta_m(low, table["stl"], table["directions"]), delta_m(high, table["stl"], table["directions"]))


@pytest.mark.parametrize("method", ["LS", "FAMO", "Nash-MTL", "GO4Align"])
def test_nyuv2_published_delta_m_is_recomputed(method):
    row = NYUV2["rows"][method]
    recomputed = delta_m(row, NYUV2["stl"], NYUV2["directions"])
    low, high = delta_m_bounds(row, NYUV2)
    published = NYUV2["delta_m"][method]
    assert low <= published + 0.005 and published - 0.005 <= high
    # From the printed rows LS, FAMO and GO4Align round to the printed Delta-m; Nash-MTL's printed
    # row gives -4.047 (prints -4.05), within the rounding of its metrics.
    assert abs(recomputed - published) <= 0.01


def test_nyuv2_delta_m_pinned_values():
    got = {m: delta_m(row, NYUV2["stl"], NYUV2["directions"]) for m, row in NYUV2["rows"].items()}
    assert got == pytest.approx({"LS": 5.58933, "FAMO": -4.09959, "Nash-MTL": -4.04680, "GO4Align": -6.07748}, abs=1e-5)


@pytest.mark.parametrize("table", [QM9, CITYSCAPES], ids=["qm9", "cityscapes"])
def test_go4align_published_delta_m_within_rounding_of_printed_row(table):
    # QM9 prints mu as 0.17 (a 3% rounding step), CityScapes abs err as 0.0164, so the recomputed
    # value (52.97 and 8.13) only matches the published one (52.7 and 8.11) within that rounding.
    low, high = delta_m_bounds(table["rows"]["GO4Align"], table)
    assert low < table["delta_m"]["GO4Align"] < high
    # Not vacuous: the rounding leaves Delta-m within 10% of its value (QM9: 51.3..54.7).
    assert high - low < 0.1 * abs(table["delta_m"]["GO4Align"])


def test_qm9_and_cityscapes_recomputed_values():
    assert delta_m(QM9["rows"]["GO4Align"], QM9["stl"], QM9["directions"]) == pytest.approx(52.9698, abs=1e-4)
    assert delta_m(CITYSCAPES["rows"]["GO4Align"], CITYSCAPES["stl"], CITYSCAPES["directions"]) == pytest.approx(
        8.1300, abs=1e-4
    )


def test_mean_rank_of_nyuv2_sub_table_by_hand():
    # Ranks per metric (mIoU, PixAcc, Abs, Rel, Mean, Med, 11.25, 22.5, 30), worked out by hand:
    #   GO4Align 1 2 3 1 1 1 1 1 1 = 12;  Nash-MTL 2 1 1 2 3 3 3 3 3 = 21
    #   FAMO     4 4 2 3 2 2 2 2 2 = 23;  LS       3 3 4 4 4 4 4 4 4 = 34   (total 90 = 9 x 10)
    mr = mean_rank(NYUV2["rows"], NYUV2["directions"], decimals=NYUV2["decimals"])
    assert mr == pytest.approx({"GO4Align": 12 / 9, "Nash-MTL": 21 / 9, "FAMO": 23 / 9, "LS": 34 / 9})
    # Same order as the paper's MR over its full table (2.11 < 2.89 < 4.33 < 9.89).
    assert sorted(mr, key=mr.get) == sorted(NYUV2["mr"], key=NYUV2["mr"].get)


def test_mean_rank_ties_share_the_lowest_rank_after_rounding():
    abs_err = {m: {"abs_err": row["abs_err"]} for m, row in NYUV2["rows"].items()}
    directions = {"abs_err": "lower"}
    # 0.5261 < 0.5474 < 0.5492 < 0.5493 printed with 4 decimals; with 3 decimals LS and GO4Align tie.
    assert mean_rank(abs_err, directions, decimals=4) == {"Nash-MTL": 1, "FAMO": 2, "GO4Align": 3, "LS": 4}
    assert mean_rank(abs_err, directions, decimals=3) == {"Nash-MTL": 1, "FAMO": 2, "GO4Align": 3, "LS": 3}


def test_mean_rank_puts_non_finite_values_last():
    table = {"a": {"x": 1.0}, "b": {"x": math.nan}, "c": {"x": 2.0}}
    assert mean_rank(table, {"x": "higher"}) == {"c": 1, "a": 2, "b": 3}


def test_delta_p_averages_per_task_and_flips_sign():
    per_task = [
        -delta_m({n: NYUV2["rows"]["LS"][n] for n in names}, {n: NYUV2["stl"][n] for n in names}, NYUV2["directions"])
        for names in NYUV2["tasks"].values()
    ]
    got = delta_p(NYUV2["rows"]["LS"], NYUV2["stl"], NYUV2["directions"], NYUV2["tasks"])
    assert got == pytest.approx(np.mean(per_task))
    # By hand: segmentation (+0.99/38.30 + 1.57/63.76)/2 = +0.02524, depth (0.1261/0.6754 +
    # 0.0517/0.2780)/2 = +0.18634, normal (-3.14/25.01 - 4.75/19.21 - 8.05/30.14 - 9.70/57.20
    # - 8.07/69.15)/5 = -0.18524; mean x 100 = +0.878 (higher is better).
    assert got == pytest.approx(0.8779, abs=1e-4)
    # Different from -Delta-m because the normal task has 5 metrics and the others 2.
    assert got != pytest.approx(-NYUV2["delta_m"]["LS"], abs=0.1)


def test_delta_p_needs_a_grouping_of_every_metric():
    with pytest.raises(ValueError, match="exactly once"):
        delta_p(NYUV2["rows"]["LS"], NYUV2["stl"], NYUV2["directions"], {"seg": ["miou"]})


def test_delta_m_bad_inputs_name_the_problem():
    directions = {"a": "higher", "b": "lower"}
    with pytest.raises(ValueError, match=r"metrics missing for \['b'\]"):
        delta_m({"a": 1.0}, {"a": 1.0, "b": 2.0}, directions)
    with pytest.raises(ValueError, match="'b'.*non-zero"):
        delta_m({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.0}, directions)
    with pytest.raises(ValueError, match="direction of metric 'a'.*'up'"):
        delta_m({"a": 1.0}, {"a": 1.0}, {"a": "up"})
    with pytest.raises(ValueError, match="no direction given for metric 'a'"):
        delta_m({"a": 1.0}, {"a": 1.0}, {})
    with pytest.raises(ValueError, match="no metrics"):
        delta_m({"a": 1.0}, {}, directions)


def test_mean_rank_bad_inputs():
    with pytest.raises(ValueError, match=r"\['b'\] have no value for metric 'x'"):
        mean_rank({"a": {"x": 1.0}, "b": {}}, {"x": "lower"})
    with pytest.raises(ValueError, match="no methods"):
        mean_rank({}, {"x": "lower"})


def test_standard_error():
    assert standard_error([1.0, 2.0, 3.0]) == pytest.approx(1.0 / math.sqrt(3))
    assert math.isnan(standard_error([4.0]))
    assert mean_and_standard_error([2.0, 4.0]) == pytest.approx((3.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        standard_error([])


def test_convergence_epoch_on_a_hand_made_curve():
    # Total change 10 - 0 = 10, band +-0.5 around 0: epoch 3 (0.4) is the first inside and it stays.
    assert convergence_epoch([10.0, 4.0, 1.0, 0.4, 0.2, 0.0]) == 3
    assert convergence_epoch([10.0, 4.0, 1.0, 0.4, 0.2, 0.0], epochs=[1, 2, 3, 4, 5, 6]) == 4
    # A dip into the band at epoch 1 that leaves it again is not convergence.
    assert convergence_epoch([10.0, 0.3, 2.0, 0.4, 0.1, 0.0]) == 3
    # A rising curve converges the same way; a flat one at its first epoch.
    assert convergence_epoch([0.0, 6.0, 9.8, 10.0]) == 2
    assert convergence_epoch([1.0, 1.0, 1.0]) == 0


def test_convergence_epoch_bad_inputs():
    with pytest.raises(ValueError, match="finite"):
        convergence_epoch([1.0, math.nan])
    with pytest.raises(ValueError, match="2 epochs given for 3 losses"):
        convergence_epoch([3.0, 2.0, 1.0], epochs=[0, 1])


positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)
metric_tables = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=3),
    st.tuples(positive, positive, st.sampled_from(["higher", "lower"])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(metric_tables)
def test_delta_m_of_the_reference_itself_is_zero(table):
    reference = {name: b for name, (_, b, _) in table.items()}
    directions = {name: d for name, (_, _, d) in table.items()}
    assert delta_m(reference, reference, directions) == 0.0


@settings(max_examples=60, deadline=None)
@given(metric_tables)
def test_delta_m_sign_flips_with_direction(table):
    metrics = {name: m for name, (m, _, _) in table.items()}
    reference = {name: b for name, (_, b, _) in table.items()}
    directions = {name: d for name, (_, _, d) in table.items()}
    flipped = {name: "lower" if d == "higher" else "higher" for name, d in directions.items()}
    assert delta_m(metrics, reference, flipped) == pytest.approx(-delta_m(metrics, reference, directions), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.data())
def test_mean_rank_bounds(num_methods, num_metrics, data):
    values = st.floats(-10, 10, allow_nan=False) | st.sampled_from([0.0, 1.0])  # ties are common
    table = {f"m{i}": {f"x{j}": data.draw(values) for j in range(num_metrics)} for i in range(num_methods)}
    directions = {f"x{j}": data.draw(st.sampled_from(["higher", "lower"])) for j in range(num_metrics)}
    mr = mean_rank(table, directions, decimals=data.draw(st.none() | st.integers(0, 3)))
    assert set(mr) == set(table)
    assert all(1 <= r <= num_methods for r in mr.values())
    if num_metrics == 1:  # competition ranking always has a first place
        assert min(mr.values()) == 1
