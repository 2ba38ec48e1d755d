"""A few training steps of the methods whose row in ``helpers.methods`` has ``ddp`` options, on a
tiny model, as one rank of a gloo process group (run as a module, by test_distributed.py) or on one
process over the same global batches (imported).

    PYTHONPATH=src:tests python -m helpers.ddp_worker OUT_FILE
        with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set
"""

from __future__ import annotations

import contextlib
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .methods import METHODS, by_label

TASKS, BATCH, STEPS = 3, 8, 4

#: (label, options) of every method the table runs under DDP: loss-oriented ones, and
#: gradient-oriented ones on the shared parameters (Jacobian averaged over ranks) and on the
#: representation (Jacobian gathered).
CASES = [(info.label, info.ddp) for info in METHODS if info.ddp is not None]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(TASKS))

    def forward(self, x, return_representation=False):
        representation = self.encoder(x)
        predictions = torch.cat([head(representation) for head in self.heads], 1)
        return (predictions, representation) if return_representation else predictions


def losses_of(predictions, targets):
    return torch.stack([((predictions[:, m] - targets[:, m]) ** 2).mean() for m in range(TASKS)])


def global_batch(step: int):
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(BATCH, 4, generator=generator)
    scales = torch.tensor([1.0, 10.0, 0.1])  # losses of different scales: the weights differ
    return x, scales * torch.randn(BATCH, TASKS, generator=generator)


def train(label: str, options: dict, rank: int = 0, world: int = 1) -> dict:
    """``STEPS`` steps; returns the weights of every step, the weighting's state and the model."""
    model = Tiny()
    weighting = by_label(label).make(TASKS, **options)
    net = DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.05)
    weights = []
    for step in range(STEPS):
        x, y = (part.tensor_split(world)[rank] for part in global_batch(step))
        optimizer.zero_grad()
        sync = world > 1 and weighting.reduces_gradients
        with net.no_sync() if sync else contextlib.nullcontext():
            predictions, representation = net(x, return_representation=True)
            losses = losses_of(predictions, y)
            used = weighting.backward(
                losses, shared_parameters=list(model.encoder.parameters()), shared_representation=representation
            )
        optimizer.step()
        weighting.after_step(lambda: losses_of(model(x), y))
        weights.append(None if used is None else used.detach().clone())
    return {
        "weights": weights,
        "state": {k: v.clone() for k, v in weighting.state_dict().items() if isinstance(v, torch.Tensor)},
        "model": {k: v.clone() for k, v in model.state_dict().items()},
    }


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    results = {label: train(label, options, dist.get_rank(), dist.get_world_size()) for label, options in CASES}
    torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
