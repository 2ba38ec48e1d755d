"""The docs' result tables are what the stored grids give, rounded once; the prose agrees with them."""

import csv
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from go4align.report.tables import grid_table, load_stored_grid, main, render_document, round_once

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DOC = ROOT / "docs" / "results.md"
GRIDS = ["results/fashion-cpu", "results/qm9-cpu"]


def test_docs_results_tables_are_generated_from_the_stored_results():
    text = RESULTS_DOC.read_text(encoding="utf-8")
    for grid in GRIDS:
        assert f"<!-- table: {grid} -->" in text
    assert render_document(text, ROOT, RESULTS_DOC.parent) == text, (
        "docs/results.md differs from the stored results: run `python -m go4align.report.tables`"
    )


# -- rounding: once, from the stored text, half away from zero -------------------------------------
@pytest.mark.parametrize(
    ("value", "decimals", "printed"),
    [
        ("0.5874666666666667", 3, "0.587"),  # pcgrad's stored mean: not 0.5875 and then 0.588
        ("0.5875", 3, "0.588"),  # a tie goes up, away from zero...
        ("0.5865", 3, "0.587"),  # ...also when half-to-even would go down
        ("-7.125", 2, "-7.13"),  # and away from zero below it
        ("-0.004", 2, "0.00"),  # zero without a sign
        ("17.820309066248704", 2, "17.82"),
        ("3.8181818181818183", 2, "3.82"),
        ("12", 2, "12.00"),
        ("1e30", 6, "1000000000000000000000000000000.000000"),  # more digits than Decimal's default 28
        (2.675, 2, "2.68"),  # a float rounds as its shortest text, not its binary value (2.67499999...)
        ("nan", 2, "nan"),
        ("inf", 2, "inf"),
    ],
)
def test_round_once(value, decimals, printed):
    assert round_once(value, decimals) == printed


@given(
    st.decimals(min_value=-1e6, max_value=1e6, places=8, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=6),
)
def test_round_once_is_the_nearest_number_with_those_decimals(value, decimals):
    printed = round_once(str(value), decimals)
    assert len(printed.partition(".")[2]) == decimals
    error = abs(Decimal(printed) - value)
    half = Decimal(5).scaleb(-decimals - 1)
    assert error <= half
    if error == half:  # a tie: away from zero
        assert abs(Decimal(printed)) > abs(value)


@pytest.mark.parametrize(
    ("value", "decimals", "error", "match"),
    [
        ("0.5x", 2, ValueError, "'0.5x' is not a number"),
        (True, 2, TypeError, "value must be a number"),
        (None, 2, TypeError, "got None"),
        (0.5, -1, ValueError, "decimals must be >= 0, got -1"),
        (0.5, 2.0, TypeError, "decimals must be an int, got 2.0"),
    ],
)
def test_round_once_names_a_bad_input(value, decimals, error, match):
    with pytest.raises(error, match=match):
        round_once(value, decimals)


# -- the generated cells are the report's cells -----------------------------------------------------
def _rows(markdown: str) -> dict[str, list[str]]:
    """First cell -> cells, of every table row of ``markdown``."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.setdefault(cells[0], cells)
    return rows


@pytest.mark.parametrize("grid", GRIDS)
def test_generated_cells_equal_the_stored_reports_cells(grid):
    """Metrics, Delta-m and MR as report.md prints them, from the same results (only the label of a
    method with options differs: "go4align (K = 2)")."""
    report = _rows((ROOT / grid / "report.md").read_text(encoding="utf-8"))
    table = grid_table(ROOT / grid)
    header = table.splitlines()[0].strip("|").split("|")
    ours = {cells[0].split(" (")[0]: dict(zip([h.strip() for h in header], cells)) for cells in _rows(table).values()}
    stored = load_stored_grid(ROOT / grid)
    for row in stored.summary:
        method = row["method"]
        mine = ours[method]
        # report.md has two tables per method; the first holds the metrics and MR, the second Delta-m.
        metric_row = report[method]
        assert mine["MR"] == metric_row[-1]
        for name in stored.metric_names if len(stored.metric_names) <= 4 else []:
            assert mine[name.replace("_", " ")] in metric_row, (method, name)
        assert mine["Delta-m % (mean ± s.e.)"] in (ROOT / grid / "report.md").read_text(encoding="utf-8")


def test_stl_row_is_the_mean_of_the_stored_stl_runs():
    table = grid_table(ROOT / "results/fashion-cpu")
    with (ROOT / "results/fashion-cpu/results.csv").open(newline="") as handle:
        stl = [row for row in csv.DictReader(handle) if row["kind"] == "stl"]
    row = next(cells for cells in _rows(table).values() if cells[0].startswith("STL"))
    assert row[0] == "STL (mean of seeds 0, 1, 2)"
    expected = sum(float(r["top_left_acc"]) for r in stl) / len(stl)
    assert Decimal(row[1]) == pytest.approx(Decimal(str(expected)), abs=Decimal("0.00005"))


# -- rewriting a document ---------------------------------------------------------------------------
def _document(tmp_path, body="| stale | table |\n"):
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir()
    prose = "Prose before, quoting `<!-- table: results/x -->` inline.\n\n"
    doc.write_text(f"{prose}<!-- table: results/fashion-cpu -->\n{body}<!-- end table -->\n\nProse after.\n")
    (tmp_path / "results").symlink_to(ROOT / "results")
    return doc, prose


def test_render_rewrites_only_the_marked_region(tmp_path):
    doc, prose = _document(tmp_path)
    fresh = render_document(doc.read_text(), tmp_path, doc.parent)
    assert fresh.startswith(prose + "<!-- table: results/fashion-cpu -->\n")
    assert fresh.endswith("<!-- end table -->\n\nProse after.\n")
    pcgrad = next(
        line for line in grid_table(ROOT / "results/fashion-cpu").splitlines() if line.startswith("| pcgrad |")
    )
    assert "stale" not in fresh and pcgrad in fresh
    assert "[results/fashion-cpu/results.csv](../results/fashion-cpu/results.csv)" in fresh
    assert render_document(fresh, tmp_path, doc.parent) == fresh


def test_check_reports_a_stale_document_and_writes_nothing(tmp_path, capsys):
    doc, _ = _document(tmp_path)
    before = doc.read_text()
    assert main(["--root", str(tmp_path), "--check", "docs/page.md"]) == 1
    assert doc.read_text() == before
    assert "out of date: docs/page.md" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "docs/page.md"]) == 0
    assert main(["--root", str(tmp_path), "--check", "docs/page.md"]) == 0


def test_unclosed_marker_and_missing_grid_are_errors_naming_them(tmp_path, capsys):
    doc = tmp_path / "page.md"
    doc.write_text("<!-- table: results/fashion-cpu -->\nno end\n")
    with pytest.raises(ValueError, match="1 '<!-- table: FOLDER -->' line"):
        render_document(doc.read_text(), ROOT, tmp_path)
    assert main(["--root", str(tmp_path), "page.md"]) == 2
    assert "page.md: 1 '<!-- table: FOLDER -->' line" in capsys.readouterr().err
    doc.write_text("<!-- table: results/nowhere -->\n<!-- end table -->\n")
    with pytest.raises(FileNotFoundError, match=r"results/nowhere/grid\.json: missing"):
        render_document(doc.read_text(), ROOT, tmp_path)


# -- the prose states what the tables hold -----------------------------------------------------------
def _delta_m(grid: str) -> dict[str, tuple[float, float]]:
    return {
        row["method"]: (float(row["delta_m"]), float(row["delta_m_se"]))
        for row in load_stored_grid(ROOT / grid).summary
    }


def test_prose_claims_hold_for_the_stored_results():
    """Each claim in docs/results.md and README.md that compares numbers, checked on the raw results;
    when the results change, this fails until the prose is updated."""
    doc = " ".join(RESULTS_DOC.read_text(encoding="utf-8").split())
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    fashion, qm9 = _delta_m("results/fashion-cpu"), _delta_m("results/qm9-cpu")
    # GO4Align and LS are equal within their standard errors in both grids, as stated.
    assert "GO4Align and LS are equal within their standard errors" in readme
    assert "GO4Align and LS are equal within their standard errors" in doc
    for grid in (fashion, qm9):
        assert abs(grid["go4align"][0] - grid["ls"][0]) < grid["ls"][1] + grid["go4align"][1]
    for name, grid in (("Multi-Fashion", fashion), ("QM9", qm9)):
        shown = f"{name}: {round_once(grid['go4align'][0], 2)} ± {round_once(grid['go4align'][1], 2)} against "
        assert shown + f"{round_once(grid['ls'][0], 2)} ± {round_once(grid['ls'][1], 2)}" in doc
    order = sorted(qm9, key=lambda method: qm9[method][0])
    assert order[:2] == ["go4align", "ls"] and f"the lowest two of {len(order)} by Delta-m" in doc
    # The four lowest on Multi-Fashion, in the doc's order.
    lowest = sorted(fashion, key=lambda method: fashion[method][0])[:4]
    assert lowest == ["aligned-mtl", "uw", "si", "famo"]
    assert "on Multi-Fashion the four lowest are Aligned-MTL, UW, SI and FAMO" in doc
    # No gradient-oriented method is ahead of LS on QM9; the closest is named with its Delta-m.
    gradient = ("mgda", "pcgrad", "cagrad", "imtl-g", "nash-mtl", "aligned-mtl")
    assert not [m for m in gradient if qm9[m][0] < qm9["ls"][0]]
    closest = min(gradient, key=lambda method: qm9[method][0])
    assert closest == "aligned-mtl"
    shown = f"{round_once(qm9[closest][0], 2)} ± {round_once(qm9[closest][1], 2)}"
    assert f"the closest, Aligned-MTL, at {shown}" in doc
    # The README's Results section states no number of its own.
    section = readme.split("## Results", 1)[1].split("## Speed", 1)[0]
    assert not re.search(r"\d+\.\d", section), section


def test_results_readme_states_the_tables_seed_spread():
    """results/README.md's measure of the seed spread, against the stored results."""
    text = " ".join((ROOT / "results" / "README.md").read_text(encoding="utf-8").split())
    fashion, qm9 = _delta_m("results/fashion-cpu"), _delta_m("results/qm9-cpu")
    with (ROOT / "results/qm9-cpu/results.csv").open(newline="") as handle:
        runs = {
            int(row["seed"]): float(row["delta_m"])
            for row in csv.DictReader(handle)
            if row["kind"] == "run" and row["method"] == "go4align"
        }
    seeds = sorted(runs.values())
    mean = sum(seeds) / len(seeds)
    deviation = (sum((value - mean) ** 2 for value in seeds) / (len(seeds) - 1)) ** 0.5
    shown = ", ".join(round_once(value, 2) for value in seeds[:-1]) + f" and {round_once(seeds[-1], 2)}"
    assert (
        f"GO4Align's three seeds give {shown} (standard deviation {round_once(deviation, 2)}, standard "
        f"error of the mean {round_once(qm9['go4align'][1], 2)})"
    ) in text
    assert "seed 0 went from 24.16 to 18.14" in text  # the previous grids' rerun: neither is stored
    span = {
        name: [round_once(f(se for _, se in grid.values()), 2) for f in (min, max)]
        for name, grid in (("qm9", qm9), ("fashion", fashion))
    }
    assert (
        f"{span['qm9'][0]}-{span['qm9'][1]} on QM9 (LS {round_once(qm9['ls'][1], 2)}) and "
        f"{span['fashion'][0]}-{span['fashion'][1]} on Multi-Fashion (LS {round_once(fashion['ls'][1], 2)}, "
        f"GO4Align {round_once(fashion['go4align'][1], 2)})"
    ) in text
