"""The backend of ``go4align report RUN_DIR``; the main command line mounts it as a subcommand."""

from __future__ import annotations

import argparse
import sys

from .results import ReportError, describe_missing, find_grids, load_grid, missing_runs
from .writer import write_report

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a grid folder (holds grid.json) or a folder of grid folders"
    )


def run(args: argparse.Namespace) -> int:
    """Write the reports and print the paths written, then, on stderr, a note per grid naming
    its runs without a complete result (a grid whose shards or workers have not all finished);
    or print why not as one line on stderr (``go4align report: error: ...``) and return 2."""
    try:
        paths = write_report(args.run_dir)
        unfinished = [
            (grid, describe_missing(grid, missing_runs(grid))) for grid in map(load_grid, find_grids(args.run_dir))
        ]
    except (ReportError, ImportError, OSError) as error:
        print(f"go4align report: error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    for grid, text in unfinished:
        if text:
            print(f"note: {grid.path}: {text}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="go4align report", description="Tables and figures from a run directory written by `go4align bench`."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
