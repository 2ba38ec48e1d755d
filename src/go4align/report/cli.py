"""The backend of ``go4align report RUN_DIR``; the main command line mounts it as a subcommand."""

from __future__ import annotations

import argparse
import sys

from .results import ReportError
from .writer import write_report

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a grid folder (holds grid.json) or a folder of grid folders"
    )


def run(args: argparse.Namespace) -> int:
    """Write the reports and print the paths written; or print why not as one line on stderr
    (``go4align report: error: ...``) and return 2."""
    try:
        paths = write_report(args.run_dir)
    except (ReportError, ImportError, OSError) as error:
        print(f"go4align report: error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="go4align report", description="Tables and figures from a run directory written by `go4align bench`."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
