"""Markdown tables of stored grids for the docs: generated from the results, never typed by hand.

A document marks the place of each table with two comments, naming a grid folder relative to the
repository root::

    <!-- table: results/fashion-cpu -->
    (generated)
    <!-- end table -->

``python -m go4align.report.tables`` rewrites what lies between them from the folder's stored
``results.csv`` (the report's per-method summary rows and its STL runs) and ``grid.json``, and
leaves the rest of the document alone; ``--check`` writes nothing and exits 1 when a document
differs from what the results give, naming it. The per-run result.json files need not be stored.

Every number is rounded once, from the text results.csv stores, half away from zero (0.58746667
prints as 0.587 at three decimals, never as 0.5875 and then 0.588). Metrics get the decimals the
report prints (four significant digits of the smallest value), so a cell here equals the cell of
the grid's report.md, and MR (ranked by the report on those printed values) matches what is shown.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path

from ..grid_file import GRID_FILE, read_grid
from . import published
from .summary import printed_decimals

__all__ = ["StoredGrid", "grid_table", "load_stored_grid", "main", "render_document", "round_once"]

COMMAND = "python -m go4align.report.tables"
DEFAULT_DOCUMENTS = ("docs/results.md",)
# A marker counts only at the start of a line, so prose can quote one inline.
OPEN = re.compile(r"^<!-- table:", re.M)
REGION = re.compile(
    r"^(?P<open><!-- table: (?P<grid>[^\s>]+) -->\n)(?P<body>.*?)^(?P<close><!-- end table -->)", re.S | re.M
)
# Beyond this many metrics (QM9 has 11) a docs table would not fit a page: it links report.md.
MAX_METRIC_COLUMNS = 4
# The papers' symbols for method options, so a row reads "go4align (K = 2)".
PAPER_SYMBOLS = {"num_groups": "K"}
# results.csv columns before the metrics, and from the first column after them.
_LEADING = ("kind", "method_label", "method", "seed", "complete")
_FIRST_AFTER_METRICS = "delta_m"


def round_once(value: str | float, decimals: int) -> str:
    """``value`` (the text results.csv stores, or a float) rounded half away from zero to
    ``decimals`` places; non-finite values print as Python prints them, zero without a sign."""
    if isinstance(decimals, bool) or not isinstance(decimals, int):
        raise TypeError(f"decimals must be an int, got {decimals!r}")
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    if isinstance(value, bool) or not isinstance(value, (str, float, int)):
        raise TypeError(f"value must be a number or its text, got {value!r}")
    try:
        exact = Decimal(repr(float(value)) if not isinstance(value, str) else value.strip())
    except InvalidOperation:
        raise ValueError(f"value {value!r} is not a number") from None
    if not exact.is_finite():
        return str(float(exact))
    with localcontext() as context:
        context.prec = max(context.prec, exact.adjusted() + decimals + 2)  # every digit kept: 1e30 too
        rounded = exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return str(abs(rounded) if rounded == 0 else rounded)


@dataclass(frozen=True)
class StoredGrid:
    """What a stored grid folder holds: grid.json's settings and results.csv's rows, as text."""

    path: Path
    benchmark: str
    method_options: dict[str, dict]
    metric_names: list[str]
    summary: list[dict[str, str]]  # one row per method, in the grid's order
    stl: list[dict[str, str]]  # the grid's complete STL runs


def load_stored_grid(folder: str | Path) -> StoredGrid:
    """Read ``folder``/grid.json and ``folder``/results.csv; errors name the file."""
    folder = Path(folder)
    grid_file, csv_file = folder / GRID_FILE, folder / "results.csv"
    for path in (grid_file, csv_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; a stored grid holds grid.json and results.csv")
    grid = read_grid(grid_file)
    protocol = grid.get("protocol")  # the trainer's settings, or a protocol's name
    with csv_file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if list(columns[: len(_LEADING)]) != list(_LEADING) or _FIRST_AFTER_METRICS not in columns:
        raise ValueError(f"{csv_file}: not a report's results.csv (columns {columns[:6]}...)")
    summary = [row for row in rows if row["kind"] == "summary"]
    if not summary:
        raise ValueError(f"{csv_file}: no summary rows; write it with `go4align report`")
    return StoredGrid(
        path=folder,
        benchmark=grid["benchmark"],
        method_options=protocol.get("method_options", {}) if isinstance(protocol, dict) else {},
        metric_names=columns[len(_LEADING) : columns.index(_FIRST_AFTER_METRICS)],
        summary=summary,
        stl=[row for row in rows if row["kind"] == "stl" and row["complete"] == "True"],
    )


def _label(grid: StoredGrid, row: dict[str, str]) -> str:
    options = grid.method_options.get(row["method"], {}) if row["method_label"] == row["method"] else {}
    if not options:
        return row["method_label"]
    settings = ", ".join(f"{PAPER_SYMBOLS.get(key, key)} = {value}" for key, value in options.items())
    return f"{row['method_label']} ({settings})"


def _delta_m(row: dict[str, str]) -> str:
    if not row["delta_m"]:
        return "n/a"
    if not row["delta_m_se"] or not math.isfinite(float(row["delta_m_se"])):
        return f"{round_once(row['delta_m'], 2)} (1 seed)"
    return f"{round_once(row['delta_m'], 2)} ± {round_once(row['delta_m_se'], 2)}"


def _stl_means(grid: StoredGrid) -> dict[str, float]:
    return {name: sum(float(run[name]) for run in grid.stl) / len(grid.stl) for name in grid.metric_names}


def _metric_decimals(grid: StoredGrid) -> dict[str, int]:
    """The report's decimals per metric: over the methods' means and the STL reference."""
    stl = _stl_means(grid) if grid.stl else {}
    return {
        name: printed_decimals([float(row[name]) for row in grid.summary if row[name]] + ([stl[name]] if stl else []))
        for name in grid.metric_names
    }


@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[dict[str, str]], str]  # of a results.csv summary row
    metric: str | None = None  # the metric it shows, for the STL row


def _optional(row: dict[str, str], key: str, decimals: int, missing: str = "n/a") -> str:
    return round_once(row[key], decimals) if row[key] else missing


def _columns(grid: StoredGrid) -> list[_Column]:
    """The table's columns; a column only where the grid or the paper has numbers."""
    bench = grid.benchmark
    columns = [_Column("method", lambda row: _label(grid, row))]
    if len(grid.metric_names) <= MAX_METRIC_COLUMNS:
        decimals = _metric_decimals(grid)
        columns += [
            _Column(name.replace("_", " "), lambda row, n=name: _optional(row, n, decimals[n]), name)
            for name in grid.metric_names
        ]
    columns += [_Column("Delta-m % (mean ± s.e.)", _delta_m), _Column("MR", lambda row: _optional(row, "mean_rank", 2))]
    if len({row["n_seeds"] for row in grid.summary}) > 1:
        columns.append(_Column("seeds", lambda row: row["n_seeds"]))
    if any(row["relative_time"] for row in grid.summary):
        columns.append(_Column("epoch time / LS", lambda row: _optional(row, "relative_time", 2, "")))
    if any(published.lookup_delta_m(bench, row["method"]) is not None for row in grid.summary):
        columns.append(_Column("paper Delta-m %", lambda row: _paper(published.lookup_delta_m(bench, row["method"]))))
    if any(published.lookup_time_ratio(bench, row["method"]) is not None for row in grid.summary):
        columns.append(
            _Column("paper time / LS", lambda row: _paper(published.lookup_time_ratio(bench, row["method"]), 2))
        )
    return columns


def _paper(value: float | None, decimals: int | None = None) -> str:
    """A published number as the paper prints it (a ratio of two of them: rounded once)."""
    if value is None:
        return ""
    return repr(value) if decimals is None else round_once(value, decimals)


def _stl_row(grid: StoredGrid, columns: list[_Column]) -> list[str] | None:
    """The STL reference's metric means, when the table shows metrics."""
    if not grid.stl or not any(column.metric for column in columns):
        return None
    means, decimals = _stl_means(grid), _metric_decimals(grid)
    seeds = ", ".join(run["seed"] for run in grid.stl)
    return [f"STL (mean of seeds {seeds})"] + [
        round_once(means[column.metric], decimals[column.metric]) if column.metric else "" for column in columns[1:]
    ]


def _caption(grid: StoredGrid, columns: list[_Column], name: str, link: str) -> str:
    seeds = {row["n_seeds"] for row in grid.summary}
    per_method = f"{seeds.pop()} seeds per method" if len(seeds) == 1 else "seeds per method in the table"
    sources = {row["stl_source"] for row in grid.summary}
    reference = (
        f"the mean of the grid's {len(grid.stl)} STL runs"
        if sources == {"stl-runs"}
        else "the STL reference the results store"
    )
    parts = [
        f"Generated by `{COMMAND}` from [{name}/results.csv]({link}/results.csv): {per_method}; "
        f"Delta-m % per seed against {reference} (lower is better), then mean ± standard error; "
        f"MR over the {len(grid.summary)} methods of this table."
    ]
    if len(grid.metric_names) > MAX_METRIC_COLUMNS:
        parts.append(f"Per-metric means: [report.md]({link}/report.md).")
    if any(column.header.startswith("paper") for column in columns):
        parts.append(
            "Paper columns: the GO4Align paper's full protocol (Delta-m; time per epoch from its Table 9, on one A100)."
        )
    return " ".join(parts)


def grid_table(folder: str | Path, name: str | None = None, link: str | None = None) -> str:
    """The Markdown table of the stored grid in ``folder``, with a one-paragraph caption that
    names the folder ``name`` and links it as ``link`` (both default to ``folder`` as given)."""
    grid = load_stored_grid(folder)
    name = Path(folder).as_posix() if name is None else name
    link = name if link is None else link
    columns = _columns(grid)
    rows = [[column.cell(row) for column in columns] for row in grid.summary]
    stl = _stl_row(grid, columns)
    rows += [stl] if stl else []
    lines = ["| " + " | ".join(column.header for column in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n" + _caption(grid, columns, name, link) + "\n"


def render_document(text: str, root: str | Path, document_dir: str | Path) -> str:
    """``text`` with every marked region regenerated; grid folders are relative to ``root``, links
    relative to ``document_dir`` (where the document lives)."""
    root, document_dir = Path(root), Path(document_dir)
    opened, closed = len(OPEN.findall(text)), len(REGION.findall(text))
    if opened != closed:
        raise ValueError(
            f"{opened} '<!-- table: FOLDER -->' line(s), but {closed} region(s) closed by an '<!-- end table -->' line"
        )

    def regenerate(match: re.Match) -> str:
        folder = root / match["grid"]
        link = Path(os.path.relpath(folder, document_dir)).as_posix()
        return match["open"] + "\n" + grid_table(folder, match["grid"], link) + "\n" + match["close"]

    return REGION.sub(regenerate, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Regenerate the marked tables of Markdown documents from the stored grids they name."
    )
    parser.add_argument(
        "documents",
        nargs="*",
        metavar="DOC",
        default=list(DEFAULT_DOCUMENTS),
        help=f"documents to update, relative to --root (default: {' '.join(DEFAULT_DOCUMENTS)})",
    )
    parser.add_argument("--root", default=".", help="the repository root, where the grid folders are named from")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in args.documents:
        path = Path(args.root) / name
        try:
            text = path.read_text(encoding="utf-8")
            fresh = render_document(text, args.root, path.parent)
        except (OSError, ValueError, KeyError) as error:
            print(f"{COMMAND}: error: {name}: {error}", file=sys.stderr)
            return 2
        if fresh != text:
            stale.append(name)
            if not args.check:
                path.write_text(fresh, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `{COMMAND}`", file=sys.stderr)
        return 1
    for name in stale:
        print(f"updated {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
