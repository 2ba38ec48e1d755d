"""A report says what it cannot say: no invented columns, no artifact numbers, no dead links."""

import json
import re
from pathlib import Path

import pytest
import torch
from helpers.report import RUNS, m, result, write_grid
from torch import nn

from go4align.benchmarks import Benchmark, HardSharing, Metric, Protocol, SampleMean, Task, task_losses
from go4align.benchmarks.api import TensorTaskDataset
from go4align.report import load_grid, summarise, write_report, writer
from go4align.train import run_grid


@pytest.fixture
def no_figures(monkeypatch):
    monkeypatch.setattr(writer, "draw_figures", lambda summary: [])


def report_of(grid, **options):
    write_report(grid, **options)
    return (grid / "report.md").read_text()


def edit_grid(grid, **changes):
    spec = json.loads((grid / "grid.json").read_text())
    spec.update(changes)
    (grid / "grid.json").write_text(json.dumps(spec))


def short_runs(epochs, curves=None):
    """The standard runs cut to ``epochs`` epochs (every task still falling at the last one)."""
    falling = curves or {task: [1.0 / (e + 1) for e in range(epochs)] for task in ("a", "b", "c")}
    return [
        dict(
            run,
            epochs=[
                dict(e, train_losses={t: falling[t][i] for t in falling}) for i, e in enumerate(run["epochs"][:epochs])
            ],
        )
        for run in RUNS
    ]


def test_cpu_memory_reads_not_measured_and_process_wide_figures_are_not_shown(tmp_path, no_figures):
    runs = [dict(run, peak_memory_mb=None, peak_memory_method="not_measured_on_cpu") for run in RUNS]
    runs[0] = dict(runs[0], peak_memory_mb=0.0, peak_memory_method="cpu_rss_sampled_per_step")  # an old 0 MB
    markdown = report_of(write_grid(tmp_path, runs=runs))
    rows = [line for line in markdown.splitlines() if line.startswith("| ls |") and "IQR" in line]
    assert rows and all("| not measured |" in row for row in rows)
    assert "| 0 |" not in markdown
    assert "cpu_rss_sampled_per_step (process-wide, so depending on the runs before; the STL references" in markdown
    assert 'stored under results/ carry it) read "not measured"' in markdown


@pytest.mark.parametrize("epochs", [1, 3])
def test_a_short_budget_gets_a_sentence_not_empty_or_zero_convergence(tmp_path, epochs):
    grid = write_grid(tmp_path, runs=short_runs(epochs))
    summary = summarise(load_grid(grid))
    assert summary.epochs_recorded == epochs and "needs at least 5" in summary.convergence_note
    markdown = report_of(grid)
    convergence = markdown.split("## Convergence")[1].split("##")[0]
    assert "has no convergence table or figure" in convergence and "|" not in convergence
    figures = {path.name for path in (grid / "figures").glob("*.png")}
    assert "convergence_spread.png" not in figures
    assert ("task_progress.png" in figures) == (epochs >= 2)  # one point per curve shows nothing


def test_no_task_settling_before_the_last_epoch_means_the_budget_is_too_short(tmp_path, no_figures):
    grid = write_grid(tmp_path, runs=short_runs(5))
    note = summarise(load_grid(grid)).convergence_note
    assert note.startswith("No task's training loss settled") and "last of the 5 epochs" in note
    # The standard curves: task c settles at epoch 2 of 5, so the table stays.
    assert summarise(load_grid(write_grid(tmp_path / "ok"))).convergence_note is None


def test_paper_columns_appear_only_for_a_benchmark_with_published_numbers(tmp_path, no_figures):
    markdown = report_of(write_grid(tmp_path / "toy"))
    assert "paper Delta-m" not in markdown and "no paper columns" in markdown
    runs = [dict(result("go4align", "go4align", seed, m(0.5, 2.0, 4.0)), benchmark="nyuv2") for seed in (0, 1)]
    grid = write_grid(tmp_path / "nyuv2", runs=runs, methods=["go4align"])
    edit_grid(grid, benchmark="nyuv2")
    markdown = report_of(grid)
    assert "| paper Delta-m % |" in markdown and "| paper time rel. to LS |" in markdown
    assert "| -6.08 |" in markdown and "Table 9" in markdown


def test_delta_m_note_counts_metrics_per_task(tmp_path, no_figures):
    markdown = report_of(write_grid(tmp_path / "toy"))
    assert "a task reported with two metrics weighs twice" in markdown
    # Metrics named after their task: "a" has two metrics, "b" one, so they do not weigh equally.
    directions = {"a_acc": "higher", "a_err": "lower", "b_err": "lower"}
    runs = [
        dict(
            run,
            metrics={"a_acc": 0.5, "a_err": 1.0, "b_err": 2.0},
            directions=directions,
            tasks=["a", "b"],
            stl_reference=None,
            epochs=run["epochs"][:1],
        )
        for run in RUNS[:2]
    ]
    markdown = report_of(write_grid(tmp_path / "named", runs=runs, methods=["ls"]))
    assert "different numbers of metrics (a 2, b 1)" in markdown


def test_synthetic_delta_m_comes_with_its_noise_floor_and_reason(tmp_path, no_figures):
    runs = [dict(run, benchmark="synthetic") for run in RUNS]
    grid = write_grid(tmp_path, runs=runs)
    edit_grid(
        grid,
        benchmark="synthetic",
        benchmark_options={"scales": [1.0, 10.0], "noise": 0.1, "hidden_dim": 2, "num_groups": 3},
    )
    markdown = report_of(grid)
    assert "(s_g from 1 to 10)" in markdown and "(s_g × noise)² = 0.01 to 1 under every task's" in markdown
    assert "the single-task reference's MSEs range from 0.5 to 4" in markdown  # conftest's stored reference
    assert "the tasks with the smallest reference MSE dominate it" in markdown
    assert "hidden_dim = 2 shared unit(s), fewer than the 3 planted groups" in markdown and "not with 0" in markdown


def test_the_header_shows_every_invocation_as_typed(tmp_path, no_figures):
    grid = write_grid(tmp_path)
    invocations = [
        {
            "command": f"go4align bench --benchmark toy3 --methods {method} --out runs/t",
            "time": f"2025-01-0{day}T00:00:00",
            "provenance": {"go4align_version": version, "torch": "2.13.0"},
        }
        for method, day, version in (("ls", 1, "0.1.0"), ("famo", 2, "0.2.0"))
    ]
    provenance = dict(
        invocations[0]["provenance"],
        git_commit="0123456789abcdef",
        git_dirty=True,
        device="cpu",
        cpu="Some CPU",
        threads=1,
    )
    edit_grid(grid, invocations=invocations, provenance=provenance)
    markdown = report_of(grid)
    assert (
        "Ran with go4align 0.1.0 (commit 0123456789ab, uncommitted changes), torch 2.13.0 on cpu, Some CPU, "
        "1 thread(s). Started 2025-01-01T00:00:00."
    ) in markdown
    assert (
        "Commands (2 invocations, oldest first): go4align bench --benchmark toy3 --methods ls --out runs/t "
        "(2025-01-01T00:00:00); go4align bench --benchmark toy3 --methods famo --out runs/t "
        "(2025-01-02T00:00:00)."
    ) in markdown
    # A grid resumed under other code says so.
    assert "differ in go4align_version" in markdown and "go4align_version=0.2.0: invocation 2" in markdown


def test_an_old_command_loses_its_absolute_paths(tmp_path, no_figures):
    grid = write_grid(tmp_path)
    edit_grid(
        grid,
        command=[
            "/home/me/venv/bin/go4align",
            "bench",
            "--config",
            "configs/a.toml",
            "--out",
            "/home/me/runs/a",
            "--data-dir=/data/x",
            "--quiet",
        ],
    )
    markdown = report_of(grid)
    shown = "go4align bench --config configs/a.toml --out .../a --data-dir=.../x --quiet"
    assert f"Command (absolute paths left out): {shown}." in markdown
    assert not re.search(r"(^|\s)/(home|data)", markdown)


def test_without_figures_nothing_links_a_figure(tmp_path):
    grid = write_grid(tmp_path)
    write_report(grid)  # an earlier report with figures
    markdown = report_of(grid, figures=False)
    assert "![" not in markdown and "figures/" not in markdown and not (grid / "figures").exists()
    assert "<img" not in (grid / "report.html").read_text()


def test_every_link_of_a_report_is_a_file_it_wrote(tmp_path):
    grid = write_grid(tmp_path)
    paths = write_report(grid)
    links = re.findall(r"\]\(([^)]+)\)", (grid / "report.md").read_text())
    assert links and all((grid / link).resolve() in {p.resolve() for p in paths} for link in links)


def test_last_k_above_the_recorded_epochs_is_said(tmp_path, no_figures):
    runs = [dict(run, reporting_rule="last_k_mean:10") for run in RUNS]
    markdown = report_of(write_grid(tmp_path, runs=runs))
    assert "these runs have 5, so their metrics are the mean over all 5 epochs" in markdown


def test_results_without_step_times_read_na_and_say_why(tmp_path, no_figures):
    runs = [dict(run, step_time_ms=None) if run["method"] == "famo" else run for run in RUNS]
    markdown = report_of(write_grid(tmp_path, runs=runs))
    assert "| famo | -6.67 (1 seed) | n/a | n/a |" in markdown
    assert "No step times in the results of famo" in markdown


def tiny(epochs):
    generator = torch.Generator().manual_seed(0)
    x = {split: torch.randn(n, 3, generator=generator) for split, n in (("train", 24), ("test", 8))}
    data = {split: TensorTaskDataset(v, {"a": v.sum(1), "b": v[:, 0]}) for split, v in x.items()}
    squared = {"a_mse": ("a", lambda p, t: (p - t) ** 2), "b_mse": ("b", lambda p, t: (p - t) ** 2)}
    return Benchmark(
        name="tiny",
        tasks=[Task("a", Metric("a_mse", False)), Task("b", Metric("b_mse", False))],
        datasets=data.__getitem__,
        splits=("train", "test"),
        model=lambda seed: HardSharing(
            nn.Sequential(nn.Linear(3, 4), nn.Tanh()), {t: nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)) for t in "ab"}
        ),
        losses=task_losses({"a": nn.functional.mse_loss, "b": nn.functional.mse_loss}),
        metrics=lambda: SampleMean(squared),
        protocol=Protocol(epochs=epochs, batch_size=4, lr=1e-2, reporting_rule="last_k_mean:1"),
    )


def test_a_trained_grid_reports_step_times_and_no_cpu_memory(tmp_path, no_figures):
    run_grid(tiny(2), ["ls", "go4align", "stl"], [0], tmp_path, progress=False)
    summary = summarise(load_grid(tmp_path))
    ls, go4align = summary.methods
    assert ls.step_time_ms > 0 and go4align.relative_time == pytest.approx(go4align.step_time_ms / ls.step_time_ms)
    assert ls.peak_memory_mb is None and summary.reference.source == "stl-runs"
    markdown = report_of(tmp_path)
    assert re.search(r"\| ls \| -?[\d.]+ \(1 seed\) \| [\d.]+ \(IQR [\d.]+\) \| 1\.00 \| not measured \|", markdown)
    assert str(Path(tmp_path)) not in markdown


def test_a_busy_machine_is_named_when_wall_time_parts_from_cpu_time(tmp_path, no_figures):
    def cpu(run):  # famo's steps took 3x their CPU time on the wall clock, the others 1x
        timed = run["step_time_ms"]
        return dict(timed, cpu_median=timed["median"] / (3 if run["method"] == "famo" else 1))

    runs = [dict(run, step_time_ms=cpu(run)) for run in RUNS]
    markdown = report_of(write_grid(tmp_path, runs=runs))
    assert "The machine was busy: the wall-clock step times of famo exceed the CPU time" in markdown
    assert "machine was busy" not in report_of(write_grid(tmp_path / "quiet"))


def test_skipped_methods_read_as_not_run_and_not_as_missing(tmp_path, no_figures):
    grid = write_grid(tmp_path)
    edit_grid(grid, methods=json.loads((grid / "grid.json").read_text())["methods"] + ["nash-mtl"])
    (grid / "skipped.json").write_text(json.dumps({"nash-mtl": "needs cvxpy: pip install 'go4align[nashmtl]'"}))
    markdown = report_of(grid)
    assert "Not run: nash-mtl: needs cvxpy: pip install 'go4align[nashmtl]'." in markdown
    assert "no results yet" not in markdown


def test_a_damaged_skipped_json_is_named(tmp_path):
    grid = write_grid(tmp_path)
    (grid / "skipped.json").write_text('{"nash-mtl": ')
    with pytest.raises(ValueError, match=r"skipped\.json: not valid JSON"):
        load_grid(grid)
