"""``write_report``: from a run directory to report.md, report.html, results.csv and figures/."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .document import Block, Heading, Image, Link, Paragraph, Table, to_html, to_markdown
from .figures import FigureFile, draw_figures, require_matplotlib
from .notes import notes
from .results import Grid, Run, find_grids, load_grid
from .summary import UNTRUSTED_MEMORY, GridSummary, MethodSummary, run_delta_m, summarise

__all__ = ["write_report"]

NA = "n/a"
NOT_MEASURED = "not measured"
# Beyond this many metrics (QM9 has 11, CelebA 40) the per-metric table lists metrics as rows.
_MAX_METRIC_COLUMNS = 12
_ARROWS = {"higher": "↑", "lower": "↓"}


def write_report(run_dir: str | Path, *, figures: bool = True) -> list[Path]:
    """Write the report of every grid under ``run_dir`` and return the paths written.

    ``run_dir`` is one grid (it holds grid.json) or a folder of grids; each grid gets report.md,
    a self-contained report.html, results.csv and ``figures/*.png`` in its own folder, and a folder of
    grids also gets index.md and index.html linking them. With ``figures=False`` nothing is drawn
    and nothing links a figure (for a report stored without its figures/ folder); matplotlib is
    then not needed. Raises ``ReportError`` naming the file for a missing grid.json or a malformed
    result.json, and ``ImportError`` naming the ``report`` extra when matplotlib is missing.
    """
    if figures:
        require_matplotlib()
    root = Path(run_dir)
    summaries = [summarise(load_grid(path)) for path in find_grids(root)]
    written = [path for summary in summaries for path in _write_grid(summary, figures)]
    if summaries[0].grid.path != root:
        written += _write_index(root, summaries)
    return written


def _write_grid(summary: GridSummary, with_figures: bool) -> list[Path]:
    folder = summary.grid.path
    figures = draw_figures(summary) if with_figures else []
    figure_dir = folder / "figures"
    # Figures of an earlier report that this one does not draw would otherwise linger beside it.
    for stale in figure_dir.glob("*.png"):
        stale.unlink()
    if figures:
        figure_dir.mkdir(exist_ok=True)
    elif figure_dir.is_dir() and not any(figure_dir.iterdir()):
        figure_dir.rmdir()
    paths = []
    for figure in figures:
        path = figure_dir / figure.name
        path.write_bytes(figure.png)
        paths.append(path)
    blocks = _report_blocks(summary, figures)
    title = f"go4align report: {summary.grid.benchmark}"
    for name, text in (("report.md", to_markdown(blocks)), ("report.html", to_html(title, blocks))):
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    paths.append(_write_csv(summary, folder / "results.csv"))
    return paths


def _number(value: float | None, decimals: int) -> str:
    if value is None:
        return NA
    return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)


def _significant(value: float, reference: float | None = None) -> str:
    """Three significant digits of ``reference`` (default ``value``), without exponent notation."""
    scale = abs(reference if reference is not None else value)
    decimals = 0 if scale == 0 or scale >= 100 else 2 - math.floor(math.log10(scale))
    return f"{value:.{decimals}f}"


def _step_time_cell(method: MethodSummary) -> str:
    if method.step_time_ms is None:
        return NA
    return f"{_significant(method.step_time_ms)} (IQR {_significant(method.step_time_iqr_ms, method.step_time_ms)})"


def _memory_cell(method: MethodSummary) -> str:
    if not method.seeds:
        return NA
    return NOT_MEASURED if method.peak_memory_mb is None else f"{method.peak_memory_mb:.0f}"


def _delta_m_cell(method: MethodSummary) -> str:
    if method.delta_m is None:
        return NA
    if method.delta_m_se is None or not math.isfinite(method.delta_m_se):
        return f"{method.delta_m:.2f} (1 seed)"
    return f"{method.delta_m:.2f} ± {method.delta_m_se:.2f}"


def _flags(method: MethodSummary, grid: Grid) -> str:
    flags = []
    if method.incomplete_seeds:
        flags.append(f"incomplete seed(s) {_seed_list(method.incomplete_seeds)} excluded")
    absent = [seed for seed in grid.seeds if seed not in method.seeds + method.incomplete_seeds]
    if absent:
        flags.append(f"no result for seed(s) {_seed_list(absent)}")
    return "; ".join(flags)


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(str(seed) for seed in seeds)


def _commands(grid: Grid) -> str | None:
    """The grid's commands as typed, oldest first, with their times."""
    if not grid.invocations:
        return None
    shown = [f"{i.command} ({i.time})" if i.time else i.command for i in grid.invocations]
    label = "Command" if len(shown) == 1 else f"Commands ({len(shown)} invocations, oldest first)"
    left_out = " (absolute paths left out)" if grid.paths_left_out else ""
    return f"{label}{left_out}: " + "; ".join(shown) + "."


def _environment(grid: Grid) -> str | None:
    """Where the grid first ran: the provenance of grid.json, if it has one."""
    info = grid.provenance
    if not info:
        return None
    commit = info.get("git_commit")
    code = f"go4align {info.get('go4align_version', NA)}"
    if commit:
        code += f" (commit {str(commit)[:12]}{', uncommitted changes' if info.get('git_dirty') else ''})"
    parts = [code] + [f"{key} {info[key]}" for key in ("python", "torch", "numpy") if info.get(key)]
    where = ", ".join(str(info[key]) for key in ("device", "cpu", "platform") if info.get(key))
    threads = f", {info['threads']} thread(s)" if info.get("threads") else ""
    return "Ran with " + ", ".join(parts) + (f" on {where}{threads}" if where else threads) + "."


def _header(summary: GridSummary) -> list[Block]:
    grid = summary.grid
    protocol = f", protocol {grid.protocol}" if grid.protocol else ""
    total_runs = sum(len(runs) for runs in grid.runs.values())
    complete_runs = sum(len(m.seeds) for m in summary.methods)
    facts = [
        (
            f"Benchmark {grid.benchmark}{protocol}: {len(grid.runs)} method(s) with results, seeds "
            f"[{_seed_list(grid.seeds)}]; {complete_runs} of {total_runs} run(s) complete."
        )
    ]
    facts += [fact for fact in (_commands(grid), _environment(grid)) if fact]
    if grid.provenance:  # the version is in the environment's sentence
        facts.append(f"Started {grid.started or NA}.")
    elif grid.version or grid.started:
        facts.append(f"go4align {grid.version or NA}, started {grid.started or NA}.")
    rule = summary.reporting_rule or "as recorded by the trainer"
    return [
        Heading(f"go4align report: {grid.benchmark}", 1),
        Paragraph(" ".join(facts)),
        Paragraph(
            f"Metrics are the values each result.json reports for its protocol (reporting rule: "
            f"{rule}); this report selects nothing on test results. Statistics use complete runs "
            "only: mean over seeds, and Delta-m computed per seed, then mean ± standard error."
        ),
        Paragraph(f"Single-task (STL) reference for Delta-m: {summary.reference.description}."),
    ]


def _metric_table(summary: GridSummary) -> Table:
    methods = [m for m in summary.methods if m.seeds]
    stl = summary.stl_values()
    names = summary.metric_names
    fmt = {name: (lambda v, d=summary.decimals[name]: _number(v, d)) for name in names}
    if len(names) <= _MAX_METRIC_COLUMNS:
        header = ["method"] + [f"{name} {_ARROWS[summary.directions[name]]}" for name in names] + ["MR"]
        rows = [[m.label] + [fmt[n](m.metrics[n]) for n in names] + [_number(m.mean_rank, 2)] for m in methods]
        if stl is not None:
            rows.append(["STL reference"] + [fmt[n](stl.get(n)) for n in names] + [""])
        return Table(header, rows)
    header = ["metric"] + [m.label for m in methods] + (["STL reference"] if stl is not None else [])
    rows = [
        [f"{n} {_ARROWS[summary.directions[n]]}"]
        + [fmt[n](m.metrics[n]) for m in methods]
        + ([fmt[n](stl.get(n))] if stl is not None else [])
        for n in names
    ]
    rows.append(["MR"] + [_number(m.mean_rank, 2) for m in methods] + ([""] if stl is not None else []))
    return Table(header, rows)


def _summary_table(summary: GridSummary) -> Table:
    """Delta-m, cost and seeds per method; the paper's columns only where the paper has numbers."""
    relative = f"time rel. to {summary.time_baseline or 'LS'}"
    columns = [
        ("method", lambda m: m.label),
        ("Delta-m % (mean ± s.e.)", _delta_m_cell),
        ("paper Delta-m %", lambda m: _number(m.paper_delta_m, 2)) if summary.paper_delta_m else None,
        ("step time (ms), median (IQR)", _step_time_cell),
        (relative, lambda m: _number(m.relative_time, 2)),
        ("paper time rel. to LS", lambda m: _number(m.paper_relative_time, 2)) if summary.paper_time else None,
        ("peak memory (MB)", _memory_cell),
        ("seeds", lambda m: f"{len(m.seeds)}/{len(summary.grid.seeds)}" if summary.grid.seeds else str(len(m.seeds))),
        ("flags", lambda m: _flags(m, summary.grid)),
    ]
    columns = [column for column in columns if column is not None]
    return Table([name for name, _ in columns], [[cell(m) for _, cell in columns] for m in summary.methods])


def _convergence_table(summary: GridSummary) -> Table | None:
    rows = []
    for m in summary.methods:
        if m.convergence_spread is None:
            continue
        first = min(m.convergence, key=m.convergence.get)
        last = max(m.convergence, key=m.convergence.get)
        spread = (
            f"{m.convergence_spread:.2f}"
            if not math.isfinite(m.convergence_spread_se)
            else f"{m.convergence_spread:.2f} ± {m.convergence_spread_se:.2f}"
        )
        rows.append([m.label, spread, f"{first} ({m.convergence[first]:.1f})", f"{last} ({m.convergence[last]:.1f})"])
    if not rows:
        return None
    return Table(
        [
            "method",
            "spread of convergence epochs (std over tasks)",
            "first task to converge (epoch)",
            "last task to converge (epoch)",
        ],
        rows,
    )


def _report_blocks(summary: GridSummary, figures: list[FigureFile]) -> list[Block]:
    blocks = _header(summary)
    blocks.append(Heading("Results"))
    if summary.metric_names:
        blocks.append(_metric_table(summary))
    else:
        blocks.append(Paragraph("No complete run yet, so there are no metrics to report."))
    blocks.append(_summary_table(summary))
    convergence = None if summary.convergence_note else _convergence_table(summary)
    if convergence is not None:
        blocks += [Heading("Convergence"), convergence]
    elif summary.metric_names and summary.convergence_note:
        blocks += [Heading("Convergence"), Paragraph(summary.convergence_note)]
    if figures:
        blocks.append(Heading("Figures"))
    for figure in figures:
        blocks += [
            Heading(figure.title, 3),
            Image(f"figures/{figure.name}", figure.title, figure.png),
            Paragraph("How to read this: " + figure.how_to_read),
        ]
    blocks.append(Heading("Notes"))
    blocks += [Paragraph(note) for note in notes(summary)]
    return blocks


def _write_csv(summary: GridSummary, path: Path) -> Path:
    """One row per method x seed (complete or not), one per STL run, then one summary row per method."""
    names = summary.metric_names
    columns = (
        ["kind", "method_label", "method", "seed", "complete"]
        + names
        + [
            "delta_m",
            "delta_m_se",
            "mean_rank",
            "time_per_epoch_s",
            "step_time_median_ms",
            "step_time_p25_ms",
            "step_time_p75_ms",
            "step_cpu_time_median_ms",
            "relative_time",
            "peak_memory_mb",
            "n_seeds",
            "stl_source",
        ]
    )
    source = summary.reference.source
    rows = []
    for label, runs in summary.grid.runs.items():
        for run in runs:
            value, _ = run_delta_m(run, summary.reference, names, summary.directions)
            rows.append(
                {
                    "kind": "run",
                    "method_label": label,
                    "method": run.method,
                    "seed": run.seed,
                    "complete": run.complete,
                    **{n: run.metrics.get(n) for n in names},
                    "delta_m": value,
                    **_run_cost(run),
                    "stl_source": source,
                }
            )
    for run in summary.grid.stl:
        rows.append(
            {
                "kind": "stl",
                "method_label": "stl",
                "method": run.method,
                "seed": run.seed,
                "complete": run.complete,
                **{n: run.metrics.get(n) for n in names},
                **_run_cost(run),
            }
        )
    for m in summary.methods:
        rows.append(
            {
                "kind": "summary",
                "method_label": m.label,
                "method": m.method,
                **{n: m.metrics.get(n) for n in names},
                "delta_m": m.delta_m,
                "delta_m_se": m.delta_m_se,
                "mean_rank": m.mean_rank,
                "time_per_epoch_s": m.time_per_epoch_s,
                "step_time_median_ms": m.step_time_ms,
                "relative_time": m.relative_time,
                "peak_memory_mb": m.peak_memory_mb,
                "n_seeds": len(m.seeds),
                "stl_source": source,
            }
        )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, restval="")
        writer.writeheader()
        writer.writerows([{key: "" if value is None else value for key, value in row.items()} for row in rows])
    return path


def _run_cost(run: Run) -> dict[str, float | None]:
    """A run's cost columns; a memory figure of an untrusted (process-wide) measure stays empty."""
    timed = run.step_time
    return {
        "time_per_epoch_s": run.time_per_epoch_s,
        "step_time_median_ms": timed.median if timed else None,
        "step_time_p25_ms": timed.p25 if timed else None,
        "step_time_p75_ms": timed.p75 if timed else None,
        "step_cpu_time_median_ms": timed.cpu_median if timed else None,
        "peak_memory_mb": None if run.peak_memory_method in UNTRUSTED_MEMORY else run.peak_memory_mb,
    }


def _best(summary: GridSummary) -> str:
    scored = [m for m in summary.methods if m.delta_m is not None and math.isfinite(m.delta_m)]
    if not scored:
        return NA
    best = min(scored, key=lambda m: m.delta_m)
    return f"{best.label} ({best.delta_m:.2f})"


def _write_index(root: Path, summaries: list[GridSummary]) -> list[Path]:
    rows = []
    for summary in summaries:
        folder = summary.grid.path.relative_to(root).as_posix()
        runs = [run for group in summary.grid.runs.values() for run in group]
        rows.append(
            [
                Link(folder, f"{folder}/report.html"),
                Link("md", f"{folder}/report.md"),
                summary.grid.benchmark,
                summary.grid.protocol or NA,
                str(len(summary.grid.runs)),
                f"{sum(run.complete for run in runs)}/{len(runs)}",
                _best(summary),
            ]
        )
    blocks: list[Block] = [
        Heading("go4align reports", 1),
        Paragraph(
            f"{len(summaries)} grid(s) under {root.name}. Each report holds its tables, figures and "
            "notes; the last column is the lowest mean Delta-m in the grid (n/a without an STL "
            "reference)."
        ),
        Table(["grid", "markdown", "benchmark", "protocol", "methods", "complete runs", "best Delta-m %"], rows),
    ]
    paths = [root / "index.md", root / "index.html"]
    paths[0].write_text(to_markdown(blocks), encoding="utf-8")
    paths[1].write_text(to_html("go4align reports", blocks), encoding="utf-8")
    return paths
