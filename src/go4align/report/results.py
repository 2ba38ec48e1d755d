"""Reading the trainer's results layout into plain objects, with errors that name the file.

Layout of one grid::

    GRID/grid.json
    GRID/runs/<method_label>/seed<k>/result.json
    GRID/runs/stl/seed<k>/result.json      (single-task references, optional)

A run directory is either one grid or a folder holding several grids in subfolders.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..commands import entry_command, portable_command
from ..grid_file import GRID_FILE, SKIPPED_FILE, GridFileError, read_grid, read_skipped
from ..lock_file import RUN_LOCK, describe_owner, read_owner
from ..result_file import RESULT_FILE, ResultFileError, read_result

__all__ = [
    "Grid",
    "Invocation",
    "MissingRun",
    "ReportError",
    "Run",
    "StepTime",
    "describe_missing",
    "find_grids",
    "load_grid",
    "load_run",
    "missing_runs",
]

STL_FOLDER = "stl"


class ReportError(ValueError):
    """A results file or folder that the report cannot use; the message names it."""


@dataclass(frozen=True)
class StepTime:
    """A run's sampled training-step times in steady state, in milliseconds (result.json's
    ``step_time_ms``: warm-up steps, evaluation and checkpoints excluded)."""

    median: float
    p25: float
    p75: float
    samples: int
    clock: str | None
    cpu_median: float | None = None  # the process's CPU time of the same steps (CPU runs)

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25


@dataclass(frozen=True)
class Invocation:
    """One run of the grid command, as typed (grid.json ``invocations``)."""

    command: str
    time: str | None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One method x seed result, as written by the trainer."""

    path: Path
    benchmark: str
    method: str
    label: str
    options: dict[str, Any]
    seed: int
    tasks: list[str]
    metrics: dict[str, float]
    directions: dict[str, str]
    reporting_rule: str | None
    stl_reference: dict[str, float] | None
    epochs: list[dict[str, Any]]
    time_per_epoch_s: float | None
    step_time: StepTime | None
    peak_memory_mb: float | None
    peak_memory_method: str | None  # how the trainer measured it (CUDA allocator, not measured...)
    trace: dict[str, Any] | None
    complete: bool
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """One benchmark's method x seed grid; ``runs`` maps a method label to its runs in seed order."""

    path: Path
    benchmark: str
    protocol: str | None  # a name, or the trainer's protocol settings as key=value text
    methods: list[str]
    seeds: list[int]
    invocations: list[Invocation]  # the commands as typed, oldest first
    version: str | None
    started: str  # start_time: when the grid began
    runs: dict[str, list[Run]]
    stl: list[Run]
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    paths_left_out: bool = False  # an old grid.json's absolute paths were dropped from its command
    skipped: dict[str, str] = field(default_factory=dict)  # skipped.json: methods not run, and why


@dataclass(frozen=True)
class MissingRun:
    """A run of grid.json without a complete result: ``state`` is ``"not started"`` (nothing
    written), ``"incomplete"`` (a result or checkpoint of some epochs) or ``"in progress"`` (its
    run.lock names ``owner``: the process training it, or one that died holding it)."""

    label: str
    seed: int
    state: str
    owner: str | None = None


def missing_runs(grid: Grid) -> list[MissingRun]:
    """The runs of grid.json's methods x seeds (skipped methods aside) without a complete result,
    in grid.json's order; what the shards or workers of a grid have still to train."""
    found = {(run.label, run.seed): run for runs in grid.runs.values() for run in runs}
    found.update({(STL_FOLDER, run.seed): run for run in grid.stl})
    missing = []
    for label in grid.methods:
        if label in grid.skipped:
            continue
        for seed in grid.seeds:
            run = found.get((label, seed))
            if run is not None and run.complete:
                continue
            run_dir = grid.path / "runs" / label / f"seed{seed}"
            owner = _lock_owner(run_dir / RUN_LOCK)
            started = run is not None or any((run_dir / name).exists() for name in ("checkpoint.json", "tasks"))
            state = "in progress" if owner else "incomplete" if started else "not started"
            missing.append(MissingRun(label, seed, state, owner))
    return missing


def _lock_owner(path: Path) -> str | None:
    """Who holds a run.lock (``host pid N``, or an unknown process for an unreadable one),
    ``None`` when there is none."""
    return describe_owner(read_owner(path)) if path.is_file() else None


def describe_missing(grid: Grid, missing: list[MissingRun]) -> str | None:
    """One sentence naming the runs without a complete result, ``None`` when there are none."""
    if not missing:
        return None
    total = sum(1 for label in grid.methods if label not in grid.skipped) * len(grid.seeds)
    groups: dict[tuple[str, str, str | None], list[int]] = {}
    for run in missing:
        groups.setdefault((run.label, run.state, run.owner), []).append(run.seed)
    parts = []
    for (label, state, owner), seeds in groups.items():
        which = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
        why = f"in progress: run.lock held by {owner}" if owner else state
        parts.append(f"{label} {which} ({why})")
    return (
        f"{len(missing)} of the {total} runs of grid.json have no complete result: {'; '.join(parts)}. "
        "Running the grid's command again (or its unfinished shards) trains them; a run.lock whose "
        "process has died is taken over."
    )


def find_grids(run_dir: str | Path) -> list[Path]:
    """The grid folders of ``run_dir``: itself when it holds grid.json, else every subfolder that does."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    if (root / GRID_FILE).is_file():
        return [root]
    grids = sorted(path.parent for path in root.rglob(GRID_FILE))
    if not grids:
        raise ReportError(
            f"{root}: no grid.json here or in any subfolder; is this a run directory written by `go4align bench`?"
        )
    return grids


def load_run(path: Path) -> Run:
    """One result.json, read and checked by :func:`go4align.result_file.read_result`."""
    try:
        data = read_result(path)
    except (ResultFileError, OSError) as error:
        raise ReportError(str(error)) from error
    stl = data.get("stl_reference")
    return Run(
        path=path,
        benchmark=data["benchmark"],
        method=data["method"],
        label=data["method_label"],
        options=data.get("method_options") or {},
        seed=data["seed"],
        tasks=list(data["tasks"]),
        metrics=_floats(data["metrics"]),
        directions=dict(data["directions"]),
        reporting_rule=data.get("reporting_rule"),
        stl_reference=None if stl is None else _floats(stl),
        epochs=data.get("epochs") or [],
        time_per_epoch_s=_finite_or_none(data.get("time_per_epoch_s")),
        step_time=_step_time(data.get("step_time_ms")),
        peak_memory_mb=_finite_or_none(data.get("peak_memory_mb")),
        peak_memory_method=data.get("peak_memory_method"),
        trace=data.get("trace"),
        complete=data["complete"],
        provenance=data.get("provenance") or {},
    )


def _floats(mapping: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in mapping.items()}


def _step_time(data: dict[str, Any] | None) -> StepTime | None:
    if data is None:
        return None
    clock, cpu = data.get("clock"), data.get("cpu_median")
    cpu_ok = isinstance(cpu, (int, float)) and not isinstance(cpu, bool) and math.isfinite(cpu)
    return StepTime(
        float(data["median"]),
        float(data["p25"]),
        float(data["p75"]),
        int(data["samples"]),
        clock if isinstance(clock, str) else None,
        float(cpu) if cpu_ok else None,
    )


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def load_grid(grid_dir: str | Path) -> Grid:
    """Read grid.json and every result.json below ``grid_dir``/runs."""
    root = Path(grid_dir)
    grid_file = root / GRID_FILE
    if not grid_file.is_file():
        raise ReportError(f"{root}: no grid.json; a grid folder holds grid.json and runs/")
    try:
        spec = read_grid(grid_file)
    except (GridFileError, OSError) as error:
        raise ReportError(str(error)) from error
    benchmark = spec["benchmark"]
    invocations, paths_left_out = _invocations(spec)
    skipped_file = root / SKIPPED_FILE  # written by run_grid
    try:
        skipped = read_skipped(skipped_file) if skipped_file.is_file() else {}
    except (GridFileError, OSError) as error:
        raise ReportError(str(error)) from error
    provenance = spec.get("provenance") or {}
    runs: dict[str, list[Run]] = {}
    stl: list[Run] = []
    for path in sorted((root / "runs").glob(f"*/seed*/{RESULT_FILE}")):
        run = load_run(path)
        if run.benchmark != benchmark:
            raise ReportError(f"{path}: benchmark {run.benchmark!r} differs from {benchmark!r} in {grid_file}")
        if path.parent.parent.name == STL_FOLDER:
            stl.append(run)
        else:
            runs.setdefault(run.label, []).append(run)
    _check_same_directions([run for group in runs.values() for run in group] + stl)

    return Grid(
        path=root,
        benchmark=benchmark,
        protocol=_protocol_text(spec.get("protocol")),
        methods=spec["methods"],
        seeds=spec["seeds"],
        invocations=invocations,
        version=spec.get("go4align_version") or _text_or_none(provenance.get("go4align_version")),
        started=spec["start_time"],
        runs={label: sorted(runs[label], key=lambda r: r.seed) for label in _label_order(spec["methods"], runs)},
        stl=sorted(stl, key=lambda r: r.seed),
        benchmark_options=spec.get("benchmark_options") or {},
        provenance=provenance,
        paths_left_out=paths_left_out,
        skipped=skipped,
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _invocations(spec: dict[str, Any]) -> tuple[list[Invocation], bool]:
    """The grid's commands as typed, and whether absolute paths had to be dropped from an old one.

    grid.json lists every invocation (a resume appends one); older grids kept only the last
    command as argv, with the program's absolute path: it is shown as a new grid records its
    commands (:func:`go4align.commands.portable_command`), never with a path of the machine."""
    listed = spec.get("invocations")
    if listed is not None:
        return [
            Invocation(entry["command"], entry.get("time"), entry.get("provenance") or {}) for entry in listed
        ], False
    command = spec.get("command")
    if command is None:
        return [], False
    typed = entry_command([str(part) for part in command]) if isinstance(command, list) else command
    shown = portable_command(typed)
    return [Invocation(shown, None)], shown != typed


def _protocol_text(protocol: str | dict[str, Any] | None) -> str | None:
    """A protocol is a name or the trainer's settings; the report prints either on one line."""
    if isinstance(protocol, dict):
        return ", ".join(f"{key}={json.dumps(value)}" for key, value in protocol.items())
    return protocol


def _label_order(methods: list[str], runs: dict[str, list[Run]]) -> list[str]:
    """The grid's own method order where labels match its spec strings, then the rest by name."""
    listed = [label for label in methods if label in runs]
    return listed + sorted(label for label in runs if label not in listed)


def _check_same_directions(runs: list[Run]) -> None:
    seen: dict[str, tuple[str, Path]] = {}
    for run in runs:
        for name, direction in run.directions.items():
            first = seen.setdefault(name, (direction, run.path))
            if first[0] != direction:
                raise ReportError(f"{run.path}: metric {name!r} is {direction!r} here but {first[0]!r} in {first[1]}")
