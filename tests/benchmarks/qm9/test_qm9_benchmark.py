"""QM9 as a harness benchmark: the protocols, the options, and one epoch of the tiny protocol."""

import importlib.util

import pytest

from go4align.benchmarks import get_benchmark
from go4align.benchmarks.qm9 import (
    INSTALL_HINT,
    METRIC_HIGHER_IS_BETTER,
    PROTOCOLS,
    QM9MPNN,
    STL_REFERENCE,
    TASK_NAMES,
    TRAINING_PROTOCOLS,
)


def test_the_protocols_are_the_papers_and_the_specs():
    full, reduced, tiny = (TRAINING_PROTOCOLS[p] for p in ("full", "reduced", "tiny"))
    assert (full.epochs, full.batch_size, full.optimizer, full.lr) == (300, 120, "adam", 1e-3)
    assert full.scheduler == "plateau" and dict(full.scheduler_options) == {
        "factor": 0.7,
        "patience": 5,
        "min_lr": 1e-5,
    }
    assert (full.reporting_rule, full.selection) == ("best_validation", "delta_m")
    assert full.method_options == {"go4align": {"num_groups": 5}}
    assert reduced == full.replace(epochs=6, scheduler="none", scheduler_options={})
    assert tiny == full.replace(epochs=2, batch_size=50)
    assert set(TRAINING_PROTOCOLS) == set(PROTOCOLS)  # every split layout has its training protocol


def test_tiny_benchmark(tiny_qm9_cache):
    benchmark = get_benchmark("qm9", protocol="tiny", cache_dir=tiny_qm9_cache)
    assert benchmark.name == "qm9" and benchmark.task_names == list(TASK_NAMES)
    assert benchmark.directions == {m: "lower" for m in METRIC_HIGHER_IS_BETTER}
    assert benchmark.protocol == TRAINING_PROTOCOLS["tiny"] and benchmark.stl_reference == STL_REFERENCE
    assert benchmark.options == {
        "protocol": "tiny",
        "features": "reference",
        "train_size": 200,
        "val_size": 100,
        "test_size": 100,
    }
    assert isinstance(benchmark.build_model(0), QM9MPNN)
    smaller = get_benchmark("qm9", protocol="tiny", cache_dir=tiny_qm9_cache, train_size=50, test_size=20)
    assert [len(smaller.dataset(split)) for split in ("train", "val", "test")] == [50, 100, 20]
    assert smaller.options["train_size"] == 50 and smaller.options["test_size"] == 20


@pytest.mark.slow
def test_tiny_benchmark_trains_an_epoch_through_the_harness(tiny_qm9_cache, train_one_epoch):
    result = train_one_epoch(get_benchmark("qm9", protocol="tiny", cache_dir=tiny_qm9_cache), METRIC_HIGHER_IS_BETTER)
    assert result["selected_epoch"] == 1 and result["stl_reference"] == STL_REFERENCE


@pytest.mark.parametrize(
    "options, message",
    [
        ({"protocol": "small"}, r"unknown QM9 protocol 'small'; choose one of \['full', 'reduced', 'tiny'\]"),
        ({"features": "exact"}, "unknown QM9 feature mode 'exact'"),
        ({"protocol": "reduced", "val_size": 3000}, r"val_size must be an int in \[1, 2000\] .*got 3000"),
    ],
)
def test_bad_options_are_named_before_any_data_is_read(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        get_benchmark("qm9", cache_dir=tmp_path, **options)
    assert not any(tmp_path.iterdir())


def test_missing_qm9pack_without_a_cache_says_what_to_install(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"qm9pack is not installed\. .*pip install 'go4align\[qm9\]'"):
        get_benchmark("qm9", protocol="tiny", cache_dir=tmp_path)
    assert "pip install 'go4align[qm9]'" in INSTALL_HINT
