"""Evidence runner for GO4Align on the synthetic benchmark (E1 and E3 of docs/results.md).

E1, budget sweep: designs A, A' and C (20 tasks in 4 planted groups, hidden_dim 4), budgets
20, 50, 100 and 300 epochs; methods LS, SI, FAMO, GO4Align as printed (``go4align-paper``, K = 4,
beta = 1e-4), the library's default (``go4align``), the default with beta = 0, K = M = 20, and
the authors' random-init clustering; 5 seeds; STL (3 seeds) at every budget as the reference.

E3, choosing K: Delta-m against K on the long budget for designs A and C, with the exact
clustering and with the authors' random-init one.

A grid (a design at a budget) lives in ``OUT/grids/<design>/e<epochs>/``, shared by E1 and E3 so
that STL and the common arms run once; each is filled by ``go4align.train.run_grid`` calls with one
intra-op thread, and resumes where it stopped (run the same command again); ``--jobs 2`` runs two
grids at once in separate processes. Then ``OUT/<exp>/summary.md`` gets the tables of the
experiment's methods: Delta-m (%) against the mean STL of the same budget,
mean +- standard error over seeds, the paired difference (same seed) against LS, SI and FAMO
with its standard error and the number of seeds where GO4Align is lower, and the spread over
the 4 planted groups of log10(group test MSE / STL's), which says how evenly groups progressed.

Nothing here is selected on test metrics: the reported numbers follow the protocol's rule (the
mean of the last 5 epochs' test metrics); the options compared are fixed in advance.

    PYTHONPATH=src python experiments/evidence.py e1 --out results/evidence --jobs 2
    PYTHONPATH=src python experiments/evidence.py e3 --out results/evidence   # after e1: shares its grids
    PYTHONPATH=src python experiments/evidence.py summary --out results/evidence   # tables only
    # a quick check of the whole path (2 epochs, 1 seed):
    PYTHONPATH=src python experiments/evidence.py e1 --out /tmp/evidence --budgets 2 --seeds 0 --stl-seeds 0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from go4align.benchmarks import get_benchmark
from go4align.benchmarks.api import Benchmark
from go4align.metrics import convergence_epoch, delta_m
from go4align.result_file import RESULT_FILE, read_result

#: The planted problem shared by every design (docs/results.md): 20 tasks in 4 groups of 5, conflict
#: 0.5, and a shared layer as wide as the number of groups, so that methods can be told apart.
BASE = {"num_tasks": 20, "num_groups": 4, "input_dim": 16, "hidden_dim": 4, "conflict": 0.5, "noise": 0.1}
#: A: group target scales 1..10 (losses 1..100x); A': A with another data seed; C: scales
#: 1..100 (losses 1..1e4x), where Eq. 6 on absolute losses is at its worst.
DESIGNS = {
    "A": {"data_seed": 0},
    "A'": {"data_seed": 1},
    "C": {"data_seed": 0, "scales": np.logspace(0, 2, 4).tolist()},
}
SLUGS = {"A": "A", "A'": "A-prime", "C": "C"}
BUDGETS = (20, 50, 100, 300)
SEEDS = (0, 1, 2, 3, 4)
STL_SEEDS = (0, 1, 2)
BASELINES = ("ls", "si", "famo")
E1_METHODS = (
    *BASELINES,
    "go4align-paper",
    "go4align",
    "go4align:beta=0",
    "go4align:num_groups=20",
    "go4align:clustering=kmeans-random",
)
E3_GROUPS = (1, 2, 3, 4, 5, 6, 8, 12, 20)
E3_DESIGNS = ("A", "C")
E3_BUDGET = 300


def design_benchmark(design: str, epochs: int) -> Benchmark:
    """The synthetic benchmark of ``design`` trained for ``epochs`` (Adam 1e-2, batch 100, the
    mean of the last 5 epochs' test metrics, or of all when fewer ran)."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    benchmark = get_benchmark("synthetic", **BASE, **DESIGNS[design])
    return benchmark.with_protocol(epochs=epochs, reporting_rule=f"last_k_mean:{min(5, epochs)}")


def _last_mean(result: dict, split: str) -> dict[str, float]:
    """The split's metrics averaged over the epochs of the reporting rule (last 5 at most)."""
    k = int(result["reporting_rule"].split(":")[1]) if result["reporting_rule"].startswith("last_k") else 1
    epochs = [e[split] for e in result["epochs"][-k:]]
    return {name: statistics.fmean(e[name] for e in epochs) for name in epochs[0]}


def split_delta_m(result: dict, reference: dict | Sequence[dict], split: str = "test") -> float:
    """Delta-m (%) of a run's ``split`` metrics (mean of the reporting rule's epochs) against
    the STL result(s) ``reference`` (their mean when several)."""
    references = [reference] if isinstance(reference, dict) else list(reference)
    stl = [_last_mean(r, split) for r in references]
    base = {name: statistics.fmean(s[name] for s in stl) for name in stl[0]}
    return delta_m(_last_mean(result, split), base, result["directions"])


def convergence_spread(result: dict) -> float:
    """The convergence difference (the paper's Fig. 2): max - min over tasks of the epoch from
    which each task's training loss stays within 5% of the way to its final value."""
    names = list(result["epochs"][0]["train_losses"])
    epochs = [e["epoch"] for e in result["epochs"]]
    converged = [convergence_epoch([e["train_losses"][n] for e in result["epochs"]], epochs) for n in names]
    return max(converged) - min(converged)


def group_spread(result: dict, references: Sequence[dict], planted: Sequence[int]) -> float:
    """Spread (max - min) over planted groups of log10(group test MSE / STL's group test MSE)."""
    metrics = _last_mean(result, "test")
    stl = [_last_mean(r, "test") for r in references]
    names = list(metrics)
    ratios = []
    for group in sorted(set(planted)):
        members = [names[m] for m, g in enumerate(planted) if g == group]
        ours = statistics.fmean(metrics[n] for n in members)
        theirs = statistics.fmean(statistics.fmean(s[n] for s in stl) for n in members)
        ratios.append(math.log10(ours / theirs))
    return max(ratios) - min(ratios)


# -- running ----------------------------------------------------------------------------------


def _grid_dir(out: Path, design: str, epochs: int) -> Path:
    return out / "grids" / SLUGS[design] / f"e{epochs}"


def _run_one(job: tuple) -> str:
    """One grid: the methods with ``seeds``, then STL with ``stl_seeds``, one thread."""
    out, design, epochs, methods, seeds, stl_seeds = job
    from go4align.train import run_grid

    torch.set_num_threads(1)
    benchmark = design_benchmark(design, epochs)
    directory = _grid_dir(Path(out), design, epochs)
    run_grid(benchmark, ["stl"], list(stl_seeds), directory, progress=False)
    run_grid(benchmark, list(methods), list(seeds), directory, progress=False)
    return str(directory)


def e3_methods(num_tasks: int = BASE["num_tasks"]) -> list[str]:
    methods = ["ls"]
    for k in E3_GROUPS:
        if k <= num_tasks:
            methods += [f"go4align:num_groups={k}", f"go4align:num_groups={k},clustering=kmeans-random"]
    return methods


def methods_of(experiment: str) -> list[str]:
    return list(E1_METHODS) if experiment == "E1" else e3_methods()


def jobs_of(args: argparse.Namespace, experiment: str) -> list[tuple]:
    methods = tuple(methods_of(experiment))
    return [
        (args.out, design, epochs, methods, tuple(args.seeds), tuple(args.stl_seeds))
        for design in args.designs
        for epochs in args.budgets
    ]


def run_jobs(jobs: list[tuple], parallel: int) -> None:
    if parallel == 1:
        for job in jobs:
            print("done", _run_one(job), flush=True)
        return
    with concurrent.futures.ProcessPoolExecutor(parallel) as pool:
        for directory in pool.map(_run_one, jobs):
            print("done", directory, flush=True)


# -- the summary --------------------------------------------------------------------------------


def _read_results(directory: Path) -> dict[str, dict[int, dict]]:
    """Complete results of a grid directory by method label and seed."""
    results: dict[str, dict[int, dict]] = {}
    for path in sorted((directory / "runs").glob(f"*/seed*/{RESULT_FILE}")):
        result = read_result(path)
        if result.get("complete"):
            results.setdefault(result["method_label"], {})[int(result["seed"])] = result
    return results


def mean_se(values: Sequence[float]) -> str:
    """``mean ± s.e.`` of the values (the mean alone for one, ``-`` for none)."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values) / math.sqrt(len(values)):.2f}"


def paired(ours: dict[int, float], theirs: dict[int, float]) -> list[float]:
    """``ours - theirs`` on each seed both have, in seed order."""
    return [ours[s] - theirs[s] for s in sorted(set(ours) & set(theirs))]


def paired_difference(ours: dict[int, float], theirs: dict[int, float]) -> str:
    """``ours - theirs`` over the seeds both have, as ``mean ± s.e. (lower/seeds)``."""
    differences = paired(ours, theirs)
    if not differences:
        return "-"
    lower = sum(d < 0 for d in differences)
    return f"{mean_se(differences)} ({lower}/{len(differences)})"


def grid_directories(out: Path) -> list[tuple[str, Path]]:
    """``(design, grid directory)`` of every budget run under ``out``, designs in order, budgets
    increasing."""
    return [
        (design, directory)
        for design, slug in SLUGS.items()
        for directory in sorted((out / "grids" / slug).glob("e*"), key=lambda p: int(p.name[1:]))
    ]


def _scores(directory: Path, design: str) -> tuple[dict, dict, list]:
    """Delta-m by method and seed, the results, and the STL results of one grid."""
    results = _read_results(directory)
    stl = list(results.pop("stl", {}).values())
    scores = (
        {label: {s: split_delta_m(r, stl) for s, r in runs.items()} for label, runs in results.items()} if stl else {}
    )
    return scores, results, stl


def grid_table(directory: Path, design: str, methods: Sequence[str]) -> list[str]:
    """The markdown rows of one grid: Delta-m and paired differences per method of ``methods``."""
    from go4align.benchmarks.synthetic import planted_groups

    scores, results, stl = _scores(directory, design)
    if not stl:
        return [f"(no complete STL run in {directory})"]
    groups = planted_groups(get_benchmark("synthetic", **BASE, **DESIGNS[design])).tolist()
    lines = [
        f"STL seeds {len(stl)}. Delta-m (%) vs mean STL, mean ± s.e. over seeds; paired = method − baseline "
        "on the same seed, ± s.e. (seeds where the method is lower / seeds).",
        "",
        "| method | seeds | Delta-m | − LS | − SI | − FAMO | group spread | convergence spread |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in methods:
        if label not in scores:
            lines.append(f"| `{label}` | 0 | - | - | - | - | - | - |")
            continue
        by_seed = scores[label]
        cells = [paired_difference(by_seed, scores[b]) if b in scores and b != label else "-" for b in BASELINES]
        spread = [group_spread(r, stl, groups) for r in results[label].values()]
        converged = [float(convergence_spread(r)) for r in results[label].values()]
        lines.append(
            f"| `{label}` | {len(by_seed)} | {mean_se(list(by_seed.values()))} | {' | '.join(cells)} | "
            f"{mean_se(spread)} | {mean_se(converged)} |"
        )
    return lines


def overview(out: Path) -> list[str]:
    """E1 at a glance: mean Delta-m of the main arms per design and budget, the lowest in bold."""
    arms = ["ls", "si", "famo", "go4align-paper", "go4align"]
    lines = ["## Overview: mean Delta-m (%) per design and budget (lowest in bold)", ""]
    lines += ["| design | epochs | " + " | ".join(f"`{a}`" for a in arms) + " |", "|---|---|" + "---|" * len(arms)]
    for design, directory in grid_directories(out):
        scores, _, _ = _scores(directory, design)
        means = {a: statistics.fmean(scores[a].values()) for a in arms if scores.get(a)}
        best = min(means.values(), default=None)
        cells = [
            "-" if a not in means else (f"**{means[a]:.2f}**" if means[a] == best else f"{means[a]:.2f}") for a in arms
        ]
        lines.append(f"| {design} | {directory.name[1:]} | " + " | ".join(cells) + " |")
    return lines


def clearly_below(ours: dict[int, float], theirs: dict[int, float]) -> bool:
    """E1's test for one pair: over the seeds both have (two at least), ``ours - theirs`` is
    below zero by more than two standard errors of the paired differences."""
    differences = paired(ours, theirs)
    if len(differences) < 2:
        return False
    return statistics.fmean(differences) + 2 * statistics.stdev(differences) / math.sqrt(len(differences)) < 0


def criterion(out: Path) -> list[str]:
    """E1's test per design and budget: is each GO4Align arm below LS, SI and FAMO by more than
    two paired standard errors (evidence.md's criterion, applied where every method converged)?"""
    arms = ["go4align", "go4align-paper"]
    lines = [
        "## E1's test: below LS, SI and FAMO by more than 2 paired s.e.",
        "",
        "Paired differences (same seed) of each GO4Align arm against each baseline; `yes` where the mean "
        "plus two standard errors is below zero against all three. The test counts at the budgets where "
        "every method has converged (see the tables below).",
        "",
        "| design | epochs | arm | − LS | − SI | − FAMO | below all three |",
        "|---|---|---|---|---|---|---|",
    ]
    for design, directory in grid_directories(out):
        scores, _, _ = _scores(directory, design)
        for arm in arms:
            if not scores.get(arm):
                continue
            cells = [paired_difference(scores[arm], scores.get(b, {})) for b in BASELINES]
            below = all(clearly_below(scores[arm], scores.get(b, {})) for b in BASELINES)
            lines.append(
                f"| {design} | {directory.name[1:]} | `{arm}` | {' | '.join(cells)} | {'yes' if below else 'no'} |"
            )
    return lines


def k_table(directory: Path, design: str) -> list[str]:
    """E3's rows: Delta-m against K, exact and the authors' random-init clustering, paired."""
    scores, _, stl = _scores(directory, design)
    if not stl:
        return [f"(no complete STL run in {directory})"]
    lines = [
        f"STL seeds {len(stl)}. Delta-m (%) vs mean STL, mean ± s.e.; paired = authors' − exact, same seed.",
        "",
        "| K | exact | authors' random-init | authors' − exact |",
        "|---|---|---|---|",
    ]
    for k in E3_GROUPS:
        exact = scores.get(f"go4align:num_groups={k}", {})
        authors = scores.get(f"go4align:num_groups={k},clustering=kmeans-random", {})
        if exact or authors:
            lines.append(
                f"| {k} | {mean_se(list(exact.values()))} | {mean_se(list(authors.values()))} | {paired_difference(authors, exact)} |"
            )
    ls = scores.get("ls", {})
    lines.append(f"| LS | {mean_se(list(ls.values()))} | | |")
    return lines


def write_summary(out: Path, experiment: str) -> Path:
    """``OUT/<experiment>/summary.md`` from every grid found for the experiment's methods, with
    the commands that ran it (``OUT/<experiment>/commands.txt``)."""
    commands = out / experiment / "commands.txt"
    typed = commands.read_text().splitlines() if commands.exists() else []
    lines = [
        f"# {experiment}: GO4Align on the synthetic designs",
        "",
        "Commands (in order; each resumes the grids of the one before):",
        "",
        *[f"    {line}" for line in typed],
        "",
        "Reported metrics: the mean of the last 5 epochs' test MSEs (the protocol's rule; no selection).",
        "Group spread: max − min over the 4 planted groups of log10(group test MSE / STL's), lower = more even.",
        "Convergence spread: max − min over tasks of the epoch each task's training loss converges (Fig. 2).",
        "",
    ]
    if experiment == "E1":
        lines += overview(out) + [""] + criterion(out) + [""]
    for design, directory in grid_directories(out):
        if experiment == "E3":  # a grid of E3's K sweep, not E1's one K = M arm
            if sum(k.startswith("go4align:num_groups=") for k in _read_results(directory)) < 2:
                continue
            lines += [f"## design {design}, {directory.name[1:]} epochs: Delta-m against K", ""]
            lines += k_table(directory, design) + [""]
        else:
            lines += [f"## design {design}, {directory.name[1:]} epochs", ""]
            lines += grid_table(directory, design, methods_of(experiment)) + [""]
    path = out / experiment / "summary.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from error
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected ints >= 0, got {text!r}")
    return values


def _designs(text: str) -> list[str]:
    designs = text.split(",")
    bad = [d for d in designs if d not in DESIGNS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown design(s) {bad}; choose from {sorted(DESIGNS)}")
    return designs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="GO4Align evidence on the synthetic benchmark (E1, E3).")
    p.add_argument("experiment", choices=("e1", "e3", "summary"))
    p.add_argument("--out", type=Path, default=Path("results/evidence"))
    p.add_argument("--designs", type=_designs, default=None, help="comma-separated, of A, A', C")
    p.add_argument("--budgets", type=_ints, default=None, help="epochs, comma-separated")
    p.add_argument("--seeds", type=_ints, default=list(SEEDS))
    p.add_argument("--stl-seeds", type=_ints, default=list(STL_SEEDS))
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="grids run at once, one process each")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    command = "PYTHONPATH=src python experiments/evidence.py " + shlex.join(argv)
    if args.experiment == "summary":
        for experiment in ("E1", "E3"):
            if (args.out / experiment).exists():
                print(write_summary(args.out, experiment))
        return 0
    experiment = args.experiment.upper()
    args.designs = args.designs or (list(DESIGNS) if experiment == "E1" else list(E3_DESIGNS))
    args.budgets = args.budgets or (list(BUDGETS) if experiment == "E1" else [E3_BUDGET])
    (args.out / experiment).mkdir(parents=True, exist_ok=True)
    with open(args.out / experiment / "commands.txt", "a") as handle:
        handle.write(command + "\n")
    run_jobs(jobs_of(args, experiment), args.jobs)
    print(write_summary(args.out, experiment))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
