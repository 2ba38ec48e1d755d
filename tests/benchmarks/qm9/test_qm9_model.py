import pytest
import torch

from go4align.benchmarks.qm9 import data
from go4align.benchmarks.qm9.data import MoleculeGraph, batch_graphs, collate
from go4align.benchmarks.qm9.model import QM9MPNN, NaiveQM9MPNN
from go4align.benchmarks.qm9.tasks import TASK_NAMES, TargetStats, losses

SIZES = [5, 3, 17, 29, 9, 12, 3, 22, 14]


def _models(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    fast = QM9MPNN().to(dtype)
    naive = NaiveQM9MPNN().to(dtype)
    naive.load_state_dict(fast.state_dict())
    return fast, naive


def _stack(predictions):
    return torch.stack([predictions[task] for task in TASK_NAMES], dim=1)


def test_parameters_match_the_reference_and_split_shared_from_task():
    model = QM9MPNN()
    shared, task = model.shared_parameters(), model.task_parameters()
    assert sum(p.numel() for p in shared) == 616_960  # the reference's shared MPNN
    assert sum(p.numel() for p in task) == 11 * (64 + 1)  # one Linear(64, 1) per task
    assert {id(p) for p in shared}.isdisjoint(id(p) for p in task)
    assert {id(p) for p in shared} | {id(p) for p in task} == {id(p) for p in model.parameters()}


def test_initialisation_follows_torch_geometric():
    torch.manual_seed(0)
    conv = QM9MPNN().conv
    assert torch.equal(conv.root.bias, torch.zeros(64))  # NNConv's bias starts at zero
    bound = 1 / 64**0.5  # the root weight: U(-1/sqrt(in), 1/sqrt(in)), as NNConv's
    assert conv.root.weight.abs().max() <= bound and conv.root.weight.abs().max() > 0.9 * bound


def test_forward_contract(molecules):
    model = QM9MPNN()
    batch = batch_graphs(molecules(SIZES))
    predictions = model(batch)
    assert list(predictions) == list(TASK_NAMES)
    assert all(p.shape == (len(SIZES),) for p in predictions.values())
    again, representation = model(batch, return_representation=True)
    assert representation.shape == (len(SIZES), 64) and (representation >= 0).all()
    assert torch.equal(_stack(again), _stack(predictions))
    # the representation is exactly what the task heads see
    head = model.heads[TASK_NAMES.index("U0")]
    assert torch.allclose(head(representation).squeeze(-1), predictions["U0"])


def test_fast_equals_naive_float64(molecules):
    fast, naive = _models()
    batch = batch_graphs(molecules(SIZES, seed=1)).to(dtype=torch.float64)
    fast_out, fast_repr = fast(batch, return_representation=True)
    naive_out, naive_repr = naive(batch, return_representation=True)
    assert (_stack(fast_out) - _stack(naive_out)).abs().max() < 1e-10
    assert (fast_repr - naive_repr).abs().max() < 1e-10


def test_fast_equals_naive_gradients_float64(molecules):
    fast, naive = _models()
    batch = batch_graphs(molecules([4, 11, 7], seed=2)).to(dtype=torch.float64)
    targets = {task: torch.zeros(3, dtype=torch.float64) for task in TASK_NAMES}
    losses(fast(batch), targets).sum().backward()
    losses(naive(batch), targets).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), naive.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-8, atol=1e-11), name


def test_fast_equals_naive_float32(molecules):
    fast, naive = _models(torch.float32)
    batch = batch_graphs(molecules(SIZES, seed=3))
    assert (_stack(fast(batch)) - _stack(naive(batch))).abs().max() < 1e-5


def _permute_atoms(graph: MoleculeGraph, permutation: torch.Tensor) -> MoleculeGraph:
    new_index = torch.empty_like(permutation)
    new_index[permutation] = torch.arange(len(permutation))
    return MoleculeGraph(
        graph.node_features[permutation], graph.positions[permutation], new_index[graph.bonds].flip(1), graph.bond_types
    )


def test_predictions_are_invariant_to_atom_order(molecules):
    model = QM9MPNN().double()
    graphs = molecules([6, 13, 20], seed=4)
    generator = torch.Generator().manual_seed(0)
    permuted = [_permute_atoms(g, torch.randperm(len(g.node_features), generator=generator)) for g in graphs]
    original = _stack(model(batch_graphs(graphs).to(dtype=torch.float64)))
    shuffled = _stack(model(batch_graphs(permuted).to(dtype=torch.float64)))
    assert (original - shuffled).abs().max() < 1e-10


@pytest.mark.parametrize("num_blocks", [1, 3, 8])
def test_batch_equals_one_by_one(molecules, num_blocks):
    model = QM9MPNN().double()
    graphs = molecules(SIZES, seed=5)
    together = _stack(model(batch_graphs(graphs, num_blocks).to(dtype=torch.float64)))
    alone = torch.cat([_stack(model(batch_graphs([g]).to(dtype=torch.float64))) for g in graphs])
    assert (together - alone).abs().max() < 1e-10


def test_model_arguments_are_validated():
    with pytest.raises(ValueError, match="dim must be at least 1, got 0"):
        QM9MPNN(dim=0)
    with pytest.raises(ValueError, match="distinct"):
        QM9MPNN(tasks=("mu", "mu"))
    assert "message_passing_steps=3" in repr(QM9MPNN())


def test_fast_equals_naive_on_real_molecules(real_qm9):
    cache = data.load_or_build_cache("reference", 24, cache_dir=real_qm9[0])
    stats = TargetStats.from_targets(torch.from_numpy(cache.targets))
    dataset = data.QM9Dataset(cache, range(24), stats)
    batch, targets = collate([dataset[i] for i in range(24)])
    fast, naive = _models(torch.float32)
    fast_out, naive_out = fast(batch), naive(batch)
    assert (_stack(fast_out) - _stack(naive_out)).abs().max() < 1e-5
    assert torch.isfinite(losses(fast_out, targets)).all()
