"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

``matplotlib.figure.Figure`` is used directly rather than pyplot, so drawing touches no global state
and never switches the backend of a user's interactive session. matplotlib is imported only here and
only when a report is written: ``import go4align`` never needs it.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .results import Run
from .summary import CONVERGENCE_TOLERANCE, GridSummary, MethodSummary, task_curves

__all__ = ["FigureFile", "draw_figures", "require_matplotlib"]

_MARKERS = "osD^vP*Xh<>p"
_MAX_LEGEND_TASKS = 20


@dataclass(frozen=True)
class FigureFile:
    name: str  # file name under figures/
    title: str
    how_to_read: str
    png: bytes


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError("the report's figures need matplotlib: pip install 'go4align[report]'") from error


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _style(index: int, count: int) -> dict[str, Any]:
    """Colour and marker of the index-th of count series: tab10's strong colours while they suffice."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return {"color": palette(index % palette.N), "marker": _MARKERS[index % len(_MARKERS)]}


def draw_figures(summary: GridSummary) -> list[FigureFile]:
    """Every figure the grid's results allow, in report order."""
    require_matplotlib()
    drawn = [
        _delta_m_vs_time(summary),
        _task_progress(summary),
        _convergence_spread(summary),
        _delta_m_vs_groups(summary),
    ]
    drawn += [_groups(method, run) for method, run in _grouped_runs(summary)]
    return [figure for figure in drawn if figure is not None]


def _error(se: float | None) -> float:
    return 0.0 if se is None or not math.isfinite(se) else se


def _delta_m_vs_time(summary: GridSummary) -> FigureFile | None:
    relative = summary.time_baseline is not None
    points = [
        m
        for m in summary.methods
        if m.delta_m is not None and (m.relative_time if relative else m.step_time_ms) is not None
    ]
    if not points:
        return None
    figure = _new_figure(7.5, 4.5)
    axes = figure.add_subplot()
    for index, method in enumerate(points):
        x = method.relative_time if relative else method.step_time_ms
        axes.errorbar(
            x,
            method.delta_m,
            yerr=_error(method.delta_m_se),
            linestyle="none",
            markersize=8,
            capsize=3,
            label=method.label,
            **_style(index, len(points)),
        )
    axes.axhline(0.0, color="0.5", linestyle="--", linewidth=1, label="STL (Delta-m = 0)")
    axes.set_xlabel(
        f"time per training step relative to {summary.time_baseline}" if relative else "time per training step (ms)"
    )
    axes.set_ylabel("Delta-m % (lower is better)")
    axes.set_title(f"{summary.grid.benchmark}: performance against cost")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="method")
    baseline = (
        f"relative to the step time of {summary.time_baseline}"
        if relative
        else "in milliseconds (LS is not in this grid, so times are absolute)"
    )
    return FigureFile(
        "delta_m_vs_time.png",
        "Delta-m against training time (paper Fig. 1)",
        "One point per method: the mean Delta-m over seeds (bars: standard error) against the median "
        f"time per training step in steady state, {baseline}. Lower means better than single-task "
        "learning, left means cheaper; "
        "the best methods sit in the lower left corner. Times come from the machine that ran the "
        "grid, so compare them only within this report.",
        _png(figure),
    )


def _relative_curves(runs: list[Run]) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per task, loss / first-epoch loss, averaged over the seeds that share the first seed's epochs."""
    per_task: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    for run in runs:
        for task, (epochs, losses) in task_curves(run).items():
            if losses[0] == 0.0:
                continue
            known_epochs, curves = per_task.setdefault(task, (epochs, []))
            if epochs == known_epochs:
                curves.append(np.asarray(losses) / losses[0])
    return {task: (epochs, np.mean(curves, axis=0)) for task, (epochs, curves) in per_task.items()}


def _task_progress(summary: GridSummary) -> FigureFile | None:
    if summary.epochs_recorded < 2:  # one point per curve: nothing to see
        return None
    panels = [
        (m, _relative_curves([r for r in summary.grid.runs[m.label] if r.complete])) for m in summary.methods if m.seeds
    ]
    panels = [(m, curves) for m, curves in panels if curves]
    if not panels:
        return None
    from matplotlib import colormaps

    columns = min(4 if len(panels) > 9 else 3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(3.8 * columns + 1.8, 2.8 * rows)
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    tasks = list(dict.fromkeys(task for _, curves in panels for task in curves))
    legend = len(tasks) <= _MAX_LEGEND_TASKS
    # Distinct colours while a legend can name them; past that, a colour map by task index.
    colours = colormaps["tab10" if len(tasks) <= 10 else "tab20" if legend else "viridis"]
    positive = all(np.all(c > 0) for _, curves in panels for _, c in curves.values())
    for axes, (method, curves) in zip(grid.flat, panels, strict=False):  # spare axes are hidden
        for task, (epochs, curve) in curves.items():
            index = tasks.index(task)
            colour = colours(index) if legend else colours(index / (len(tasks) - 1))
            axes.plot(epochs, curve, color=colour, linewidth=1.5 if legend else 0.8, label=task)
        axes.set_title(method.label, fontsize=9)
        axes.grid(alpha=0.3)
        if positive:
            axes.set_yscale("log")
    for axes in grid.flat[len(panels) :]:
        axes.set_visible(False)
    for column in range(columns):
        # The lowest visible panel of each column carries the epoch axis (the last row may be short).
        bottom = grid[(len(panels) - 1 - column) // columns, column]
        bottom.xaxis.set_tick_params(labelbottom=True)
        bottom.set_xlabel("epoch")
        bottom.xaxis.get_major_locator().set_params(integer=True)
    for axes in grid[:, 0]:
        axes.set_ylabel("train loss / first epoch")
    if legend:
        handles, labels = grid.flat[0].get_legend_handles_labels()
        figure.legend(
            handles, labels, loc="outside right upper", title="task", fontsize=8, ncols=1 if len(tasks) <= 10 else 2
        )
    else:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        scale = ScalarMappable(Normalize(0, len(tasks) - 1), colours)
        figure.colorbar(scale, ax=grid, label="task index (order of the results' tasks)", fraction=0.03)
    colour_note = (
        "Each colour is one task (legend)."
        if legend
        else f"With {len(tasks)} tasks the colour runs through a colour map by task index (colour bar)."
    )
    return FigureFile(
        "task_progress.png",
        "Relative progress of each task (paper Fig. 2, left)",
        "One panel per method: each task's mean training loss divided by its first-epoch value, "
        f"averaged over seeds{', on a log scale' if positive else ''}. {colour_note} Curves that stay "
        "close together mean the tasks are learned at a similar pace; a curve that lags far above the "
        "others is a task the method under-optimises (task imbalance).",
        _png(figure),
    )


def _convergence_spread(summary: GridSummary) -> FigureFile | None:
    if summary.convergence_note:  # the budget is too short; the report says so in words
        return None
    bars = [m for m in summary.methods if m.convergence_spread is not None]
    if not bars:
        return None
    figure = _new_figure(max(4.5, 0.9 * len(bars) + 2.0), 4.0)
    axes = figure.add_subplot()
    positions = np.arange(len(bars))
    container = axes.bar(
        positions,
        [m.convergence_spread for m in bars],
        yerr=[_error(m.convergence_spread_se) for m in bars],
        capsize=4,
        color=[_style(i, len(bars))["color"] for i in range(len(bars))],
    )
    # Printed values keep a zero spread (tasks converging together) visible.
    axes.bar_label(container, fmt="%.2f", fontsize=8, padding=2)
    axes.margins(y=0.12)
    slanted = sum(len(m.label) for m in bars) > 40
    axes.set_xticks(
        positions,
        [m.label for m in bars],
        rotation=25 if slanted else 0,
        ha="right" if slanted else "center",
        fontsize=8,
    )
    axes.set_ylabel("std over tasks of the convergence epoch")
    axes.set_title(f"{summary.grid.benchmark}: convergence difference between tasks")
    axes.grid(axis="y", alpha=0.3)
    percent = round(100 * CONVERGENCE_TOLERANCE)
    return FigureFile(
        "convergence_spread.png",
        "Convergence difference between tasks (paper Fig. 2, right)",
        "For each task we take the epoch at which its training loss converges: the first epoch from "
        f"which the loss stays within {percent}% of its total change (first epoch to last epoch) of its "
        "final value. A bar is the standard deviation of that epoch over the tasks, averaged over seeds "
        "(error bar: standard error). A short bar means the tasks converge together; the paper reports "
        "that a smaller spread goes with a better Delta-m (UW > FAMO > GO4Align).",
        _png(figure),
    )


def _sweep_family(method: MethodSummary) -> str:
    others = {key: value for key, value in method.options.items() if key != "num_groups"}
    return f"{method.method} {json.dumps(others, sort_keys=True, default=str)}" if others else method.method


def _delta_m_vs_groups(summary: GridSummary) -> FigureFile | None:
    families: dict[str, list[MethodSummary]] = {}
    for method in summary.methods:
        if "num_groups" in method.options and method.delta_m is not None:
            families.setdefault(_sweep_family(method), []).append(method)
    sweeps = {
        name: sorted(ms, key=lambda m: m.options["num_groups"])
        for name, ms in families.items()
        if len({m.options["num_groups"] for m in ms}) >= 2
    }
    if not sweeps:
        return None
    figure = _new_figure(6.5, 4.0)
    axes = figure.add_subplot()
    for index, (name, methods) in enumerate(sweeps.items()):
        axes.errorbar(
            [m.options["num_groups"] for m in methods],
            [m.delta_m for m in methods],
            yerr=[_error(m.delta_m_se) for m in methods],
            capsize=3,
            label=name,
            **_style(index, len(sweeps)),
        )
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("number of groups K")
    axes.set_ylabel("Delta-m % (lower is better)")
    axes.set_title(f"{summary.grid.benchmark}: Delta-m against K")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return FigureFile(
        "delta_m_vs_k.png",
        "Delta-m against the number of groups (paper Fig. 6)",
        "Each line is one method whose runs differ only in num_groups (K): mean Delta-m over seeds "
        "against K, with standard-error bars. The paper picks K at the elbow, where adding groups "
        "stops improving Delta-m. K = M is GO4Align without grouping; K = 1 is LS with a moving scale.",
        _png(figure),
    )


def _grouped_runs(summary: GridSummary) -> list[tuple[MethodSummary, Run]]:
    """For every method whose trace records groups, its first complete run that has them."""
    found = []
    for method in summary.methods:
        runs = [
            r
            for r in summary.grid.runs[method.label]
            if r.complete and r.trace and r.trace.get("groups") and r.trace["steps"]
        ]
        if runs:
            found.append((method, runs[0]))
    return found


def _file_name(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def _groups(method: MethodSummary, run: Run) -> FigureFile:
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    steps = np.asarray(run.trace["steps"], dtype=float)
    groups = np.asarray(run.trace["groups"], dtype=float).T  # task x step
    group_weights = run.trace.get("group_weights")
    num_groups = max(int(np.nanmax(groups)) + 1, len(group_weights[0]) if group_weights else 0)
    tasks = run.tasks if len(run.tasks) == groups.shape[0] else [str(i) for i in range(groups.shape[0])]

    # A recorded assignment holds until the next record, so each step's cell runs to the next step.
    last = steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1.0)
    edges = np.append(steps, last)
    heat_height = max(1.2, 0.18 * min(len(tasks), 40))
    figure = _new_figure(8.0, 1.2 + heat_height + (2.0 if group_weights else 0.0))
    heat, lines = (
        figure.subplots(2, 1, sharex=True, height_ratios=[heat_height, 2.0])
        if group_weights
        else (figure.add_subplot(), None)
    )
    palette = ListedColormap([colormaps["tab10"](k % 10) for k in range(num_groups)])
    mesh = heat.pcolormesh(
        edges,
        np.arange(len(tasks) + 1) - 0.5,
        groups,
        shading="flat",
        cmap=palette,
        norm=BoundaryNorm(np.arange(num_groups + 1) - 0.5, num_groups),
    )
    heat.set_xlim(edges[0], edges[-1])
    colourbar = figure.colorbar(mesh, ax=heat, ticks=np.arange(num_groups), fraction=0.04)
    colourbar.set_label("group")
    heat.invert_yaxis()
    if len(tasks) <= 40:
        heat.set_yticks(np.arange(len(tasks)), tasks, fontsize=8)
    heat.set_ylabel("task")
    heat.set_title(f"{method.label}, seed {run.seed}: group assignment")
    if lines is None:
        heat.set_xlabel("step")
    else:
        weights = np.asarray(group_weights, dtype=float)
        for k in range(weights.shape[1]):
            lines.stairs(weights[:, k], edges, baseline=None, color=palette(k), linewidth=1.5, label=f"group {k}")
        lines.set_xlabel("step")
        lines.set_ylabel("group weight")
        lines.grid(alpha=0.3)
        lines.legend(fontsize=8, loc="best")
    return FigureFile(
        f"groups_{_file_name(method.label)}.png",
        f"Group assignment and group weights of {method.label} (paper Fig. 5)",
        "Top: which group each task belongs to at each recorded step (one colour per group id, as "
        "the method numbers them; GO4Align numbers groups by increasing group weight). Tasks that share "
        "a colour are weighted alike at that step; frequent colour changes mean the grouping is "
        "still moving. Bottom: each group's weight (the mean indicator of its tasks) over steps. "
        f"Shown for seed {run.seed}.",
        _png(figure),
    )
