"""The numbers of a report: per-method means over seeds, Delta-m per seed, MR, cost, convergence.

Only complete runs enter the statistics; incomplete ones are counted and flagged, because a run that
stopped early reports metrics of a different training budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import convergence_epoch, delta_m, mean_and_standard_error, mean_rank
from . import published
from .results import STL_FOLDER, Grid, MissingRun, ReportError, Run, missing_runs

__all__ = [
    "CONVERGENCE_MIN_EPOCHS",
    "CONVERGENCE_TOLERANCE",
    "UNTRUSTED_MEMORY",
    "GridSummary",
    "MethodSummary",
    "Reference",
    "printed_decimals",
    "run_delta_m",
    "summarise",
    "task_curves",
]

# A task has converged once its training loss stays within 5% of its total change of the final value
# (see metrics.convergence_epoch); the paper's Fig. 2 does not state its threshold.
CONVERGENCE_TOLERANCE = 0.05
# Below this many recorded epochs "the epoch at which a task converges" can only be one of a few
# values, mostly the last one; the report says so instead of printing a table of zeros.
CONVERGENCE_MIN_EPOCHS = 5
# Peak-memory measures of earlier trainer versions that depend on what ran before in the process
# (the resident set size stays high after a run, ru_maxrss only grows): never printed.
UNTRUSTED_MEMORY = ("cpu_rss_sampled_per_step", "cpu_ru_maxrss_increase")


@dataclass(frozen=True)
class Reference:
    """Where the single-task (STL) reference B of Delta-m comes from, in order of precedence:
    the grid's own STL runs (mean over seeds), else each result's published ``stl_reference``,
    else none (Delta-m unavailable, never 0)."""

    source: str  # "stl-runs", "results-files" or "none"
    description: str
    values: dict[str, float] | None = None  # the STL runs' means; per run otherwise

    def for_run(self, run: Run) -> dict[str, float] | None:
        return self.values if self.source == "stl-runs" else run.stl_reference


@dataclass
class MethodSummary:
    label: str
    method: str
    options: dict[str, Any]
    seeds: list[int]
    incomplete_seeds: list[int]
    metrics: dict[str, float]
    delta_m_per_seed: list[float] | None = None
    delta_m: float | None = None
    delta_m_se: float | None = None
    delta_m_note: str | None = None
    time_per_epoch_s: float | None = None
    step_time_ms: float | None = None  # median over seeds of each run's median steady-state step time
    step_time_iqr_ms: float | None = None  # median over seeds of each run's interquartile range
    relative_time: float | None = None  # step_time_ms / the LS method's
    peak_memory_mb: float | None = None  # None: not measured (CPU) or not trusted
    mean_rank: float | None = None
    convergence: dict[str, float] = field(default_factory=dict)  # task -> mean convergence epoch
    convergence_spread: float | None = None
    convergence_spread_se: float | None = None
    converged_before_end: bool = False  # some task of some seed settled before its last epoch
    paper_delta_m: float | None = None
    paper_relative_time: float | None = None


@dataclass(frozen=True)
class GridSummary:
    grid: Grid
    metric_names: list[str]
    directions: dict[str, str]
    decimals: dict[str, int]
    reference: Reference
    methods: list[MethodSummary]
    time_baseline: str | None  # label of the LS method that times are relative to
    missing: list[str]  # methods of grid.json with no results at all
    reporting_rule: str | None
    epochs_recorded: int = 0  # the most training-loss epochs of any complete run
    convergence_note: str | None = None  # why there is no convergence table, if there is none
    paper_delta_m: bool = False  # whether the paper publishes Delta-m for this benchmark
    paper_time: bool = False  # and time ratios (Table 9)
    missing_runs: list[MissingRun] = field(default_factory=list)  # (method, seed) runs without a complete result

    def stl_values(self) -> dict[str, float] | None:
        """The reference values to print: the STL runs' means, or the stored reference if all runs agree."""
        if self.reference.values is not None:
            return self.reference.values
        stored = {
            tuple(sorted(run.stl_reference.items()))
            for runs in self.grid.runs.values()
            for run in runs
            if run.stl_reference
        }
        return dict(stored.pop()) if len(stored) == 1 else None


def summarise(grid: Grid) -> GridSummary:
    complete = [run for runs in grid.runs.values() for run in runs if run.complete]
    metric_names = _metric_names(complete)
    directions = {name: complete[0].directions[name] for name in metric_names} if complete else {}
    reference = _reference(grid, metric_names)
    methods = [
        _summarise_method(label, runs, metric_names, directions, reference, grid.benchmark)
        for label, runs in grid.runs.items()
    ]
    ranked = [m for m in methods if m.seeds]
    decimals = _decimals(metric_names, ranked, reference)
    if ranked and metric_names:
        ranks = mean_rank({m.label: m.metrics for m in ranked}, directions, decimals)
        for summary in ranked:
            summary.mean_rank = ranks[summary.label]
    baseline = _time_baseline(ranked)
    for summary in methods:
        if baseline is not None and summary.step_time_ms is not None:
            summary.relative_time = summary.step_time_ms / baseline.step_time_ms
    rules = sorted({run.reporting_rule for run in complete if run.reporting_rule})
    epochs_recorded = max((sum(1 for e in run.epochs if e.get("train_losses")) for run in complete), default=0)
    return GridSummary(
        grid=grid,
        metric_names=metric_names,
        directions=directions,
        decimals=decimals,
        reference=reference,
        methods=methods,
        time_baseline=None if baseline is None else baseline.label,
        missing=[label for label in grid.methods if label not in grid.runs and not (label == STL_FOLDER and grid.stl)],
        reporting_rule="; ".join(rules) or None,
        epochs_recorded=epochs_recorded,
        convergence_note=_convergence_note(ranked, epochs_recorded),
        paper_delta_m=published.method_key(grid.benchmark) in published.PUBLISHED,
        paper_time=published.method_key(grid.benchmark) in published.TABLE9_SECONDS_PER_EPOCH,
        missing_runs=missing_runs(grid),
    )


def _convergence_note(methods: list[MethodSummary], epochs: int) -> str | None:
    """A plain sentence when the budget cannot show convergence, else ``None``."""
    percent = round(100 * CONVERGENCE_TOLERANCE)
    if epochs < CONVERGENCE_MIN_EPOCHS:
        return (
            f"The runs recorded {epochs} epoch(s) of training losses; saying when each task's loss "
            f"converges needs at least {CONVERGENCE_MIN_EPOCHS}, so this report has no convergence table "
            "or figure."
        )
    if not any(m.converged_before_end for m in methods):
        return (
            f"No task's training loss settled (within {percent}% of its total change of its final value) "
            f"before the last of the {epochs} epochs in any run: the budget is too short to compare when "
            "tasks converge, so this report has no convergence table or figure."
        )
    return None


def _metric_names(complete: list[Run]) -> list[str]:
    if not complete:
        return []
    names = list(complete[0].metrics)
    for run in complete[1:]:
        if set(run.metrics) != set(names):
            raise ReportError(
                f"{run.path}: metrics {sorted(run.metrics)} differ from {sorted(names)} in {complete[0].path}"
            )
    return names


def _reference(grid: Grid, metric_names: list[str]) -> Reference:
    stl = [run for run in grid.stl if run.complete]
    ignored = len(grid.stl) - len(stl)
    note = f" ({ignored} incomplete STL run(s) ignored)" if ignored else ""
    if stl:
        names = metric_names or list(stl[0].metrics)
        values = {
            name: float(np.mean([run.metrics[name] for run in stl if name in run.metrics]))
            for name in names
            if any(name in run.metrics for run in stl)
        }
        seeds = ", ".join(str(run.seed) for run in stl)
        return Reference("stl-runs", f"mean of the grid's {len(stl)} single-task run(s) (seeds {seeds}){note}", values)
    if any(run.stl_reference for runs in grid.runs.values() for run in runs):
        return Reference(
            "results-files", f"the stl_reference stored in each result.json (published single-task values){note}"
        )
    return Reference("none", f"none: no single-task runs and no stl_reference in the results{note}")


def _summarise_method(
    label: str,
    runs: list[Run],
    metric_names: list[str],
    directions: dict[str, str],
    reference: Reference,
    benchmark: str,
) -> MethodSummary:
    done = [run for run in runs if run.complete]
    first = runs[0]
    summary = MethodSummary(
        label=label,
        method=first.method,
        options=first.options,
        seeds=[run.seed for run in done],
        incomplete_seeds=[run.seed for run in runs if not run.complete],
        metrics={name: float(np.mean([run.metrics[name] for run in done])) for name in metric_names} if done else {},
        paper_delta_m=published.lookup_delta_m(benchmark, first.method),
        paper_relative_time=published.lookup_time_ratio(benchmark, first.method),
    )
    if not done:
        summary.delta_m_note = "no complete run"
        return summary
    _add_delta_m(summary, done, metric_names, directions, reference)
    summary.time_per_epoch_s = _mean_of_known([run.time_per_epoch_s for run in done])
    timed = [run.step_time for run in done if run.step_time is not None]
    if timed:
        # Medians throughout: one seed slowed by other work on the machine moves nothing.
        summary.step_time_ms = float(np.median([t.median for t in timed]))
        summary.step_time_iqr_ms = float(np.median([t.iqr for t in timed]))
    summary.peak_memory_mb = _mean_of_known(
        [run.peak_memory_mb for run in done if run.peak_memory_method not in UNTRUSTED_MEMORY]
    )
    _add_convergence(summary, done)
    return summary


def run_delta_m(
    run: Run, reference: Reference, metric_names: list[str], directions: dict[str, str]
) -> tuple[float | None, str | None]:
    """(Delta-m of one run, None) or (None, why it cannot be computed)."""
    ref = reference.for_run(run)
    if ref is None:
        return None, f"no STL reference for seed {run.seed}"
    if set(ref) != set(metric_names) or not set(metric_names) <= set(run.metrics):
        # delta_m would silently average over the shared metrics only: refuse instead.
        return None, f"STL reference covers {sorted(ref)}, the results {sorted(metric_names)}"
    unusable = {name: value for name, value in ref.items() if value == 0 or not math.isfinite(value)}
    if unusable:  # Delta-m divides by each reference value (an STL F1 of 0 on a rare attribute)
        return None, f"STL reference value(s) {unusable} are 0 or not finite; Delta-m divides by them"
    return delta_m(run.metrics, ref, directions), None


def _add_delta_m(
    summary: MethodSummary, done: list[Run], metric_names: list[str], directions: dict[str, str], reference: Reference
) -> None:
    values = []
    for run in done:
        value, why = run_delta_m(run, reference, metric_names, directions)
        if value is None:
            summary.delta_m_note = why
            return
        values.append(value)
    summary.delta_m_per_seed = values
    summary.delta_m, summary.delta_m_se = mean_and_standard_error(values)


def _mean_of_known(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return float(np.mean(known)) if known else None


def task_curves(run: Run) -> dict[str, tuple[list[int], list[float]]]:
    """Per task, (epochs, mean training loss) over the epochs that recorded that task's loss."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for task in run.tasks:
        points = [
            (e["epoch"], float(e["train_losses"][task]))
            for e in run.epochs
            if e.get("train_losses") and task in e["train_losses"]
        ]
        if points:
            curves[task] = ([p[0] for p in points], [p[1] for p in points])
    return curves


def _add_convergence(summary: MethodSummary, done: list[Run]) -> None:
    per_seed: list[dict[str, int]] = []
    for run in done:
        curves = task_curves(run)
        usable = {task: c for task, c in curves.items() if len(c[1]) >= 2 and np.all(np.isfinite(c[1]))}
        if usable and len(usable) == len(run.tasks):
            per_seed.append(
                {
                    task: convergence_epoch(losses, epochs, CONVERGENCE_TOLERANCE)
                    for task, (epochs, losses) in usable.items()
                }
            )
            last = max(epochs[-1] for epochs, _ in usable.values())
            summary.converged_before_end |= min(per_seed[-1].values()) < last
    if not per_seed:
        return
    summary.convergence = {task: float(np.mean([seed[task] for seed in per_seed])) for task in per_seed[0]}
    spreads = [float(np.std(list(seed.values()))) for seed in per_seed]
    summary.convergence_spread, summary.convergence_spread_se = mean_and_standard_error(spreads)


def _decimals(metric_names: list[str], methods: list[MethodSummary], reference: Reference) -> dict[str, int]:
    """Printed decimals per metric (:func:`printed_decimals` over the methods and the reference).

    A metric can span orders of magnitude across methods (a neglected task's error), and the best
    value is the one that must not lose digits. MR ranks these printed values, as the papers do, so
    two methods that print alike tie."""
    decimals = {}
    for name in metric_names:
        values = [m.metrics[name] for m in methods]
        if reference.values and name in reference.values:
            values.append(reference.values[name])
        decimals[name] = printed_decimals(values)
    return decimals


def printed_decimals(values: list[float]) -> int:
    """Decimals that show four significant digits of the smallest non-zero finite ``|value|``
    (between 0 and 6; 4 when there is none)."""
    smallest = min((abs(v) for v in values if math.isfinite(v) and v != 0.0), default=None)
    return 4 if smallest is None else int(min(6, max(0, 3 - math.floor(math.log10(smallest)))))


def _time_baseline(methods: list[MethodSummary]) -> MethodSummary | None:
    """LS, to which the paper's Table 9 relates every time; the plain "ls" label when there are several."""
    timed = [m for m in methods if published.method_key(m.method) == "ls" and m.step_time_ms]
    plain = [m for m in timed if m.label == m.method]
    return (plain or timed or [None])[0]
