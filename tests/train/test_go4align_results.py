"""What a GO4Align run records: options given as callables or objects, and the trace of Q and
the indicators."""

import json

import torch
from helpers.training import make_tiny

from go4align.train import MethodSpec, run_grid
from go4align.train.results import DETAIL_POINTS, Trace


def largest_apart(indicators, num_groups):
    """A custom clustering: the task with the largest indicator alone, the rest together."""
    labels = torch.zeros(indicators.shape[0], dtype=torch.int64)
    labels[indicators.argmax()] = num_groups - 1
    return labels


class Halves:
    """A callable object: recorded by its repr."""

    def __call__(self, indicators, num_groups):
        return largest_apart(indicators, num_groups)

    def __repr__(self):
        return "Halves()"


def test_run_grid_records_callable_and_object_options_by_name(tmp_path):
    specs = [
        MethodSpec("go4align", {"num_groups": 2, "clustering": largest_apart}, "go4align-function"),
        MethodSpec("go4align", {"num_groups": 2, "clustering": Halves()}, "go4align-object"),
    ]
    results = run_grid(make_tiny(epochs=1), specs, [0], tmp_path, progress=False)
    for label, recorded in (("go4align-function", "largest_apart"), ("go4align-object", "Halves()")):
        on_disk = json.loads((tmp_path / "runs" / label / "seed0" / "result.json").read_text())
        assert on_disk == results[label, 0] and on_disk["complete"]
        clustering = on_disk["method_options"]["clustering"]
        assert clustering == recorded if recorded == "Halves()" else clustering.endswith(".largest_apart")
    # resuming reads the same identity back: the completed runs are skipped, not refused
    again = run_grid(make_tiny(epochs=1), specs, [0], tmp_path, progress=False)
    assert again == results


def test_callables_are_named_without_memory_addresses():
    from go4align.weighting import GO4Align

    class Plain:
        def __call__(self, indicators, num_groups):
            return largest_apart(indicators, num_groups)

    text = repr(GO4Align(3, 2, clustering=Plain()))
    assert "0x" not in text and "Plain object" in text
    assert "largest_apart" in repr(GO4Align(3, 2, clustering=largest_apart))
    assert (
        MethodSpec("go4align", {"clustering": Plain()}, "x")
        .effective_options({})["clustering"]
        .endswith("Plain object")
    )


def test_go4align_traces_keep_q_and_indicators_small(tmp_path):
    benchmark = make_tiny(epochs=3, method_options={"go4align": {"num_groups": 2}})
    results = run_grid(benchmark, ["go4align:num_groups=2", "go4align-paper", "ls"], [0], tmp_path, progress=False)
    for label in ("go4align:num_groups=2", "go4align-paper"):
        trace = results[label, 0]["trace"]
        detail = trace["detail"]
        assert set(detail) == {"steps", "smooth_alignment", "indicators"}
        assert len(detail["smooth_alignment"]) == len(detail["indicators"]) == len(detail["steps"]) > 0
        assert all(abs(sum(q) - 1) < 1e-3 for q in detail["smooth_alignment"])
        assert set(detail["steps"]) <= set(trace["steps"])
        assert len(json.dumps(detail)) < 4000  # a few KB
    assert results["go4align-paper", 0]["method_options"] == {"num_groups": 2}  # the protocol's K for go4align
    assert results["ls", 0]["trace"]["detail"] is None


def test_trace_detail_is_subsampled_and_resumes():
    trace = Trace(total_steps=10_000, num_tasks=3)
    diagnostics = {
        "losses": torch.tensor([1.0, 2.0, 3.0]),
        "weights": torch.tensor([0.123456789, 1.0, 2.0]),
        "groups": torch.tensor([0, 1, 1]),
        "smooth_alignment": torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64),
        "indicators": torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64),
    }
    for step in range(6_000):
        trace.record(step, diagnostics)
    copy = Trace(total_steps=10_000, num_tasks=3)
    copy.load_state_dict(trace.state_dict())
    for step in range(6_000, 10_000):
        trace.record(step, diagnostics)
        copy.record(step, diagnostics)
    assert copy.to_json() == trace.to_json()
    out = trace.to_json()
    assert len(out["detail"]["steps"]) <= DETAIL_POINTS and len(out["steps"]) == 500
    assert out["weights"][0] == [0.1235, 1.0, 2.0] and out["groups"][0] == [0, 1, 1]
