"""For the weighting tests: a tiny hard-sharing model, the protocol's training loop, the
independent reference gradients and Jacobians, and property checks of the aggregations.

The model lives on ``helpers.DEVICE`` in ``helpers.DTYPE`` (see the package docstring).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from go4align.weighting import Weighting, make

from . import DEVICE, DTYPE


class HardSharing(nn.Module):
    """A shared trunk and one linear head per task; regression losses on a fixed batch."""

    def __init__(self, num_tasks: int, features: int = 5, hidden: int = 8, seed: int = 0, stacked: bool = False):
        super().__init__()
        self.stacked = stacked  # per-task losses put together with torch.stack, else one vector op
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.trunk = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
            self.heads = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(num_tasks))
        self.x = torch.randn(16, features, generator=generator)
        # task targets of different scales, so that the methods have something to balance
        self.y = torch.randn(16, num_tasks, generator=generator) * torch.logspace(0, 1, num_tasks)
        self.to(DEVICE, DTYPE)
        self.x, self.y = self.x.to(DEVICE, DTYPE), self.y.to(DEVICE, DTYPE)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Task losses (1-D) and the shared representation."""
        z = self.trunk(self.x)
        if self.stacked:
            losses = [((head(z).squeeze(1) - self.y[:, m]) ** 2).mean() for m, head in enumerate(self.heads)]
            return torch.stack(losses), z
        predictions = torch.cat([head(z) for head in self.heads], 1)
        return ((predictions - self.y) ** 2).mean(0), z


def build(name: str, num_tasks: int, **options):
    """``make`` that skips the test when the method's optional dependency is missing."""
    try:
        return make(name, num_tasks, **options)
    except ImportError as error:
        pytest.skip(f"{name}: {error}")


def train(method, model: HardSharing, steps: int = 3, lr: float = 0.05):
    """The protocol's training loop, identical for every method; returns the weights per step."""
    params = list(model.parameters()) + list(method.parameters())
    optimiser = torch.optim.SGD(params, lr=lr)
    returned = []
    for _ in range(steps):
        optimiser.zero_grad()
        losses, z = model()
        returned.append(method.backward(losses, shared_parameters=model.shared_parameters(), shared_representation=z))
        optimiser.step()
        with torch.no_grad():
            method.after_step(lambda: model()[0])
        method.end_epoch()
    return returned


def gradients(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def one_step(method, model: HardSharing):
    """Gradients written by one backward of ``method`` on ``model`` (grads zeroed first)."""
    model.zero_grad()
    losses, z = model()
    weights = method.backward(losses, shared_parameters=model.shared_parameters(), shared_representation=z)
    return weights, gradients(model)


def resumes_identically(factory: Callable[[], Weighting], num_tasks: int) -> None:
    """Train 2 steps, checkpoint, train 2 more; a fresh ``factory()`` loaded from the checkpoint
    and a copy of the model at the checkpoint must produce bit-identical parameters and state."""
    torch.manual_seed(0)
    model = HardSharing(num_tasks)
    method = factory()
    train(method, model, steps=2)
    state = copy.deepcopy(method.state_dict())
    model_copy = copy.deepcopy(model)
    train(method, model, steps=2)
    resumed = factory()
    resumed.load_state_dict(state)
    train(resumed, model_copy, steps=2)
    for a, b in zip(model.parameters(), model_copy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert_identical(method.state_dict(), resumed.state_dict())


def assert_identical(a, b, where: str = "state") -> None:
    """Bit-identical nested states: dicts (extra states included), lists, tensors, plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def task_jacobian(model: HardSharing, wrt: str = "parameters") -> tuple[torch.Tensor, torch.Tensor]:
    """Losses and the per-task Jacobian computed independently of the library, one task at a time."""
    losses, z = model()
    targets = model.shared_parameters() if wrt == "parameters" else [z]
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, targets, retain_graph=True)]) for l in losses]
    return losses.detach(), torch.stack(rows).double()


def expected_gradients(
    model: HardSharing, shared_direction: torch.Tensor, head_weights: torch.Tensor, wrt="parameters"
):
    """Gradients a gradient method must write: the heads from ``sum h_m L_m``, the shared trunk
    from ``shared_direction`` (at the parameters or back-propagated from the representation)."""
    losses, z = model()
    heads = [p for head in model.heads for p in head.parameters()]
    head_grads = torch.autograd.grad((head_weights.to(losses.dtype) * losses).sum(), heads, retain_graph=True)
    shared = model.shared_parameters()
    if wrt == "parameters":
        sizes = [p.numel() for p in shared]
        shared_grads = [g.view_as(p).to(p.dtype) for g, p in zip(shared_direction.split(sizes), shared)]
    else:
        shared_grads = torch.autograd.grad(z, shared, shared_direction.view_as(z).to(z.dtype))
    return list(shared_grads) + list(head_grads)


def assert_close_lists(actual, expected, **tolerances):
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, **tolerances)


def random_jacobian(num_tasks: int, size: int = 7, seed: int = 0, conflict: bool = True) -> torch.Tensor:
    """A float64 ``[M, P]`` matrix of task gradients; with ``conflict`` some pairs point apart."""
    generator = torch.Generator().manual_seed(seed)
    jac = torch.randn(num_tasks, size, generator=generator, dtype=torch.float64)
    if not conflict:
        jac = jac + 3 * torch.ones(size, dtype=torch.float64)
    return jac


def aggregate(method, jacobian: torch.Tensor, losses: torch.Tensor | None = None):
    """Call a gradient method's aggregation directly on a Jacobian; returns weights, direction."""
    if losses is None:
        losses = torch.ones(jacobian.shape[0], dtype=torch.float64)
    result = method.aggregate(jacobian, losses, [torch.zeros(jacobian.shape[1], dtype=torch.float64)])
    direction = result.direction if result.direction is not None else result.weights @ jacobian
    return result.weights, direction


def check_permutation_equivariance(factory, jacobian: torch.Tensor, **tolerances) -> None:
    """Reordering the tasks reorders the weights and leaves the direction unchanged."""
    perm = torch.randperm(jacobian.shape[0], generator=torch.Generator().manual_seed(1))
    weights, direction = aggregate(factory(), jacobian)
    permuted_weights, permuted_direction = aggregate(factory(), jacobian[perm])
    torch.testing.assert_close(permuted_weights, weights[perm], **tolerances)
    torch.testing.assert_close(permuted_direction, direction, **tolerances)


def check_scaling(factory, jacobian: torch.Tensor, power: float, scale: float = 10.0, **tolerances) -> None:
    """Scaling every gradient by ``scale`` scales the weights by ``scale ** power``."""
    weights, _ = aggregate(factory(), jacobian)
    scaled, _ = aggregate(factory(), jacobian * scale)
    torch.testing.assert_close(scaled, weights * scale**power, **tolerances)


def sse(values, labels):
    """The K-means objective of a partition (within-group sum of squares), in Python floats."""
    total = 0.0
    for g in set(labels):
        group = [v for v, l in zip(values, labels) if l == g]
        mean = sum(group) / len(group)
        total += sum((v - mean) ** 2 for v in group)
    return total
