"""The report's notes: what its numbers mean, and what they cannot say.

Every note is a plain sentence computed from the results, so that a reader is told why a column is
missing, what a large number comes from, or that the runs disagree about where they ran.
"""

from __future__ import annotations

from typing import Any

from ..result_file import PROVENANCE_KEYS
from . import published
from .results import Run, describe_missing
from .summary import UNTRUSTED_MEMORY, GridSummary

__all__ = ["notes"]

# A run whose wall-clock step time exceeds its CPU time by more than this factor spent that much
# of its steps waiting for a core: the machine was busy, and its times say more about the load.
_BUSY = 1.5


def notes(summary: GridSummary) -> list[str]:
    found = [
        _unavailable_delta_m(summary),
        _missing(summary),
        _skipped(summary),
        "MR ranks the methods of this table on the printed values (competition ranking: ties share the "
        "lowest rank); it changes with the set of methods compared.",
        _metric_weights(summary),
        _synthetic(summary),
        _reporting_rule(summary),
        _step_time(summary),
        _memory(summary),
        _paper(summary),
        _provenance(summary),
    ]
    return [note for note in found if note]


def _unavailable_delta_m(summary: GridSummary) -> str | None:
    unavailable = [f"{m.label}: {m.delta_m_note}" for m in summary.methods if m.delta_m_note]
    if not unavailable:
        return None
    return "Delta-m is n/a where it cannot be computed honestly: " + "; ".join(unavailable) + "."


def _missing(summary: GridSummary) -> str | None:
    return describe_missing(summary.grid, summary.missing_runs)


def _skipped(summary: GridSummary) -> str | None:
    if not summary.grid.skipped:
        return None
    text = "; ".join(f"{label}: {why}" for label, why in summary.grid.skipped.items())
    return f"Not run: {text}" + ("" if text.endswith(".") else ".")


def _complete_runs(summary: GridSummary) -> list[Run]:
    return [run for runs in summary.grid.runs.values() for run in runs if run.complete]


def _metrics_per_task(summary: GridSummary) -> dict[str, list[str]] | None:
    """Which metric belongs to which task: the published table's, else by the task-name prefix
    of each metric name (``top_left_acc`` of task ``top_left``), else unknown."""
    names = summary.metric_names
    table = published.PUBLISHED.get(published.method_key(summary.grid.benchmark))
    if table and table["tasks"] and {n for ms in table["tasks"].values() for n in ms} == set(names):
        return table["tasks"]
    runs = _complete_runs(summary)
    tasks = runs[0].tasks if runs else []
    owners = {name: [t for t in tasks if name == t or name.startswith(f"{t}_")] for name in names}
    if not tasks or any(len(found) != 1 for found in owners.values()):
        return None
    return {task: [name for name in names if owners[name] == [task]] for task in tasks}


def _metric_weights(summary: GridSummary) -> str | None:
    names = summary.metric_names
    if not names:
        return None
    rule = (
        "Delta-m averages the relative change of every metric, not of every task, so a task reported "
        "with two metrics weighs twice as much as a task with one."
    )
    per_task = _metrics_per_task(summary)
    if per_task is None:
        runs = _complete_runs(summary)
        return f"{rule} Here: {len(names)} metric(s) over {len(runs[0].tasks) if runs else 'n/a'} task(s)."
    counts = {task: len(metrics) for task, metrics in per_task.items()}
    if len(set(counts.values())) == 1:
        return f"{rule} Here every task has {next(iter(counts.values()))} metric(s), so the tasks weigh equally."
    listed = ", ".join(f"{task} {count}" for task, count in counts.items())
    return f"{rule} Here the tasks have different numbers of metrics ({listed}), so they do not weigh equally."


def _synthetic(summary: GridSummary) -> str | None:
    """Why Delta-m on the synthetic benchmark runs to hundreds or thousands of percent."""
    options = summary.grid.benchmark_options
    if summary.grid.benchmark != "synthetic" or not {"scales", "noise"} <= set(options):
        return None
    scales = [float(scale) for scale in options["scales"]]
    floors = [(scale * float(options["noise"])) ** 2 for scale in scales]
    text = (
        f"Synthetic benchmark, why Delta-m is large: the planted groups' targets differ in scale (s_g from "
        f"{_g(min(scales))} to {_g(max(scales))}), so their MSEs do too. The noise alone puts a floor of "
        f"(s_g × noise)² = {_g(min(floors))} to {_g(max(floors))} under every task's test MSE (the "
        "Bayes-optimal MSE of the planted model)"
    )
    reference = summary.stl_values()
    if reference:
        text += (
            f", and the single-task reference's MSEs range from {_g(min(reference.values()))} to "
            f"{_g(max(reference.values()))}"
        )
    text += (
        ". Delta-m is a mean of relative changes, so the tasks with the smallest reference MSE dominate "
        "it: an error that is small beside the large-scale tasks' is hundreds of percent there."
    )
    hidden, groups = options.get("hidden_dim"), options.get("num_groups")
    if isinstance(hidden, int) and isinstance(groups, int):
        capacity = (
            f"fewer than the {groups} planted groups of directions, so it cannot fit them all"
            if hidden < groups
            else f"enough for the {groups} planted groups of directions"
        )
        text += f" The shared model passes every task through hidden_dim = {hidden} shared unit(s), {capacity}."
    return text + (" Compare the methods with each other (Delta-m differences, MR, the per-task MSEs), not with 0.")


def _g(value: float) -> str:
    return f"{value:.3g}"


def _reporting_rule(summary: GridSummary) -> str | None:
    rule = summary.reporting_rule or ""
    if not rule.startswith("last_k_mean:") or not rule.split(":", 1)[1].isdigit():
        return None
    k, epochs = int(rule.split(":", 1)[1]), summary.epochs_recorded
    if 0 < epochs < k:
        return (
            f"The reporting rule {rule} asks for the mean of the last {k} epochs' test metrics; these runs "
            f"have {epochs}, so their metrics are the mean over all {epochs} epochs, the least trained "
            "included."
        )
    return None


def _step_time(summary: GridSummary) -> str:
    runs = _complete_runs(summary)
    untimed = sorted({run.label for run in runs if run.step_time is None})
    clocks = sorted({run.step_time.clock for run in runs if run.step_time and run.step_time.clock})
    text = (
        "Step time: each run's median over its training steps in steady state (the first steps of each "
        "training process are skipped as warm-up; evaluation, checkpoints and callbacks are not "
        "counted; long runs are sampled every few steps), with the interquartile range (IQR) of those "
        "steps; over seeds, the median of the runs' medians and IQRs. The time relative to "
        f"{summary.time_baseline or 'LS'} is the ratio of these medians, so a run's place in the "
        "process does not change it. Times come from the machine that ran the grid: compare them "
        "within this report."
    )
    if clocks:
        text += f" Clock: {', '.join(clocks)}."
    busy = sorted(
        {
            run.label
            for run in runs
            if run.step_time and run.step_time.cpu_median and run.step_time.median > _BUSY * run.step_time.cpu_median
        }
    )
    if busy:
        text += (
            f" The machine was busy: the wall-clock step times of {', '.join(busy)} exceed the CPU time "
            f"of the same steps by more than {_BUSY}x, so they include waiting for a core and their "
            "times and ratios are unreliable; rerun on a quiet machine (and with --threads 1 on a small "
            "one) to compare costs."
        )
    if untimed:
        text += (
            " No step times in the results of " + ", ".join(untimed) + " (written before the trainer "
            "recorded them): n/a."
        )
    if not summary.time_baseline:
        text += " LS is not in this grid, so there are no relative times."
    return text


def _memory(summary: GridSummary) -> str:
    methods = {run.peak_memory_method or "unknown" for run in _complete_runs(summary)}
    text = (
        "Peak memory: on CUDA, the largest memory allocated by PyTorch during the run "
        "(torch.cuda.max_memory_allocated, its statistics reset at the start of every run), above what "
        "was allocated before the run began. On the CPU it is not measured: PyTorch keeps no peak "
        "statistics for CPU memory, and the process-wide resident set size depends on the runs before."
    )
    untrusted = sorted(methods & set(UNTRUSTED_MEMORY))
    if untrusted:
        text += (
            f" Results measured with {', '.join(untrusted)} (process-wide, so depending on the runs before; "
            'the STL references stored under results/ carry it) read "not measured" here.'
        )
    return text + f" Measures in these results: {', '.join(sorted(methods))}."


def _paper(summary: GridSummary) -> str | None:
    if not (summary.paper_delta_m or summary.paper_time):
        return "The paper publishes no numbers for this benchmark, so this report has no paper columns."
    parts = []
    if summary.paper_delta_m:
        parts.append(
            "Paper columns: " + published.PUBLISHED[published.method_key(summary.grid.benchmark)]["provenance"]
        )
    if summary.paper_time:
        parts.append("Time ratios: " + published.TABLE9_SECONDS_PER_EPOCH["provenance"])
    return " ".join(parts) + (
        " They are the paper's full protocol and hardware; compare with care when this grid ran a different protocol."
    )


def _provenance(summary: GridSummary) -> str | None:
    """Say so when the grid's invocations or its runs come from different code or libraries."""
    sources: list[tuple[str, dict[str, Any]]] = [
        (f"invocation {index + 1}", invocation.provenance)
        for index, invocation in enumerate(summary.grid.invocations)
        if invocation.provenance
    ]
    runs = [run for runs in summary.grid.runs.values() for run in runs] + summary.grid.stl
    sources += [(f"{run.label} seed {run.seed}", run.provenance) for run in runs if run.provenance]
    differing = [key for key in PROVENANCE_KEYS if len({repr(info.get(key)) for _, info in sources}) > 1]
    if not differing:
        return None
    groups: dict[str, list[str]] = {}
    for name, info in sources:
        signature = ", ".join(f"{key}={info.get(key)}" for key in differing)
        groups.setdefault(signature, []).append(name)
    listed = "; ".join(f"{signature}: {_some(names)}" for signature, names in groups.items())
    return (
        f"These results do not all come from the same code and libraries (they differ in "
        f"{', '.join(differing)}): {listed}. Numbers from different versions may not be comparable."
    )


def _some(names: list[str], shown: int = 6) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
