"""The go4align command: bench (a grid of methods x seeds), report, demo, list.

examples:
  go4align bench --benchmark digits --methods ls,go4align:num_groups=2,stl --seeds 0,1,2 --out runs/digits
  go4align bench --config configs/fashion.toml --methods ls,go4align,stl --out runs/fashion --data-dir DIR
  go4align report runs/digits
  go4align demo --out runs/demo
  torchrun --nproc_per_node 2 -m go4align.cli bench --benchmark digits --methods ls,mgda --out runs/ddp
  go4align bench --benchmark digits --methods ls,go4align,stl --seeds 0,1,2 --out runs/digits --shard 2/4
  go4align bench --benchmark digits --methods ls,go4align,stl --seeds 0,1,2 --out runs/digits --workers 2

A config file (TOML) holds benchmark, a [benchmark_options] table for the benchmark's factory and
a [protocol] table overriding the benchmark's protocol (configs/ has the paper's). Re-running an
interrupted bench command resumes it. Under torchrun the ranks share every global batch
(docs/distributed.md); only rank 0 writes and prints. --shard, --workers and --launcher submitit
split a grid's runs between processes, machines and cluster jobs (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import sys
import textwrap
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from go4align.benchmarks import available_benchmarks, get_benchmark, installed_benchmarks
from go4align.benchmarks.api import Benchmark
from go4align.train import parse_method_spec, run_grid, split_methods
from go4align.train.grid import check_output_dir, steps_per_run
from go4align.train.launch import CLUSTERS, invocation_argument, run_workers, submit, worker_devices, worker_threads
from go4align.train.placement import DDP_TIMEOUT_S, distributed, is_main_process
from go4align.train.progress import GridProgress
from go4align.train.shards import Shard, parse_shard
from go4align.train.tensorboard import TensorBoardCallback, summary_writer_class
from go4align.weighting import available

__all__ = ["main", "load_config", "build_benchmark", "DEMO_SUITE", "QUICK_SUITE", "DEMO_METHODS"]

CONFIG_KEYS = ("benchmark", "benchmark_options", "protocol")
STL = "stl"

#: The demo: (benchmark, factory options, protocol changes, with STL). Sized so that every method
#: with 3 seeds finishes in about 5 minutes on 2 CPU cores: 8 epochs of digits at a higher
#: learning rate, 6 synthetic tasks in 2 groups, and 300 toy steps at lr 2e-2 (the reference
#: runs 35,000 at 1e-3).
DEMO_SUITE = (
    ("digits", {}, {"epochs": 8, "lr": 1e-2}, True),
    ("synthetic", {"num_tasks": 6, "num_groups": 2, "train_size": 1000}, {"epochs": 8}, True),
    ("toy", {"steps_per_epoch": 100}, {"epochs": 3, "lr": 2e-2}, False),
)
#: `go4align demo --quick`: the same benchmarks and methods at a smoke-test budget (CI runs it).
QUICK_SUITE = (
    ("digits", {}, {"epochs": 2, "lr": 1e-2}, True),
    ("synthetic", {"num_tasks": 6, "num_groups": 2, "train_size": 200}, {"epochs": 2}, True),
    ("toy", {"steps_per_epoch": 20}, {"epochs": 2, "lr": 2e-2}, False),
)
#: The adapter of TorchJD's aggregators is left out: it needs the torchjd extra, which the demo's
#: extra does not install (its methods are TorchJD's, not this library's).
DEMO_EXCLUDED = ("torchjd",)
DEMO_METHODS = tuple(m for m in available() if m not in (STL, *DEMO_EXCLUDED))

THREADS_HELP = (
    "torch CPU threads (default 1: the models of the embedded benchmarks are too small to gain "
    "from more, and on a busy machine a second thread makes tiny operations wait for a "
    "descheduled core; give N, up to the physical cores, for larger models)"
)


class UsageError(ValueError):
    """A bad command line: printed as one line, without a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one line `go4align <command>: error: <message>`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- validation, before any data loads ----------------------------------------------------------
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


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError as error:
        raise UsageError(f"--seeds must be comma-separated ints >= 0, got {text!r}") from error
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds must be comma-separated ints >= 0, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct, got {text!r}")
    return seeds


def _method_names() -> list[str]:
    return sorted({*available(), STL})


def _methods(values: Sequence[str]) -> list[str]:
    """The method specs of every --methods, their names checked (options are checked once the
    benchmark's number of tasks is known)."""
    specs = [spec for value in values for spec in split_methods(value)]
    names = _method_names()
    for spec in specs:
        name = spec.partition(":")[0].strip().lower()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            where = f" in {spec!r}" if spec != name else ""
            raise UsageError(f"unknown method {name!r}{where}{hint} methods: {', '.join(names)}")
    return specs


def _positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{option} must be >= 1, got {value}")


def _device(text: str) -> None:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device must name a torch device such as 'cpu' or 'cuda:0', got {text!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text!r}: torch.cuda.is_available() is False on this machine")


def _threads(threads: int) -> None:
    """The thread policy of bench and demo: ``threads`` intra-op threads (default 1)."""
    _positive(threads, "--threads")
    torch.set_num_threads(threads)


def typed_command(argv: Sequence[str]) -> str:
    """The command as typed, for grid.json: never the program's absolute path."""
    return "go4align " + shlex.join(argv)


# -- bench ------------------------------------------------------------------------------------
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


# -- splitting a grid between processes -------------------------------------------------------
#: Options of --launcher submitit (argparse dest, default).
SUBMITIT_OPTIONS = {
    "jobs": None,
    "cluster": "slurm",
    "partition": None,
    "gpus_per_node": None,
    "timeout_min": None,
    "submitit_param": None,
    "wait": False,
}
#: A local job's time limit when --timeout-min is not given (submitit's own default is 2 minutes).
LOCAL_TIMEOUT_MIN = 7 * 24 * 60


def _shard(text: str | None) -> Shard | None:
    if text is None:
        return None
    try:
        return parse_shard(text)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from error


def _check_parallel(args: argparse.Namespace) -> None:
    """--workers, --launcher and the launcher's options, checked before any data loads."""
    _positive(args.workers, "--workers")
    _positive(args.jobs, "--jobs")
    _positive(args.timeout_min, "--timeout-min")
    if args.gpus_per_node is not None and args.gpus_per_node < 0:
        raise UsageError(f"--gpus-per-node must be >= 0, got {args.gpus_per_node}")
    if args.launcher == "submitit" and args.shard is not None:
        raise UsageError("--launcher submitit gives job k of --jobs N the shard k/N itself: drop --shard")
    if args.launcher != "submitit" and args.invocation is None:  # a job of a launcher keeps the typed options
        given = [name for name, default in SUBMITIT_OPTIONS.items() if getattr(args, name) != default]
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{names}: option(s) of --launcher submitit, which was not given")
    if os.environ.get("WORLD_SIZE", "1") != "1" and (args.workers > 1 or args.launcher == "submitit"):
        raise UsageError("--workers and --launcher start processes of their own: do not run them under torchrun")


def _submitit_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """What goes to submitit's ``update_parameters``: the options, then each --submitit-param."""
    timeout = args.timeout_min or (LOCAL_TIMEOUT_MIN if args.cluster == "local" else None)
    parameters: dict[str, Any] = {
        "timeout_min": timeout,
        "gpus_per_node": args.gpus_per_node,
        "slurm_partition": args.partition,
    }
    for item in args.submitit_param or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--submitit-param must be KEY=VALUE (e.g. slurm_account=abc), got {item!r}")
        parameters[key.strip()] = _literal(value.strip())
    return parameters


def _literal(text: str) -> int | float | bool | str:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _launch(args: argparse.Namespace, devices: list[str]) -> int:
    """Run the command as --workers processes here, or as --jobs cluster jobs; their runs land in
    --out as a single process's would."""
    invocation = invocation_argument(typed_command(args.argv))
    if args.launcher == "submitit":
        folder = Path(args.out) / "submitit"
        parameters = _submitit_parameters(args)
        code = submit(
            args.argv, args.jobs or 1, invocation, folder, cluster=args.cluster, parameters=parameters, wait=args.wait
        )
        if code == 0 and not args.wait:
            print(f"when the jobs have finished: go4align report {args.out} (it lists the runs still missing)")
    else:
        threads = worker_threads(args.threads, args.workers)
        code = run_workers(args.argv, devices, threads, invocation)
    if code == 0 and (args.wait or args.launcher != "submitit"):
        print(f"results in {args.out}; tables and plots: go4align report {args.out}")
    return code


def _invocation(text: str | None) -> dict[str, str] | None:
    """The command a worker or job is part of (its hidden --invocation), or ``None``."""
    if text is None:
        return None
    try:
        invocation = json.loads(text)
        if not isinstance(invocation.get("id"), str) or not isinstance(invocation.get("command"), str):
            raise ValueError
    except (ValueError, AttributeError):
        raise UsageError(f"--invocation must be the JSON object a launcher passes, got {text!r}") from None
    return invocation


def cmd_bench(args: argparse.Namespace) -> int:
    methods, seeds = _methods(args.methods), _seeds(args.seeds)
    _positive(args.epochs, "--epochs")
    _positive(args.checkpoint_every, "--checkpoint-every")
    if not 0 < args.ddp_timeout < float("inf"):
        raise UsageError(f"--ddp-timeout must be a positive number of seconds, got {args.ddp_timeout}")
    _device(args.device)
    shard, invocation = _shard(args.shard), _invocation(args.invocation)
    _check_parallel(args)
    devices = worker_devices(args.device, args.workers, torch.cuda.device_count())
    check_output_dir(args.out)  # an OSError naming the path; creates nothing
    _threads(args.threads)
    if args.workers > 1 or args.launcher == "submitit":
        return _launch(args, devices)
    config = load_config(args.config) if args.config else None
    if args.tensorboard:
        summary_writer_class()  # without the extra: an ImportError naming it, before the data loads
    benchmark = build_benchmark(args.benchmark, config, args.data_dir, args.epochs)  # data loads here
    # torchrun's ranks have not joined their group yet: rank 0 alone shows the display
    display = GridProgress(enabled=not args.quiet and os.environ.get("RANK", "0") == "0", verbose=args.verbose)
    # flushed with the checkpoints: a resumed run's curves have no gap
    callbacks = (
        [TensorBoardCallback(benchmark.task_names, flush_every=args.checkpoint_every)] if args.tensorboard else []
    )
    try:
        with distributed(args.device, timeout=args.ddp_timeout):
            run_grid(
                benchmark,
                methods,
                seeds,
                args.out,
                command=invocation["command"] if invocation else typed_command(args.argv),
                device=args.device,
                checkpoint_every=args.checkpoint_every,
                progress=display,
                skip_unrunnable=True,
                nonfinite=args.nonfinite,
                shard=shard,
                invocation_id=invocation["id"] if invocation else None,
                callbacks=callbacks,
            )
            main = is_main_process()
    finally:
        display.close()
        for callback in callbacks:
            callback.close()
    if main and shard is not None:
        print(f"shard {shard} done; go4align report {args.out} merges what every shard has written so far")
    elif main and invocation is None:  # a worker's launcher says it once for all
        print(f"results in {args.out}; tables and plots: go4align report {args.out}")
    return 0


# -- report -----------------------------------------------------------------------------------
def write_report(run_dir: str | Path) -> None:
    """Write the report of a run directory and print where it went."""
    from go4align.report import write_report as report

    for path in report(run_dir):
        if path.suffix == ".html":
            print(f"report: {path}", flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from go4align.report import cli as report_cli

    return report_cli.run(args)


# -- demo -------------------------------------------------------------------------------------
def _suite_text(suite: Sequence[tuple]) -> str:
    lines = []
    for name, options, changes, with_stl in suite:
        settings = ", ".join(f"{k}={v}" for k, v in {**options, **changes}.items())
        lines.append(f"  {name}: {settings}{'; with STL' if with_stl else ''}")
    return "\n".join(lines)


DEMO_EPILOG = f"""what it runs (each benchmark: every method x every seed, then its report):
{_suite_text(DEMO_SUITE)}
with --quick (a smoke test of the same methods, about 2 minutes on 2 cores):
{_suite_text(QUICK_SUITE)}
methods: {", ".join(DEMO_METHODS)}
  (all but {", ".join(DEMO_EXCLUDED)}: it needs the torchjd extra). A method whose optional
  dependency is missing is skipped with a note, and so is one that does not apply to a
  benchmark (the toy problem has no shared representation); the report lists them.
output: OUT/<benchmark>/ holds grid.json, runs/, report.md, report.html, results.csv and the
  figures; warnings raised during training go to OUT/<benchmark>/warnings.log.
The full demo takes about 5 minutes on 2 CPU cores."""


def cmd_demo(args: argparse.Namespace) -> int:
    seeds = _seeds(args.seeds or ("0" if args.quick else "0,1,2"))
    _device(args.device)
    check_output_dir(args.out)  # an OSError naming the path; creates nothing
    _threads(args.threads)
    suite = QUICK_SUITE if args.quick else DEMO_SUITE
    methods = list(DEMO_METHODS)
    print(
        f"go4align demo{' --quick' if args.quick else ''}: {', '.join(b for b, *_ in suite)} x "
        f"{len(methods)} methods (+ STL) x seeds {','.join(map(str, seeds))}; threads {torch.get_num_threads()}",
        flush=True,
    )
    start = time.perf_counter()
    grids = []
    for name, options, changes, with_stl in suite:
        benchmark = get_benchmark(name, **options).with_protocol(**changes)
        grids.append((benchmark, methods + ([STL] if with_stl else [])))
    display = GridProgress(enabled=not args.quiet, verbose=args.verbose)
    try:
        for benchmark, labels in grids:  # announce every run, so that the display counts them all
            for label in labels:
                for seed in seeds:
                    display.plan((benchmark.name, label, seed), steps_per_run(benchmark, parse_method_spec(label)))
        for benchmark, labels in grids:
            out = Path(args.out) / benchmark.name
            run_grid(
                benchmark,
                labels,
                seeds,
                out,
                command=typed_command(args.argv),
                device=args.device,
                progress=display,
                skip_unrunnable=True,
            )
            display.note(f"{benchmark.name}: done after {time.perf_counter() - start:.0f}s")
            write_report(out)
    finally:
        display.close()
    print(f"go4align demo finished in {time.perf_counter() - start:.0f}s; results in {args.out}")
    return 0


# -- list -------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    print("methods:   " + ", ".join(_method_names()))
    installed = installed_benchmarks()
    missing = [b for b in available_benchmarks() if b not in installed]
    print(
        "benchmarks: "
        + ", ".join(installed)
        + (f" (registered, not in this build: {', '.join(missing)})" if missing else "")
    )
    return 0


# -- the parser -------------------------------------------------------------------------------
def _display_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--threads", type=int, default=1, metavar="N", help=THREADS_HELP)
    command.add_argument(
        "--verbose", action="store_true", help="also print one line per epoch of every run (losses, test metrics)"
    )
    command.add_argument("--quiet", action="store_true", help="no progress display (notes and errors still print)")


def _parallel_options(bench: argparse.ArgumentParser) -> None:
    """bench's options that split a grid's runs between processes (docs/distributed.md)."""
    bench.add_argument(
        "--shard",
        metavar="K/N",
        help="train only shard K of N (1-based, 1 <= K <= N) of the grid's runs, for job arrays: the N "
        "commands K=1..N train every run once (runs sorted by work, STL counting as one run per task, "
        "then method and seed, each given to the shard with the least work so far); 'auto' reads a Slurm "
        "array's SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT. go4align report merges the shards",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at once on this machine, one process each: with --device cuda on cuda:0..N-1, "
        "with --device cpu on --threads // N threads each (default 1)",
    )
    bench.add_argument(
        "--launcher",
        choices=("none", "submitit"),
        default="none",
        help="submitit: submit the grid to a cluster as --jobs N jobs, job k training --shard k/N "
        "(needs the submitit extra; logs in OUT/submitit); none (default): run here",
    )
    bench.add_argument("--jobs", type=int, metavar="N", help="with --launcher submitit: how many jobs (default 1)")
    bench.add_argument(
        "--cluster",
        choices=CLUSTERS,
        default="slurm",
        help="with --launcher submitit: slurm (default), or local (jobs run on this machine, for tests)",
    )
    bench.add_argument("--partition", metavar="NAME", help="with --launcher submitit: the Slurm partition")
    bench.add_argument(
        "--gpus-per-node", type=int, metavar="G", help="with --launcher submitit: GPUs per job (with --workers G)"
    )
    bench.add_argument(
        "--timeout-min",
        type=int,
        metavar="MIN",
        help="with --launcher submitit: each job's time limit in minutes (default: the partition's; "
        f"{LOCAL_TIMEOUT_MIN} for --cluster local)",
    )
    bench.add_argument(
        "--submitit-param",
        action="append",
        metavar="KEY=VALUE",
        help="with --launcher submitit: any other submitit parameter, e.g. slurm_account=abc, mem_gb=32 (repeatable)",
    )
    bench.add_argument(
        "--wait", action="store_true", help="with --launcher submitit: wait for the jobs and fail if one failed"
    )
    bench.add_argument("--invocation", help=argparse.SUPPRESS)  # from a launcher to its workers and jobs


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


def parser() -> argparse.ArgumentParser:
    plain = argparse.RawDescriptionHelpFormatter
    top = Parser(prog="go4align", description=__doc__, formatter_class=plain)
    commands = top.add_subparsers(
        dest="command",
        required=True,
        parser_class=Parser,
        metavar="COMMAND",
        help="bench, report, demo or list; 'go4align COMMAND --help' documents its options",
    )

    bench = commands.add_parser(
        "bench",
        help="train a grid of methods x seeds on a benchmark (resumes)",
        description=_wrap(
            "Train every method with every seed on one benchmark into --out; re-running the "
            "same command resumes an interrupted grid. One progress display shows run k of N, the method, "
            "the seed, elapsed and remaining time. A method whose optional dependency is missing, or that "
            "does not apply to the benchmark, is skipped with a note (the report lists it)."
        ),
        formatter_class=plain,
    )
    bench.add_argument("--benchmark", metavar="NAME", help=f"one of: {', '.join(installed_benchmarks())}")
    bench.add_argument(
        "--methods",
        action="append",
        required=True,
        metavar="SPECS",
        help="comma-separated method specs, name or name:key=value,...; e.g. ls,go4align:num_groups=3,stl "
        "(repeatable; 'go4align list' names the methods)",
    )
    bench.add_argument("--seeds", default="0", help="comma-separated seeds, ints >= 0 (default 0)")
    bench.add_argument("--out", required=True, metavar="DIR", help="the grid's folder (created if needed)")
    bench.add_argument("--config", metavar="FILE", help="a TOML config: benchmark, [benchmark_options], [protocol]")
    bench.add_argument("--epochs", type=int, metavar="N", help="override the protocol's number of epochs")
    bench.add_argument("--data-dir", metavar="DIR", help="where the benchmark's data lie")
    bench.add_argument("--device", default="cpu", help="a torch device: cpu (default), cuda, cuda:1, ...")
    bench.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps")
    bench.add_argument(
        "--ddp-timeout",
        type=float,
        default=DDP_TIMEOUT_S,
        metavar="SECONDS",
        help=f"under torchrun: how long a rank waits for a stalled one before the job ends with an "
        f"error (default {DDP_TIMEOUT_S:.0f})",
    )
    bench.add_argument(
        "--nonfinite",
        choices=("raise", "skip"),
        default="raise",
        help="a NaN/inf task loss stops the run naming the task and step (raise, default) or skips "
        "the step, counted in result.json's skipped_steps (skip)",
    )
    bench.add_argument(
        "--tensorboard",
        action="store_true",
        help="log each run's per-step losses, weights and groups and per-epoch metrics to "
        "runs/<method>/seed<k>/tensorboard (needs the tensorboard extra)",
    )
    _display_options(bench)
    _parallel_options(bench)
    bench.set_defaults(run=cmd_bench)

    report = commands.add_parser(
        "report",
        help="tables and plots of a run directory (or a folder of them)",
        description=_wrap(
            "Write report.md, report.html, results.csv and the figures of a grid folder "
            "(one that holds grid.json), or of every grid below a folder."
        ),
        formatter_class=plain,
    )
    report.add_argument(
        "run_dir", metavar="RUN_DIR", help="a grid folder (holds grid.json) or a folder of grid folders"
    )
    report.set_defaults(run=cmd_report)

    demo = commands.add_parser(
        "demo",
        help="the default suite on embedded data (digits, synthetic, toy), then its reports",
        description=_wrap(
            "Run the demo suite on data that ships with the package (no download), then write "
            "each benchmark's report. Re-running the same command resumes it."
        ),
        epilog=DEMO_EPILOG,
        formatter_class=plain,
    )
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="where the grids go (default runs/demo)")
    demo.add_argument("--seeds", help="comma-separated seeds (default 0,1,2; 0 with --quick)")
    demo.add_argument("--quick", action="store_true", help="the smoke-test budget (see below)")
    demo.add_argument("--device", default="cpu", help="a torch device (default cpu)")
    _display_options(demo)
    demo.set_defaults(run=cmd_demo)

    listing = commands.add_parser(
        "list", help="the registered methods and benchmarks", description="Print the method and benchmark names."
    )
    listing.set_defaults(run=cmd_list)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, ImportError, NotImplementedError) as error:
        # A user's mistake (a bad value, a missing file or package): one line that names it.
        print(f"go4align {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"go4align {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
