import pytest
import torch
from torch import nn

from go4align.benchmarks import (
    Benchmark,
    HardSharing,
    Metric,
    Protocol,
    SampleMean,
    Task,
    TensorTaskDataset,
    available_benchmarks,
    benchmark_options,
    check_model,
    get_benchmark,
    installed_benchmarks,
    register_benchmark,
    task_losses,
    unregister_benchmark,
)


def tiny_benchmark(**changes):
    x = torch.randn(20, 3)
    data = TensorTaskDataset(x, {"a": x.sum(1), "b": (x[:, 0] > 0).long()})
    options = dict(
        name="tiny",
        tasks=[Task("a", Metric("a_mse", False)), Task("b", Metric("b_acc", True))],
        datasets=lambda split: data,
        model=lambda seed: HardSharing(
            nn.Linear(3, 4), {"a": nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)), "b": nn.Linear(4, 2)}
        ),
        losses=task_losses({"a": nn.functional.mse_loss, "b": nn.functional.cross_entropy}),
        metrics=lambda: SampleMean(
            {"a_mse": ("a", lambda p, t: (p - t) ** 2), "b_acc": ("b", lambda p, t: (p.argmax(1) == t).float())}
        ),
        protocol=Protocol(epochs=1, batch_size=5, lr=1e-2),
    )
    options.update(changes)
    return Benchmark(**options)


def test_hard_sharing_contract():
    encoder = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    heads = {"a": nn.Linear(4, 1), "b": nn.Linear(4, 2)}
    model = HardSharing(encoder, heads)
    x = torch.randn(5, 3)
    predictions = model(x)
    assert set(predictions) == {"a", "b"} and predictions["b"].shape == (5, 2)
    predictions, representation = model(x, return_representation=True)
    assert torch.equal(representation, encoder(x))
    # the representation feeds the heads: a gradient through it reaches the predictions
    assert representation.requires_grad and predictions["a"].grad_fn is not None
    shared, task = model.shared_parameters(), model.task_parameters()
    assert {id(p) for p in shared} == {id(p) for p in encoder.parameters()}
    assert {id(p) for p in task} == {id(p) for p in heads["a"].parameters()} | {id(p) for p in heads["b"].parameters()}
    check_model(model)


def test_check_model_rejects_overlap_and_gaps():
    class Overlap(HardSharing):
        def task_parameters(self):
            return super().task_parameters() + self.shared_parameters()

    class Gap(HardSharing):
        def task_parameters(self):
            return []

    with pytest.raises(ValueError, match="overlap"):
        check_model(Overlap(nn.Linear(2, 2), {"a": nn.Linear(2, 1)}))
    with pytest.raises(ValueError, match="cover all"):
        check_model(Gap(nn.Linear(2, 2), {"a": nn.Linear(2, 1)}))
    with pytest.raises(ValueError, match="shared_parameters"):
        check_model(nn.Linear(2, 2))


def test_hard_sharing_rejects_bad_parts():
    with pytest.raises(TypeError, match="encoder"):
        HardSharing(lambda x: x, {"a": nn.Linear(2, 1)})
    with pytest.raises(TypeError, match="heads"):
        HardSharing(nn.Linear(2, 2), {})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"lr": -1}, "lr"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"scheduler": "cosine"}, "scheduler"),
        ({"reporting_rule": "best_test"}, "reporting_rule"),
        ({"reporting_rule": "last_k_mean:0"}, "reporting_rule"),
        ({"selection": "median"}, "selection"),
        ({"optimizer_options": {"lr": 1}}, "learning rate"),
        ({"optimizer_options": {"momentum": 0.9}}, "optimizer_options"),
        ({"scheduler": "step"}, "step_size"),
        ({"scheduler": "step", "scheduler_options": {"step_size": 10, "gama": 0.5}}, "gama"),
        ({"scheduler_options": {"step_size": 10}}, "scheduler='none'"),
        ({"method_options": {"go4align": 3}}, "method_options"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_protocol_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        Protocol(**{"epochs": 1, "batch_size": 2, "lr": 1e-3, **changes})


def test_protocol_builds_optimizer_and_schedulers():
    p = Protocol(
        epochs=1,
        batch_size=2,
        lr=0.1,
        optimizer="sgd",
        optimizer_options={"momentum": 0.9},
        scheduler="step",
        scheduler_options={"step_size": 100, "gamma": 0.5},
    )
    optimizer = p.build_optimizer([torch.zeros(1, requires_grad=True)])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.9
    assert isinstance(p.build_scheduler(optimizer), torch.optim.lr_scheduler.StepLR)
    plateau = p.replace(scheduler="plateau", scheduler_options={"factor": 0.7, "patience": 5, "min_lr": 1e-5})
    assert plateau.build_scheduler(optimizer).mode == "min"
    assert p.last_k == 10 and p.replace(reporting_rule="best_validation").last_k is None
    with pytest.raises(ValueError, match="unknown protocol field"):
        p.replace(epoch=3)
    assert p.to_dict()["scheduler_options"] == {"step_size": 100, "gamma": 0.5}


def test_benchmark_validation():
    bench = tiny_benchmark()
    assert bench.task_names == ["a", "b"] and bench.directions == {"a_mse": "lower", "b_acc": "higher"}
    with pytest.raises(ValueError, match="task names must be unique"):
        tiny_benchmark(tasks=[Task("a", Metric("x", True)), Task("a", Metric("y", True))])
    with pytest.raises(ValueError, match="metric names must be unique"):
        tiny_benchmark(tasks=[Task("a", Metric("x", True)), Task("b", Metric("x", True))])
    with pytest.raises(ValueError, match="splits"):
        tiny_benchmark(splits=("train", "val"))
    with pytest.raises(ValueError, match="no 'val' split"):
        tiny_benchmark(
            splits=("train", "test"), protocol=Protocol(epochs=1, batch_size=2, lr=1, reporting_rule="best_validation")
        )
    with pytest.raises(ValueError, match="stl_reference lacks"):
        tiny_benchmark(stl_reference={"a_mse": 1.0})
    with pytest.raises(ValueError, match="needs an stl_reference"):
        tiny_benchmark(
            protocol=Protocol(epochs=1, batch_size=2, lr=1, reporting_rule="best_validation", selection="delta_m")
        )
    with pytest.raises(ValueError, match="point the same way"):
        tiny_benchmark(
            protocol=Protocol(epochs=1, batch_size=2, lr=1, reporting_rule="best_validation", selection="mean")
        )
    with pytest.raises(ValueError, match="has no split 'val'"):
        tiny_benchmark(splits=("train", "test")).dataset("val")
    with pytest.raises(ValueError, match="Task name"):
        Task("a.b", Metric("x", True))
    with pytest.raises(ValueError, match="at least one Metric"):
        Task("a")
    with pytest.raises(ValueError, match="higher_is_better"):
        Metric("x", "yes")


def test_benchmark_builds_seeded_models_and_keeps_data():
    calls = []
    bench = tiny_benchmark(
        datasets=lambda split: calls.append(split) or TensorTaskDataset(torch.zeros(2, 3), {"a": torch.zeros(2)})
    )
    first, again = bench.build_model(3), bench.build_model(3)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), again.parameters()))
    bench.dataset("train"), bench.dataset("train")
    changed = bench.with_protocol(epochs=7)
    changed.dataset("train")
    assert calls == ["train"] and changed.protocol.epochs == 7


def test_tensor_task_dataset_batches_and_items():
    x = torch.arange(12.0).reshape(6, 2)
    data = TensorTaskDataset(x, {"t": torch.arange(6)}, transform=lambda b: b * 2)
    inputs, targets = data.get_batch([4, 1])
    assert torch.equal(inputs, x[[4, 1]] * 2) and torch.equal(targets["t"], torch.tensor([4, 1]))
    item_x, item_y = data[2]
    assert torch.equal(item_x, x[2] * 2) and int(item_y["t"]) == 2 and len(data) == 6
    with pytest.raises(ValueError, match="rows"):
        TensorTaskDataset(x, {"t": torch.arange(5)})


def test_sample_mean():
    metric = SampleMean({"acc": ("t", lambda p, t: (p == t).float())})
    metric.update({"t": torch.tensor([1, 2, 3])}, {"t": torch.tensor([1, 0, 3])})
    metric.update({"t": torch.tensor([5])}, {"t": torch.tensor([5])})
    assert metric.compute() == {"acc": 0.75}
    with pytest.raises(ValueError, match="before any update"):
        SampleMean({}).compute()


@pytest.fixture
def registered():
    """Register benchmarks for one test: ``registered(name, factory)``; removed afterwards."""
    names = []

    def register(name, factory):
        register_benchmark(name, factory)
        names.append(name)

    yield register
    for name in set(names):
        unregister_benchmark(name)


def test_registry_is_lazy_and_says_what_is_missing(registered):
    assert {"toy", "synthetic", "digits", "fashion", "qm9", "nyuv2", "cityscapes", "celeba"} <= set(
        available_benchmarks()
    )
    assert {"toy", "synthetic", "digits", "fashion"} <= set(installed_benchmarks())
    registered("ghost", "go4align.benchmarks.ghost:make_benchmark")
    assert "ghost" in available_benchmarks() and "ghost" not in installed_benchmarks()
    with pytest.raises(ValueError, match="go4align.benchmarks.ghost is not part of this installation"):
        get_benchmark("ghost")
    with pytest.raises(ValueError, match="unknown benchmark 'nope'; installed: .*digits"):
        get_benchmark("nope")
    with pytest.raises(ValueError, match="module:function"):
        register_benchmark("bad", "no_colon")


def test_registry_takes_callables_and_checks_options(registered):
    registered("tiny", lambda size=3: tiny_benchmark())
    assert benchmark_options("tiny") == ["size"]
    assert get_benchmark("tiny", size=4).name == "tiny"
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['data_dir'\]; it accepts \['size'\]"):
        get_benchmark("tiny", data_dir="/x")
    assert benchmark_options("toy") == ["scale", "steps_per_epoch"]


def test_an_unregistered_benchmark_is_unknown_again():
    register_benchmark("passing", tiny_benchmark)
    assert unregister_benchmark("passing") is tiny_benchmark
    assert "passing" not in available_benchmarks()
    with pytest.raises(ValueError, match="unknown benchmark 'passing'"):
        get_benchmark("passing")
    with pytest.raises(ValueError, match="unknown benchmark 'passing'; registered: .*toy"):
        unregister_benchmark("passing")
