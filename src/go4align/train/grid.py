"""Grids of runs, methods x seeds (+ STL), in the results layout the report reads::

    RUN_DIR/grid.json
    RUN_DIR/runs/<method_label>/seed<k>/result.json, checkpoint.{pt,prev.pt,json}
    RUN_DIR/runs/stl/seed<k>/result.json                 one model per task, merged
    RUN_DIR/runs/stl/seed<k>/tasks/<task>/result.json, checkpoint.{pt,prev.pt,json}
    RUN_DIR/warnings.log                                 warnings raised while training, if any
    RUN_DIR/skipped.json                                 methods skipped, and why, if any
    RUN_DIR/grid.lock, RUN_DIR/runs/.../seed<k>/run.lock  while a process updates or trains them

Completed runs are skipped, incomplete ones resume from their checkpoints, so re-running the
same command after an interruption finishes the grid. Under torchrun only rank 0 writes files;
every rank reads them, and a run ends with a barrier, so all ranks skip or run the same runs.

Several processes may share one grid (``shard``, the jobs of a job array; ``go4align bench
--workers``): a run is trained by the process holding its ``run.lock`` (another finding it held
skips it), and ``grid.json`` and ``skipped.json`` are read, changed and replaced under
``grid.lock`` (:mod:`go4align.train.locks`), so each shard's methods, seeds and invocation are
kept.
"""

from __future__ import annotations

import errno
import math
import os
import statistics
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from go4align import __version__
from go4align.benchmarks.api import Benchmark, Protocol
from go4align.grid_file import (
    GRID_FILE,
    SKIPPED_FILE,
    GridFileError,
    read_grid,
    read_skipped,
    write_grid,
    write_skipped,
)
from go4align.lock_file import GRID_LOCK, RUN_LOCK, describe_owner
from go4align.result_file import RESULT_FILE, ResultFileError, read_result, write_result
from go4align.weighting import NonFiniteLossError

from . import provenance
from .checkpoint import name_max, os_error, remove_stale_temporaries
from .locks import HEARTBEAT_S, FileLock
from .placement import check_seconds, is_main_process
from .progress import WARNINGS_LOG, GridProgress, warnings_to_log
from .shards import Shard, parse_shard, partition
from .spec import MethodSpec, parse_method_spec, single_task_weighting
from .trainer import Trainer, train_run

__all__ = [
    "run_grid",
    "prepare_grid",
    "run_dir_of",
    "merge_stl",
    "check_output_dir",
    "steps_per_run",
    "SKIPPED",
]

#: Methods a grid skipped, with the reason (a missing optional package, a method that does not
#: apply to the benchmark): ``{label: reason}``, read by the report.
SKIPPED = SKIPPED_FILE
# grid.lock is held for milliseconds: older than this, its owner is gone; wait twice as long.
_GRID_LOCK_STALE_S = 60.0


def run_dir_of(out_dir: str | Path, label: str, seed: int) -> Path:
    return Path(out_dir) / "runs" / label / f"seed{seed}"


def check_output_dir(path: str | Path, labels: Iterable[str] = ()) -> Path:
    """Check, before anything loads or runs, that a grid can be written to ``path``; creates
    nothing. ``path`` must be a directory or creatable as one, writable, and its new components
    and the method ``labels`` (each a directory name in it) must fit the file system's name
    limit. Raises an ``OSError`` subclass naming the path."""
    path = Path(path)
    try:
        existing = _deepest_existing_dir(path)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise os_error(PermissionError, errno.EACCES, f"output directory {path}: {existing} is not writable")
        for label in labels:
            _check_name(label, existing, "method label")
    except OSError as error:
        if str(path) in str(error):
            raise
        raise os_error(type(error), error.errno, f"output directory {path}: {error.strerror or error}") from error
    return path


def _deepest_existing_dir(path: Path) -> Path:
    """The deepest existing directory on ``path``, each name checked against the length limit
    before it is looked up (a lookup of a name too long fails without saying which)."""
    existing = Path(path.anchor or ".")
    missing = False
    for part in path.parts[1:] if path.anchor else path.parts:
        _check_name(part, existing, f"output directory {path}: the name")
        candidate = existing / part
        if missing or not candidate.exists():
            missing = True
        elif not candidate.is_dir():
            what = " exists and is not a directory" if candidate == path else f": {candidate} is not a directory"
            raise os_error(NotADirectoryError, errno.ENOTDIR, f"output directory {path}{what}")
        else:
            existing = candidate
    return existing


def _check_name(name: str, directory: Path, what: str) -> None:
    size, limit = len(os.fsencode(name)), name_max(directory)
    if size > limit:
        message = f"{what} {name!r} is {size} bytes; a file name may have at most {limit} bytes in {directory}"
        raise os_error(OSError, errno.ENAMETOOLONG, message)


def _read_complete(path: Path) -> dict | None:
    """A run's result when the run is complete; ``None`` when it is absent or incomplete."""
    if not path.exists():
        return None
    try:
        result = read_result(path)
    except ResultFileError as error:
        raise ValueError(
            f"{error}; delete it and re-run the same command: the run resumes from its checkpoint"
        ) from error
    return result if result["complete"] else None


def prepare_grid(benchmark: Benchmark, methods: Sequence[str | MethodSpec], seeds: Sequence[int]) -> list[MethodSpec]:
    """Parse and check the methods and seeds before anything runs: unknown methods, bad options
    (e.g. ``num_groups`` above the number of tasks), duplicates and bad seeds raise here."""
    specs = [m if isinstance(m, MethodSpec) else parse_method_spec(m) for m in methods]
    if not specs:
        raise ValueError("no methods given")
    labels = [s.label for s in specs]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"method(s) {duplicated} given more than once")
    for spec in specs:
        if not spec.is_stl:
            spec.build(benchmark.num_tasks, benchmark.protocol.method_options)
    if not seeds:
        raise ValueError("no seeds given")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds must be ints >= 0, got {bad}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    return specs


def _write_grid(
    out_dir: Path, benchmark: Benchmark, specs: list[MethodSpec], seeds: Sequence[int], entry: dict
) -> None:
    """Create ``grid.json``, or extend it with new methods and seeds when resuming; a grid of
    another benchmark or protocol in the same directory is an error. ``entry`` (a
    :func:`~go4align.train.provenance.invocation`) is appended to ``invocations``; the top-level
    ``provenance`` is the first invocation's. An entry with an ``id`` already listed (the
    workers or jobs of one command) is not added again. No path of the machine is written."""
    path = out_dir / GRID_FILE
    grid = {
        "benchmark": benchmark.name,
        "benchmark_options": dict(benchmark.options),
        "protocol": benchmark.protocol.to_dict(),
        "methods": [s.label for s in specs],
        "seeds": list(seeds),
        "go4align_version": __version__,
        "start_time": entry["time"],
        "provenance": entry["provenance"],
        "invocations": [entry],
    }
    if path.exists():
        try:
            old = read_grid(path)
        except GridFileError as error:
            raise GridFileError(f"{error}; restore it, or use a new output directory") from error
        for key in ("benchmark", "benchmark_options", "protocol"):
            theirs = _with_defaults(old.get(key)) if key == "protocol" else old.get(key)
            if theirs != grid[key]:
                raise ValueError(
                    f"{out_dir} holds a grid with another {key} ({old.get(key)!r}, now {grid[key]!r}); "
                    "use a new output directory"
                )
        grid["methods"] = old["methods"] + [m for m in grid["methods"] if m not in old["methods"]]
        grid["seeds"] = old["seeds"] + [s for s in grid["seeds"] if s not in old["seeds"]]
        # grids written before invocations were recorded keep their first version and start
        grid["go4align_version"] = old.get("go4align_version", __version__)
        grid["start_time"] = old["start_time"]
        grid["provenance"] = old.get("provenance")
        grid["invocations"] = old.get("invocations") or _legacy_invocations(old)
        listed = {e.get("id") for e in grid["invocations"]}
        if entry.get("id") is None or entry["id"] not in listed:
            grid["invocations"].append(entry)
    if is_main_process():
        write_grid(grid, path)


def _legacy_invocations(old: dict) -> list[dict]:
    """What a grid written before invocations were recorded says of how it began: the command it
    kept (its latest invocation's argv, without the script's path) and its start time, with no
    provenance; nothing when it kept no command."""
    command = old.get("command")
    if isinstance(command, list):
        command = provenance.entry_command([str(part) for part in command]) if command else None
    if not command:
        return []
    return [{"command": provenance.portable_command(command), "time": old["start_time"], "provenance": None}]


def _with_defaults(protocol: Any) -> Any:
    """A stored protocol with the fields added since it was written at their defaults (the same
    protocol); as stored when it cannot be read as one."""
    try:
        return Protocol(**protocol).to_dict()
    except (TypeError, ValueError):
        return protocol


@contextmanager
def _grid_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``grid.lock`` around a read-modify-write of the grid's shared files (rank 0 only:
    the other ranks of a torchrun job write nothing)."""
    if not is_main_process():
        yield
        return
    with FileLock(out_dir / GRID_LOCK, stale_after_s=_GRID_LOCK_STALE_S).waiting(2 * _GRID_LOCK_STALE_S):
        yield


def _from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank of a torchrun job (``value`` itself in one process), so
    that all ranks train or skip the same run."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _HeldElsewhere(Exception):
    """Another live process holds the run's lock: it trains the run, this one skips it."""


@contextmanager
def _run_ownership(run_dir: Path) -> Iterator[None]:
    """Own the run (hold its ``run.lock``, refreshed by a heartbeat) for the body; raises
    :class:`_HeldElsewhere` when another live process owns it."""
    lock = FileLock(run_dir / RUN_LOCK, heartbeat_s=HEARTBEAT_S)
    holder = None if not is_main_process() or lock.try_acquire() else describe_owner(lock.holder)
    holder = _from_main(holder)
    if holder is not None:
        raise _HeldElsewhere(f"{holder} holds {run_dir / RUN_LOCK}")
    try:
        yield
    finally:
        lock.release()
        if lock.lost:
            warnings.warn(
                f"{run_dir / RUN_LOCK}: this process lost the run's lock while training it (stopped for longer "
                "than the stale time?) and another process took the run over",
                RuntimeWarning,
                stacklevel=3,
            )


def merge_stl(results: Sequence[dict], benchmark: Benchmark, seed: int) -> dict:
    """One STL result from the per-task runs: each task's metrics, losses and trace come from its
    own model; epoch times add up (the cost of STL is all M models)."""
    tasks = benchmark.task_names
    own = {t.name: [m.name for m in t.metrics] for t in benchmark.tasks}
    by_task = dict(zip(tasks, results))

    def pick(values: list[dict | None]) -> dict | None:
        if any(v is None for v in values):
            return None
        return {n: v[n] for t, v in zip(tasks, values) for n in own[t]}

    epochs = []
    for i in range(min(len(r["epochs"]) for r in results)):
        rows = [by_task[t]["epochs"][i] for t in tasks]
        epochs.append(
            {
                "epoch": rows[0]["epoch"],
                "time_s": sum(r["time_s"] for r in rows),
                "train_losses": {t: r["train_losses"][t] for t, r in zip(tasks, rows)},
                "val": pick([r["val"] for r in rows]),
                "test": pick([r["test"] for r in rows]),
            }
        )
    traces = [by_task[t]["trace"] for t in tasks]
    length = min(len(tr["steps"]) for tr in traces)
    trace = {
        "steps": traces[0]["steps"][:length],
        "losses": [[tr["losses"][i][m] for m, tr in enumerate(traces)] for i in range(length)],
        "weights": [[tr["weights"][i][m] for m, tr in enumerate(traces)] for i in range(length)],
        "groups": None,
        "group_weights": None,
    }
    first = results[0]
    return {
        "benchmark": benchmark.name,
        "method": "stl",
        "method_label": "stl",
        "method_options": {},
        "seed": seed,
        "tasks": tasks,
        "metrics": {n: by_task[t]["metrics"][n] for t in tasks for n in own[t]},
        "directions": first["directions"],
        "reporting_rule": first["reporting_rule"],
        "selected_epoch": None,
        "selected_epoch_per_task": {t: by_task[t]["selected_epoch"] for t in tasks},
        "stl_reference": first["stl_reference"],
        "epochs": epochs,
        "time_per_epoch_s": statistics.median(e["time_s"] for e in epochs) if epochs else None,
        "peak_memory_mb": max((r["peak_memory_mb"] for r in results if r["peak_memory_mb"] is not None), default=None),
        "peak_memory_method": first["peak_memory_method"],
        "device": first["device"],
        "trace": trace,
        "complete": all(r["complete"] for r in results),
        "nonfinite": first.get("nonfinite", "raise"),
        "skipped_steps": sum(r.get("skipped_steps", 0) for r in results),
        "provenance": first.get("provenance"),
    }


def _run_stl(benchmark: Benchmark, seed: int, out_dir: Path, options: dict) -> dict:
    stl_dir = run_dir_of(out_dir, "stl", seed)
    results = []
    for index, task in enumerate(benchmark.task_names):
        spec = MethodSpec("stl", {}, "stl")
        task_dir = stl_dir / "tasks" / task
        result = _read_complete(task_dir / RESULT_FILE) or train_run(
            benchmark,
            spec,
            seed,
            task_dir,
            weighting=single_task_weighting(benchmark.num_tasks, index),
            focus_task=task,
            **options,
        )
        results.append(result)
    merged = merge_stl(results, benchmark, seed)
    if is_main_process():
        remove_stale_temporaries(stl_dir)  # of a merge killed mid-write
        write_result(merged, stl_dir / RESULT_FILE)
    return merged


class _DoesNotApply(ValueError):
    """A method's first training step failed: it does not apply to the benchmark."""


def steps_per_run(benchmark: Benchmark, spec: MethodSpec) -> int:
    """The training steps of one run (STL trains one model per task): the display's unit of work."""
    epoch_steps = math.ceil(len(benchmark.dataset("train")) / benchmark.protocol.batch_size)
    return epoch_steps * benchmark.protocol.epochs * (benchmark.num_tasks if spec.is_stl else 1)


def _missing_dependencies(benchmark: Benchmark, specs: list[MethodSpec]) -> dict[str, str]:
    """The methods that cannot be built here for want of an optional package, with the reason
    (their ImportError names the extra to install)."""
    missing = {}
    for spec in specs:
        if spec.is_stl:
            continue
        try:
            spec.build(benchmark.num_tasks, benchmark.protocol.method_options)
        except ImportError as error:
            missing[spec.label] = str(error)
    return missing


def _write_skipped(out_dir: Path, skipped: dict[str, str], ran: set[str]) -> None:
    """Keep ``skipped.json`` (label -> why it did not run) for the report: add this call's skips,
    forget methods that have run since."""
    path = out_dir / SKIPPED
    try:
        old = read_skipped(path) if path.exists() else {}
    except GridFileError as error:
        raise GridFileError(f"{error}; delete it: the grid writes it again") from error
    merged = {label: why for label, why in {**old, **skipped}.items() if label not in ran}
    if merged != old and is_main_process():
        if merged:
            write_skipped(merged, path)
        else:
            path.unlink()


def run_grid(
    benchmark: Benchmark,
    methods: Sequence[str | MethodSpec],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    command: str | None = None,
    progress: bool | GridProgress = True,
    skip_unrunnable: bool = False,
    shard: Shard | str | None = None,
    invocation_id: str | None = None,
    wait_for_others: bool = True,
    poll_s: float = 10.0,
    **options: Any,
) -> dict[tuple[str, int], dict]:
    """Run every method (``"stl"`` included) with every seed into ``out_dir``; returns the
    results by ``(label, seed)`` of the runs this call trained or found complete.

    Args:
        command: the command line as typed, recorded in ``grid.json``'s ``invocations`` (the CLI
            passes ``"go4align " + shlex.join(argv)``; ``None`` records the running script, see
            :func:`~go4align.train.provenance.entry_command`).
        progress: show one progress display (``True``), nothing (``False``), or report to a
            :class:`~go4align.train.progress.GridProgress` shared with other grids (the demo's);
            a display built with ``verbose=True`` also shows each run's epochs.
        skip_unrunnable: skip, with a note and an entry in ``skipped.json`` for the report, a
            method that cannot be built for want of an optional package (``ImportError``) or
            whose first training step fails with a ``ValueError`` (it does not apply to this
            benchmark, e.g. it needs a shared representation the model lacks); otherwise those
            errors end the grid.
        shard: run only this shard's runs (a :class:`~go4align.train.shards.Shard` or ``"k/n"``,
            1-based; see :func:`~go4align.train.shards.partition` for the rule). ``grid.json``
            still lists every method and seed, so that the report sees what is missing.
        invocation_id: the processes of one command (``--workers``, submitit jobs) share it and
            record that command once in ``grid.json``'s ``invocations``.
        wait_for_others: a run whose ``run.lock`` another live process holds is left to it; with
            ``True`` (default) this call, once its other runs are done, waits until each such run
            is complete (or takes it over when its owner dies: the lock goes stale), so that it
            returns with its share of the grid complete; with ``False`` it returns without them.
        poll_s: while waiting for runs held by others, look at them again every ``poll_s``
            seconds (> 0).
        options: go to :class:`~go4align.train.trainer.Trainer` (``device``,
            ``checkpoint_every``, ``callbacks``, ``nonfinite``).

    Warnings raised while a run trains go to ``out_dir/warnings.log`` with the method, seed and
    step (see :func:`~go4align.train.progress.warnings_to_log`).
    """
    if command is not None and not isinstance(command, str):
        raise TypeError(f"command must be the command line as one str or None, got {command!r}")
    check_seconds("poll_s", poll_s)
    if isinstance(shard, str):
        shard = parse_shard(shard)
    if shard is not None and not isinstance(shard, Shard):
        raise TypeError(f"shard must be a Shard, 'k/n' or None, got {shard!r}")
    specs = [m if isinstance(m, MethodSpec) else parse_method_spec(m) for m in methods]
    # over every method given, skipped here or not, so that shards on machines with different
    # optional packages still split the grid alike
    mine = partition([s.label for s in specs], seeds, benchmark.num_tasks, shard) if shard else None
    in_grid = len(specs) * len(seeds)
    skipped = _missing_dependencies(benchmark, specs) if skip_unrunnable else {}
    if skipped and len(skipped) == len(specs):
        raise ImportError("; ".join(f"{label}: {why}" for label, why in skipped.items()))
    specs = prepare_grid(benchmark, [s for s in specs if s.label not in skipped], seeds)
    out_dir = check_output_dir(out_dir, [s.label for s in specs])
    entry = provenance.invocation(command, options.get("device", "cpu"))
    if invocation_id is not None:
        entry["id"] = invocation_id
    with _grid_lock(out_dir):
        if is_main_process():
            remove_stale_temporaries(out_dir)  # a grid.json write killed midway
        _write_grid(out_dir, benchmark, specs, seeds, entry)
    display = progress if isinstance(progress, GridProgress) else GridProgress(enabled=bool(progress))
    note = display.note if is_main_process() else (lambda text: None)
    for label, why in skipped.items():
        note(f"note: {benchmark.name}: {label} skipped: {why}")
    if shard is not None:
        note(f"note: {benchmark.name}: shard {shard}: {len(mine)} of the grid's {in_grid} runs")
    for seed in seeds:
        for spec in specs:
            if mine is None or (spec.label, seed) in mine:
                display.plan((benchmark.name, spec.label, seed), steps_per_run(benchmark, spec))
    for label in skipped:
        for seed in seeds:
            display.drop((benchmark.name, label, seed))
    results: dict[tuple[str, int], dict] = {}
    logged: list[int] = []  # warnings raised by each run
    todo = [(spec, seed) for seed in seeds for spec in specs if mine is None or (spec.label, seed) in mine]
    waited: set[tuple[str, int]] = set()  # runs whose owner this process has said it waits for
    try:
        while todo:
            held = []
            for spec, seed in todo:
                if spec.label in skipped:
                    continue
                try:
                    result = _grid_run(benchmark, spec, seed, out_dir, options, display, logged, skip_unrunnable)
                except _HeldElsewhere as error:
                    held.append((spec, seed, error))
                    continue
                except _DoesNotApply as error:
                    skipped[spec.label] = f"does not apply to {benchmark.name}: {error}"
                    note(f"note: {benchmark.name}: {spec.label} does not apply, skipped: {error}")
                    for later in seeds[seeds.index(seed) :]:
                        display.drop((benchmark.name, spec.label, later))
                    continue
                results[spec.label, seed] = result
            todo = _wait_for_others(held, waited, wait_for_others, poll_s, benchmark.name, note, display)
    finally:
        if display is not progress:
            display.close()
    with _grid_lock(out_dir):
        _write_skipped(out_dir, skipped, {label for label, _ in results})
    if sum(logged):
        note(f"note: {benchmark.name}: {sum(logged)} warning(s) written to {out_dir / WARNINGS_LOG}")
    return results


def _wait_for_others(
    held: list[tuple[MethodSpec, int, _HeldElsewhere]],
    waited: set[tuple[str, int]],
    wait: bool,
    poll_s: float,
    benchmark: str,
    note: Any,
    display: GridProgress,
) -> list[tuple[MethodSpec, int]]:
    """The runs to look at again: the ``held`` ones after a pause, or none when not waiting."""
    for spec, seed, error in held:
        if not wait:
            note(f"note: {benchmark}: {spec.label} seed {seed} left to the process training it: {error}")
            display.drop((benchmark, spec.label, seed))
        elif (spec.label, seed) not in waited:
            waited.add((spec.label, seed))
            note(
                f"note: {benchmark}: {spec.label} seed {seed} is being trained by another process ({error}); "
                "waiting for it to finish (or to die, then this process takes the run over)"
            )
    if not wait or not held:
        return []
    time.sleep(poll_s)
    return [(spec, seed) for spec, seed, _ in held]


def _grid_run(
    benchmark: Benchmark,
    spec: MethodSpec,
    seed: int,
    out_dir: Path,
    options: dict,
    display: GridProgress,
    logged: list[int],
    skip_unrunnable: bool,
) -> dict:
    """One run of the grid (read back if complete), reported to the display, its warnings logged.
    With ``skip_unrunnable``, a ``ValueError`` raised by the run's first step becomes
    :class:`_DoesNotApply`; a run another process owns raises :class:`_HeldElsewhere`."""
    run_dir, key = run_dir_of(out_dir, spec.label, seed), (benchmark.name, spec.label, seed)
    done = _read_complete(run_dir / RESULT_FILE)
    if done:
        display.found_complete(key)
        return done
    with _run_ownership(run_dir):
        done = _read_complete(run_dir / RESULT_FILE)  # finished by its previous owner meanwhile
        if done:
            display.found_complete(key)
            return done
        return _train(benchmark, spec, seed, run_dir, out_dir, options, display, logged, skip_unrunnable)


def _train(
    benchmark: Benchmark,
    spec: MethodSpec,
    seed: int,
    run_dir: Path,
    out_dir: Path,
    options: dict,
    display: GridProgress,
    logged: list[int],
    skip_unrunnable: bool,
) -> dict:
    key = (benchmark.name, spec.label, seed)
    description = f"{benchmark.name} {spec.label} seed {seed}"
    epoch_steps = math.ceil(len(benchmark.dataset("train")) / benchmark.protocol.batch_size)
    reported = 0

    def on_epoch(line: str) -> None:
        nonlocal reported
        reported += epoch_steps
        display.advance(epoch_steps)
        display.epoch_line(line)

    trainer: list[Trainer] = []

    def where() -> str:
        step = trainer[0].global_step if trainer else None
        return f"{spec.label} seed {seed}" + (f" step {step}" if step is not None else "")

    display.begin(description)
    run_options = {**options, "progress": on_epoch if is_main_process() else False}
    with warnings_to_log(out_dir / WARNINGS_LOG, where, display.note, is_main_process()) as raised:
        if spec.is_stl:
            result = _run_stl(benchmark, seed, out_dir, run_options)
        else:
            trainer.append(Trainer(benchmark, spec, seed, run_dir, **run_options))
            try:
                result = trainer[0].fit()
            except ValueError as error:
                first_step = trainer[0].global_step == 0
                if skip_unrunnable and first_step and not isinstance(error, NonFiniteLossError):
                    raise _DoesNotApply(str(error)) from error
                raise
    logged.append(sum(raised.values()))
    display.finish(key, description, reported)
    return result
