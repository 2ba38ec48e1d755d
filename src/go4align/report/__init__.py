"""Reports from results files: tables, figures, Markdown and self-contained HTML.

``write_report(run_dir)`` reads the trainer's results layout (one grid, or a folder of grids) and
writes report.md, report.html, results.csv and figures/ beside each grid.json. Depends on
:mod:`go4align.metrics` only; the figures need matplotlib (the ``report`` extra), imported only
when a report is written.
"""

from .published import PUBLISHED, TABLE9_SECONDS_PER_EPOCH
from .results import Grid, ReportError, Run, find_grids, load_grid
from .summary import GridSummary, MethodSummary, Reference, summarise
from .writer import write_report

__all__ = [
    "PUBLISHED",
    "TABLE9_SECONDS_PER_EPOCH",
    "Grid",
    "GridSummary",
    "MethodSummary",
    "Reference",
    "ReportError",
    "Run",
    "find_grids",
    "load_grid",
    "summarise",
    "write_report",
]
