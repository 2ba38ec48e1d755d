import math

import pytest
import torch

from go4align.benchmarks.toy import (
    INITS,
    PARETO_X2,
    ToyPoint,
    lower_bounds,
    make_benchmark,
    pareto_front,
    toy_losses,
    trajectories,
    trajectory,
)
from go4align.train import parse_method_spec, train_run
from go4align.weighting import make


def reference_losses(x1: float, x2: float, scale: float = 0.1) -> tuple[float, float]:
    """The Nash-MTL repository's Toy.forward, restated with the math module."""
    c1 = max(math.tanh(x2 * 0.5), 0.0)
    c2 = max(math.tanh(-x2 * 0.5), 0.0)
    f1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), 5e-6)) + 6
    f2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), 5e-6)) + 6
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return (f1 * c1 + f1_sq * c2) * scale, f2 * c1 + f2_sq * c2


@pytest.mark.parametrize("point", [*INITS, (7.0, -8.0), (-7.0, PARETO_X2), (1.0, 0.3), (-9.5, 3.0)])
def test_losses_match_the_reference_definition(point):
    got = toy_losses(torch.tensor(point, dtype=torch.float64)).tolist()
    assert got == pytest.approx(reference_losses(*point), rel=1e-12, abs=1e-12)


def test_pinned_values():
    # guards against silent drift of the definition (values from the reference formula)
    values = toy_losses(torch.tensor([[0.0, 0.0], [9.0, 9.0], [7.0, -8.0]], dtype=torch.float64))
    assert values[0].tolist() == [0.0, 0.0]
    assert values[1].tolist() == pytest.approx([0.7943949189, 6.6914953692], abs=1e-9)
    assert values[2].tolist() == pytest.approx([-1.9986585995, -0.3997317199], abs=1e-9)
    # the scale multiplies f1 only
    assert toy_losses(torch.tensor([9.0, 9.0], dtype=torch.float64), scale=1.0)[0] == pytest.approx(
        7.943949189, abs=1e-8
    )


def test_lower_bounds_are_below_the_landscape():
    grid = torch.stack(torch.meshgrid(torch.linspace(-10, 10, 101), torch.linspace(-10, 10, 101), indexing="ij"), -1)
    for scale in (0.1, 1.0):
        assert (toy_losses(grid, scale) > lower_bounds(scale)).all()
    with pytest.raises(ValueError, match="last dimension of 2"):
        toy_losses(torch.zeros(3))


def test_pareto_front_trades_one_loss_for_the_other():
    front = pareto_front(50)
    assert front.shape == (50, 2)
    assert (front[1:, 0] < front[:-1, 0]).all() and (front[1:, 1] > front[:-1, 1]).all()


def test_trajectory_descends_and_repeats():
    path = trajectory(make("ls", 2), INITS[1], steps=300, lr=0.05)
    assert path.shape == (301, 2) and torch.equal(path[0], torch.tensor(INITS[1]))
    start, end = toy_losses(path[0]), toy_losses(path[-1])
    assert end.sum() < start.sum()
    assert torch.equal(path, trajectory(make("ls", 2), INITS[1], steps=300, lr=0.05))
    paths = trajectories(lambda: make("go4align", 2), inits=INITS[:2], steps=5)
    assert len(paths) == 2 and paths[1].shape == (6, 2)
    with pytest.raises(ValueError, match="steps"):
        trajectory(make("ls", 2), INITS[0], steps=-1)


def test_benchmark_form_runs_in_the_trainer(tmp_path):
    bench = make_benchmark(steps_per_epoch=20).with_protocol(epochs=2, lr=0.05)
    model = bench.build_model(3)
    assert isinstance(model, ToyPoint) and model.x.tolist() == list(INITS[3])
    result = train_run(bench, parse_method_spec("go4align"), 3, tmp_path, progress=False)
    assert result["complete"] and set(result["metrics"]) == {"f1", "f2"}
    final = toy_losses(torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]["x"])
    assert result["metrics"] == pytest.approx(dict(zip(("f1", "f2"), final.tolist())))
    # the optimised losses are shifted to be positive, as the scale-based methods need
    assert min(min(row) for row in result["trace"]["losses"]) > 0
