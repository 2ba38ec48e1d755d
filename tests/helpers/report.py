"""For the report tests: small fake run directories in the trainer's layout, with numbers simple
enough to check by hand.

Benchmark "toy3": tasks a, b, c with metrics acc_a (higher), err_b and err_c (lower).
Published STL reference stored in the results: acc_a 0.5, err_b 2.0, err_c 4.0.
"""

from __future__ import annotations

import json
from pathlib import Path

BENCHMARK = "toy3"
TASKS = ["a", "b", "c"]
DIRECTIONS = {"acc_a": "higher", "err_b": "lower", "err_c": "lower"}
PUBLISHED_STL = {"acc_a": 0.5, "err_b": 2.0, "err_c": 4.0}
# Training-loss curves over epochs 1..5. Convergence (within 5% of the total change of the final
# value, and staying there): a at epoch 4, b at epoch 5, c at epoch 2.
CURVES = {"a": [1.0, 0.5, 0.3, 0.22, 0.2], "b": [2.0, 1.9, 1.8, 1.7, 1.0], "c": [3.0, 1.0, 1.0, 1.0, 1.0]}
EVEN_CURVES = {task: [1.0, 0.5, 0.3, 0.2, 0.2] for task in TASKS}
GROUP_TRACE = {
    "steps": [0, 10, 20, 30],
    "losses": [[1.0, 2.0, 3.0]] * 4,
    "weights": [[1.5, 0.5, 0.5], [1.5, 1.5, 0.5], [0.5, 1.5, 1.5], [0.5, 1.5, 1.5]],
    "groups": [[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 1, 1]],
    "group_weights": [[0.5, 1.5]] * 4,
}


def step_time(median_ms, iqr_ms=2.0):
    return {
        "median": median_ms,
        "p25": median_ms - iqr_ms / 2,
        "p75": median_ms + iqr_ms / 2,
        "p10": median_ms - iqr_ms,
        "p90": median_ms + iqr_ms,
        "samples": 40,
        "first_sampled_step": 10,
        "stride": 1,
        "clock": "perf_counter",
    }


def result(
    method,
    label,
    seed,
    metrics,
    *,
    options=None,
    complete=True,
    time_s=10.0,
    memory=100.0,
    stl_reference=PUBLISHED_STL,
    curves=EVEN_CURVES,
    trace=None,
):
    """A result.json whose median step time in ms equals its epoch time in s (so ratios match)."""
    epochs = [
        {
            "epoch": e + 1,
            "time_s": time_s,
            "train_losses": {t: curves[t][e] for t in TASKS},
            "val": None,
            "test": metrics,
        }
        for e in range(5)
    ]
    return {
        "benchmark": BENCHMARK,
        "method": method,
        "method_label": label,
        "method_options": options or {},
        "seed": seed,
        "tasks": TASKS,
        "metrics": metrics,
        "directions": DIRECTIONS,
        "reporting_rule": "last epoch",
        "stl_reference": stl_reference,
        "epochs": epochs,
        "time_per_epoch_s": time_s,
        "step_time_ms": step_time(time_s),
        "peak_memory_mb": memory,
        "peak_memory_method": "cuda_max_memory_allocated",
        "trace": trace
        or {"steps": [0], "losses": [[1, 1, 1]], "weights": [[1, 1, 1]], "groups": None, "group_weights": None},
        "complete": complete,
    }


def m(acc_a, err_b, err_c):
    return {"acc_a": acc_a, "err_b": err_b, "err_c": err_c}


# Per seed Delta-m against PUBLISHED_STL, by hand (mean of -d(acc)/0.5, d(err_b)/2, d(err_c)/4):
#   ls        seed 0:   0,    0,    0   ->   0.0;   seed 1: -0.1, -0.1, +0.1 -> -3.333
#   go4align K=2 seed 0: -0.2, -0.2, -0.1 -> -16.667; seed 1: -0.2, -0.2, 0 -> -13.333
#   go4align K=1 seed 0:  0,   +0.1,  0   ->  3.333;  seed 1: +0.1, 0, 0    ->  3.333
#   famo      seed 0: -0.1, -0.05, -0.05 -> -6.667;   seed 1 incomplete (excluded)
RUNS = [
    result("ls", "ls", 0, m(0.50, 2.0, 4.0), time_s=10.0, curves=CURVES),
    result("ls", "ls", 1, m(0.55, 1.8, 4.4), time_s=12.0, curves=CURVES),
    result(
        "go4align",
        "go4align:num_groups=2",
        0,
        m(0.60, 1.6, 3.6),
        options={"num_groups": 2},
        time_s=11.0,
        memory=120.0,
        trace=GROUP_TRACE,
    ),
    result(
        "go4align",
        "go4align:num_groups=2",
        1,
        m(0.60, 1.6, 4.0),
        options={"num_groups": 2},
        time_s=13.0,
        memory=140.0,
        trace=GROUP_TRACE,
    ),
    result("go4align", "go4align:num_groups=1", 0, m(0.50, 2.2, 4.0), options={"num_groups": 1}, time_s=11.0),
    result("go4align", "go4align:num_groups=1", 1, m(0.45, 2.0, 4.0), options={"num_groups": 1}, time_s=11.0),
    result("famo", "famo", 0, m(0.55, 1.9, 3.8), time_s=15.0),
    result("famo", "famo", 1, m(0.10, 9.0, 9.0), time_s=15.0, complete=False),
]
METHODS = ["ls", "go4align:num_groups=1", "go4align:num_groups=2", "famo"]


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_grid(root: Path, runs=RUNS, stl_runs=(), methods=METHODS, seeds=(0, 1)) -> Path:
    write_json(
        root / "grid.json",
        {
            "benchmark": BENCHMARK,
            "protocol": "hand",
            "methods": list(methods),
            "seeds": list(seeds),
            "command": "go4align bench toy3",
            "go4align_version": "0.1.0",
            "start_time": "2025-01-01T00:00:00",
        },
    )
    for run in runs:
        write_json(root / "runs" / run["method_label"] / f"seed{run['seed']}" / "result.json", run)
    for run in stl_runs:
        write_json(root / "runs" / "stl" / f"seed{run['seed']}" / "result.json", run)
    return root


# STL runs trained by the harness, mean acc_a 0.4, err_b 2.0, err_c 4.0 (differs from PUBLISHED_STL).
STL_RUNS = [
    result("stl", "stl", 0, m(0.3, 2.0, 3.0), stl_reference=None),
    result("stl", "stl", 1, m(0.5, 2.0, 5.0), stl_reference=None),
]
