import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from go4align.benchmarks import check_model, get_benchmark
from go4align.benchmarks.synthetic import adjusted_rand_index, grouping_recovery, make_problem, planted_groups
from go4align.train import parse_method_spec, train_run


def test_problem_is_seeded_and_planted_as_documented():
    problem = make_problem(num_tasks=10, num_groups=4, input_dim=8, conflict=0.6, spread=0.0, data_seed=3)
    again = make_problem(num_tasks=10, num_groups=4, input_dim=8, conflict=0.6, spread=0.0, data_seed=3)
    assert np.array_equal(problem.groups, again.groups) and torch.equal(problem.directions, again.directions)
    assert not np.array_equal(problem.groups, make_problem(num_tasks=10, num_groups=4, input_dim=8, data_seed=4).groups)
    assert sorted(np.bincount(problem.groups).tolist()) == [2, 2, 3, 3]
    # with no spread, every task has its group's unit direction; groups 0 and 1 conflict
    direction = {g: problem.directions[problem.groups == g][0].double() for g in range(4)}
    for g in range(4):
        assert torch.allclose(
            problem.directions[problem.groups == g].double(), direction[g].expand(int((problem.groups == g).sum()), -1)
        )
        assert direction[g].norm().item() == pytest.approx(1, abs=1e-6)
    assert torch.dot(direction[0], direction[1]).item() == pytest.approx(-0.6, abs=1e-6)
    assert torch.dot(direction[0], direction[2]).item() == pytest.approx(0, abs=1e-6)
    assert problem.scales.tolist() == pytest.approx(np.logspace(0, 1, 4).tolist())


def test_targets_carry_the_group_scales():
    problem = make_problem(num_tasks=4, num_groups=2, input_dim=4, scales=[1.0, 10.0], spread=0.0, noise=0.0)
    x, y = problem.sample(4000, stream=1)
    assert x.shape == (4000, 4) and y.shape == (4000, 4)
    variance = y.var(0)
    expected = torch.tensor([1.0, 100.0])[problem.groups]
    assert torch.allclose(variance, expected, rtol=0.1)
    assert torch.equal(problem.sample(5, stream=2)[0], problem.sample(5, stream=2)[0])
    assert not torch.equal(problem.sample(5, stream=2)[0], problem.sample(5, stream=3)[0])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_tasks": 3, "num_groups": 4}, "num_groups must be <= num_tasks"),
        ({"input_dim": 2, "num_groups": 4}, "input_dim"),
        ({"conflict": 1.5}, "conflict"),
        ({"scales": [1.0, 2.0]}, "scales"),
        ({"noise": -1.0}, "noise"),
        ({"num_tasks": 0}, "num_tasks"),
    ],
)
def test_problem_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        make_problem(**options)


def test_benchmark_model_losses_and_metrics():
    bench = get_benchmark("synthetic", num_tasks=6, num_groups=2, train_size=50, val_size=10, test_size=20)
    model = bench.build_model(0)
    check_model(model)
    x, y = bench.dataset("train").get_batch(torch.arange(8))
    predictions, representation = model(x, return_representation=True)
    assert representation.shape == (8, 2) and set(predictions) == set(bench.task_names)
    losses = bench.losses(predictions, y)
    expected = torch.stack([((predictions[t] - y[t]) ** 2).mean() for t in bench.task_names])
    assert torch.allclose(losses, expected)
    metrics = bench.metrics()
    metrics.update(predictions, y)
    assert list(metrics.compute()) == [f"{t}_mse" for t in bench.task_names]
    assert bench.protocol.method_options == {"go4align": {"num_groups": 2}}
    assert len(planted_groups(bench)) == 6


def test_adjusted_rand_index_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 30), rng.integers(0, 3, 30)
        assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0
    assert adjusted_rand_index([0, 0, 0], [1, 1, 1]) == adjusted_rand_score([0, 0, 0], [1, 1, 1])
    assert grouping_recovery([[0, 0, 1, 1], [0, 1, 0, 1]], [1, 1, 0, 0]) == pytest.approx(
        0.5 * (1 + adjusted_rand_score([0, 1, 0, 1], [1, 1, 0, 0]))
    )
    with pytest.raises(ValueError, match="shape"):
        grouping_recovery([0, 1], [0, 1, 1])


def test_go4align_recovers_well_separated_planted_groups(tmp_path):
    # Loss levels 1 : 4 : 16 at convergence (noise floor, no conflict, enough capacity): the
    # indicators of the three groups are far apart and GO4Align's K = 3 groups are the planted ones.
    bench = get_benchmark(
        "synthetic",
        num_tasks=12,
        num_groups=3,
        scales=[1.0, 2.0, 4.0],
        noise=1.0,
        hidden_dim=3,
        conflict=0.0,
        spread=0.0,
    ).with_protocol(epochs=30, batch_size=500, lr=0.05)
    result = train_run(bench, parse_method_spec("go4align"), 0, tmp_path, progress=False)
    groups = np.array(result["trace"]["groups"])
    assert groups.shape[1] == 12
    assert grouping_recovery(groups[-20:], planted_groups(bench)) > 0.95


def test_a_thousand_tasks(tmp_path):
    bench = get_benchmark("synthetic", num_tasks=1000, num_groups=5, train_size=200, val_size=50, test_size=50)
    result = train_run(bench.with_protocol(epochs=1), parse_method_spec("go4align"), 0, tmp_path, progress=False)
    assert len(result["metrics"]) == 1000 and len(result["trace"]["weights"][0]) == 1000
    assert len(set(result["trace"]["groups"][0])) == 5
