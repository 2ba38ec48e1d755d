"""The ``go4align`` command: ``bench`` (a grid of methods x seeds), ``report``, ``demo``, ``list``.

    go4align bench --benchmark digits --methods ls,go4align:num_groups=2,stl --seeds 0,1,2 --out runs/digits
    go4align bench --config configs/fashion.toml --methods ls,go4align,stl --out runs/fashion --data-dir DIR
    go4align report runs/digits
    torchrun --nproc_per_node 2 -m go4align.cli bench --benchmark digits --methods ls,mgda --out runs/ddp
    go4align demo --out runs/demo

A config file (TOML) holds ``benchmark``, a ``[benchmark_options]`` table for the benchmark's
factory and a ``[protocol]`` table overriding the benchmark's protocol (``configs/`` has the
paper's). Re-running an interrupted ``bench`` command resumes it. Under ``torchrun`` the ranks
share every global batch (``docs/distributed.md``); only rank 0 writes and prints.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Sequence

import torch

from go4align.benchmarks import available_benchmarks, get_benchmark, installed_benchmarks
from go4align.benchmarks.api import Benchmark
from go4align.train import run_grid, split_methods
from go4align.train.placement import distributed, is_main_process
from go4align.weighting import available

__all__ = ["main", "load_config", "build_benchmark", "DEMO_SUITE"]

CONFIG_KEYS = ("benchmark", "benchmark_options", "protocol")

#: The demo: (benchmark, factory options, protocol changes, with STL). Sized so that every
#: registered method with 3 seeds finishes in minutes on 2 CPU cores: 10 epochs of digits at a
#: higher learning rate, 12 synthetic tasks, and 500 toy steps at lr 2e-2 (the reference runs
#: 35,000 at 1e-3).
DEMO_SUITE = (
    ("digits", {}, {"epochs": 10, "lr": 1e-2}, True),
    ("synthetic", {"num_tasks": 12, "num_groups": 3, "train_size": 1000}, {"epochs": 10}, True),
    ("toy", {"steps_per_epoch": 100}, {"epochs": 5, "lr": 2e-2}, False),
)


class UsageError(Exception):
    """A bad command line: printed without a traceback."""


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config; unknown top-level keys are an error (they would be silently ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path, "rb") as handle:
        try:
            config = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config file {path} is not valid TOML: {error}") from error
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"config file {path}: unknown key(s) {unknown}; valid: {list(CONFIG_KEYS)}")
    for key in ("benchmark_options", "protocol"):
        if not isinstance(config.get(key, {}), dict):
            raise ValueError(f"config file {path}: {key} must be a table, got {config[key]!r}")
    return config


def build_benchmark(
    name: str | None,
    config: dict[str, Any] | None = None,
    data_dir: str | None = None,
    epochs: int | None = None,
) -> Benchmark:
    """The benchmark of the command line: ``name`` or the config's, its options and protocol."""
    config = config or {}
    configured = config.get("benchmark")
    if name and configured and name != configured:
        raise UsageError(f"--benchmark {name!r} conflicts with benchmark = {configured!r} in the config file")
    name = name or configured
    if not name:
        raise UsageError(f"give --benchmark NAME (installed: {', '.join(installed_benchmarks())}) or --config FILE")
    options = dict(config.get("benchmark_options", {}))
    if data_dir is not None:
        if "data_dir" in options and options["data_dir"] != data_dir:
            raise UsageError(
                f"--data-dir {data_dir!r} conflicts with data_dir = {options['data_dir']!r} in the config file"
            )
        options["data_dir"] = data_dir
    benchmark = get_benchmark(name, **options)
    changes = dict(config.get("protocol", {}))
    if epochs is not None:
        changes["epochs"] = epochs
    return benchmark.with_protocol(**changes) if changes else benchmark


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError as error:
        raise UsageError(f"--seeds must be comma-separated ints, got {text!r}") from error


def _methods(values: Sequence[str]) -> list[str]:
    return [spec for value in values for spec in split_methods(value)]


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def cmd_bench(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    config = load_config(args.config) if args.config else None
    benchmark = build_benchmark(args.benchmark, config, args.data_dir, args.epochs)
    with distributed(args.device):
        run_grid(
            benchmark,
            _methods(args.methods),
            _seeds(args.seeds),
            args.out,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
            progress=not args.quiet,
            nonfinite=args.nonfinite,
            command=args.typed,
        )
        main = is_main_process()
    if main:
        print(f"results in {args.out}; tables and plots: go4align report {args.out}")
    return 0


def write_report(run_dir: str | Path) -> None:
    """Write the report of a run directory and print where it went."""
    from go4align.report import write_report as report

    for path in report(run_dir):
        if path.suffix == ".html":
            print(f"report: {path}", flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from go4align.report import cli as report_cli

    return report_cli.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    seeds = _seeds(args.seeds)
    methods = [m for m in available() if m != "stl"]  # STL runs where the suite asks for it
    print(f"go4align demo: {', '.join(b for b, *_ in DEMO_SUITE)} x {', '.join(methods)} x seeds {seeds}", flush=True)
    start = time.perf_counter()
    for name, options, changes, with_stl in DEMO_SUITE:
        benchmark = get_benchmark(name, **options).with_protocol(**changes)
        out = Path(args.out) / name
        for method in methods + (["stl"] if with_stl else []):
            # One method at a time: a method that cannot run on a benchmark (say, one that needs
            # a shared representation on the toy problem, which has none) is reported and skipped.
            try:
                run_grid(
                    benchmark, [method], seeds, out, device=args.device, progress=not args.quiet, command=args.typed
                )
            except ValueError as error:
                print(f"{name}: {method} skipped: {error}", file=sys.stderr, flush=True)
        print(f"{name}: done after {time.perf_counter() - start:.0f}s", flush=True)
        write_report(out)
    print(f"go4align demo finished in {time.perf_counter() - start:.0f}s; results in {args.out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("methods:   " + ", ".join(sorted({*available(), "stl"})))
    installed = installed_benchmarks()
    missing = [b for b in available_benchmarks() if b not in installed]
    print(
        "benchmarks: "
        + ", ".join(installed)
        + (f" (registered, not in this build: {', '.join(missing)})" if missing else "")
    )
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="go4align", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="train a grid of methods x seeds on a benchmark (resumes)")
    bench.add_argument("--benchmark", help=f"one of: {', '.join(installed_benchmarks())}")
    bench.add_argument(
        "--methods", action="append", required=True, help="method specs, e.g. ls,go4align:num_groups=3,stl"
    )
    bench.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    bench.add_argument("--out", required=True, help="the run directory")
    bench.add_argument("--config", help="a TOML config (see configs/)")
    bench.add_argument("--epochs", type=int, help="override the protocol's epochs")
    bench.add_argument("--data-dir", help="where the benchmark's data lie")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    bench.add_argument("--threads", type=int, help="torch CPU threads")
    bench.add_argument(
        "--nonfinite",
        choices=("raise", "skip"),
        default="raise",
        help="a NaN/inf task loss stops the run naming the task and step (raise, default) or skips "
        "the step, counted in result.json's skipped_steps (skip)",
    )
    bench.add_argument("--quiet", action="store_true", help="no progress lines")
    bench.set_defaults(run=cmd_bench)

    report = commands.add_parser("report", help="tables and plots of a run directory (or a folder of them)")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a grid folder (holds grid.json) or a folder of grid folders")
    report.set_defaults(run=cmd_report)

    demo = commands.add_parser("demo", help="the default suite on embedded data (digits, synthetic, toy)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--seeds", default="0,1,2")
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: faster for tiny models)")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(run=cmd_demo)

    listing = commands.add_parser("list", help="the registered methods and benchmarks")
    listing.set_defaults(run=cmd_list)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.typed = "go4align " + shlex.join(sys.argv[1:] if argv is None else argv)  # recorded in grid.json
    try:
        return args.run(args)
    except (UsageError, ValueError, FileNotFoundError, ImportError, NotImplementedError) as error:
        print(f"go4align {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
