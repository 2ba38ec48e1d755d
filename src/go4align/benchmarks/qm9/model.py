"""The MPNN of the Nash-MTL/FAMO/GO4Align QM9 protocol, in plain torch.

Gilmer et al.'s network as in the Nash-MTL repository (experiments/quantum_chemistry/models.py):
Linear(11, 64) + ReLU; three rounds of an edge-conditioned convolution (NNConv, mean aggregation,
edge network Linear(5, 128)-ReLU-Linear(128, 64*64), root weight, bias starting at zero) followed by ReLU and a GRU
whose weights are shared across rounds; Set2Set readout (3 processing steps); Linear(128, 64) + ReLU;
then one Linear(64, 1) head per task. Everything up to the 64-dim readout features is shared (616,960
parameters); the 11 heads are task-specific.

The convolution is computed exactly but without a 64x64 weight per edge. With hidden edge features
h_ij = ReLU(W1 e_ij + b1) (128-dim) and W2 = [A_1 ... A_128] split per hidden unit, the message
x_j^T reshape(W2 h_ij + b2) = sum_k h_ij[k] (x_j^T A_k) + x_j^T B. So each node is projected once
through all A_k (node level), h_ij is computed once per batch (not per round), and the sum over
neighbours j and hidden units k is one batched matmul per padded block of molecules.
`NaiveQM9MPNN` builds the per-edge weights like torch_geometric's NNConv; it exists to test and time
the fast path against and has exactly the same parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from go4align.benchmarks.qm9.data import EDGE_FEATURES, NODE_FEATURES, GraphBlock, QM9Batch
from go4align.benchmarks.qm9.tasks import TASK_NAMES


class EdgeConditionedConv(nn.Module):
    """NNConv with mean aggregation over all other atoms of the molecule, computed at node level."""

    def __init__(self, dim: int, edge_features: int, edge_hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.edge_network = nn.Sequential(
            nn.Linear(edge_features, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, dim * dim)
        )
        self.root = nn.Linear(dim, dim)
        # torch_geometric's NNConv keeps the root bias apart and starts it at zero (its root weight
        # is U(-1/sqrt(dim), 1/sqrt(dim)), as nn.Linear's). Zeroed after the draw, so that every
        # other parameter's initial value is unchanged.
        nn.init.zeros_(self.root.bias)

    def prepare(self, block: GraphBlock) -> tuple[Tensor, ...]:
        """Per-block quantities that do not change across message-passing rounds."""
        pair_mask = _pair_mask(block.node_mask).to(block.edge_attr.dtype)
        hidden = self.edge_network[1](self.edge_network[0](block.edge_attr)) * pair_mask[..., None]
        count, size = block.node_mask.shape
        # [b, n, n*K]: row i holds h_ij[k] for every neighbour j and hidden unit k, zero off the graph
        hidden = hidden.reshape(count, size, -1)
        # W2 row (a * dim + o) is entry (a, o) of the edge weight; regroup it as A = [dim_in, K * dim_out]
        out_layer = self.edge_network[2]
        per_unit = out_layer.weight.view(self.dim, self.dim, -1).permute(0, 2, 1).reshape(self.dim, -1)
        bias = out_layer.bias.view(self.dim, self.dim)
        return hidden, pair_mask, _neighbour_count(block.node_mask, pair_mask.dtype), per_unit, bias

    def forward(self, x: Tensor, context: tuple[Tensor, ...]) -> Tensor:
        hidden, pair_mask, neighbours, per_unit, bias = context
        count, size, dim = x.shape
        projected = (x @ per_unit).view(count, -1, dim)  # [b, n*K, dim_out]: rows (j, k) = x_j^T A_k
        summed = hidden @ projected + pair_mask @ (x @ bias)
        return summed / neighbours[..., None] + self.root(x)


class NaiveEdgeConditionedConv(EdgeConditionedConv):
    """The same convolution with one dim x dim weight per directed edge (torch_geometric's NNConv)."""

    def prepare(self, block: GraphBlock) -> tuple[Tensor, ...]:
        pair_mask = _pair_mask(block.node_mask)
        molecule, target, source = pair_mask.nonzero(as_tuple=True)
        edge_attr = block.edge_attr[molecule, target, source]
        return molecule, target, source, edge_attr, _neighbour_count(block.node_mask, edge_attr.dtype)

    def forward(self, x: Tensor, context: tuple[Tensor, ...]) -> Tensor:
        molecule, target, source, edge_attr, neighbours = context
        weights = self.edge_network(edge_attr).view(-1, self.dim, self.dim)
        messages = torch.bmm(x[molecule, source].unsqueeze(1), weights).squeeze(1)
        summed = torch.zeros_like(x).index_put((molecule, target), messages, accumulate=True)
        return summed / neighbours[..., None] + self.root(x)


def _pair_mask(node_mask: Tensor) -> Tensor:
    """[b, n, n] True for every ordered pair of distinct real atoms: the complete graph's edges."""
    size = node_mask.shape[1]
    distinct = ~torch.eye(size, dtype=torch.bool, device=node_mask.device)
    return node_mask[:, :, None] & node_mask[:, None, :] & distinct


def _neighbour_count(node_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[b, 1] number of neighbours of every atom (atoms - 1), at least 1 so padding never divides by 0."""
    return (node_mask.sum(dim=1, keepdim=True) - 1).clamp(min=1).to(dtype)


class Set2Set(nn.Module):
    """Vinyals et al.'s Set2Set readout over the real atoms of each padded molecule.

    q_t = LSTM(q*_{t-1}); a_i = softmax_i(x_i . q_t); r_t = sum_i a_i x_i; q*_t = [q_t, r_t].
    """

    def __init__(self, dim: int, processing_steps: int) -> None:
        super().__init__()
        self.dim = dim
        self.processing_steps = processing_steps
        self.lstm = nn.LSTMCell(2 * dim, dim)

    def forward(self, x: Tensor, node_mask: Tensor) -> Tensor:
        count = x.shape[0]
        q_star = x.new_zeros(count, 2 * self.dim)
        state = (x.new_zeros(count, self.dim), x.new_zeros(count, self.dim))
        for _ in range(self.processing_steps):
            state = self.lstm(q_star, state)
            query = state[0]
            scores = (x * query[:, None, :]).sum(dim=-1).masked_fill(~node_mask, float("-inf"))
            attention = torch.softmax(scores, dim=1)
            readout = (attention[..., None] * x).sum(dim=1)
            q_star = torch.cat([query, readout], dim=-1)
        return q_star


class QM9MPNN(nn.Module):
    """The reference MPNN with one linear head per task.

    `forward(batch)` returns `{task: Tensor[B]}` (standardised predictions, batch order);
    `forward(batch, return_representation=True)` also returns the [B, dim] shared readout features that
    feed the heads. `shared_parameters()` and `task_parameters()` split all parameters disjointly.

    Args:
        tasks: task names, one head each (default: the 11 QM9 tasks).
        dim: node and readout width (64 in the reference).
        edge_hidden: width of the edge network's hidden layer (128).
        message_passing_steps: rounds of convolution + GRU (3).
        set2set_steps: Set2Set processing steps (3).
    """

    conv_class = EdgeConditionedConv

    def __init__(
        self,
        tasks: tuple[str, ...] = TASK_NAMES,
        dim: int = 64,
        edge_hidden: int = 128,
        message_passing_steps: int = 3,
        set2set_steps: int = 3,
    ) -> None:
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("edge_hidden", edge_hidden),
            ("message_passing_steps", message_passing_steps),
            ("set2set_steps", set2set_steps),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if len(tasks) == 0 or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be non-empty and distinct, got {tasks}")
        self.tasks = tuple(tasks)
        self.dim = dim
        self.edge_hidden = edge_hidden
        self.message_passing_steps = message_passing_steps
        self.set2set_steps = set2set_steps
        self.embed = nn.Linear(len(NODE_FEATURES), dim)
        self.conv = self.conv_class(dim, len(EDGE_FEATURES), edge_hidden)
        self.gru = nn.GRUCell(dim, dim)
        self.set2set = Set2Set(dim, set2set_steps)
        self.readout = nn.Linear(2 * dim, dim)
        self.heads = nn.ModuleList(nn.Linear(dim, 1) for _ in self.tasks)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(tasks={self.tasks}, dim={self.dim}, edge_hidden={self.edge_hidden}, "
            f"message_passing_steps={self.message_passing_steps}, set2set_steps={self.set2set_steps})"
        )

    def _encode_block(self, block: GraphBlock) -> Tensor:
        count, size, _ = block.node_features.shape
        out = F.relu(self.embed(block.node_features))
        state = out.reshape(count * size, self.dim)
        context = self.conv.prepare(block)
        for _ in range(self.message_passing_steps):
            messages = F.relu(self.conv(out, context))
            state = self.gru(messages.reshape(count * size, self.dim), state)
            out = state.view(count, size, self.dim)
        return self.set2set(out, block.node_mask)

    def forward(self, batch: QM9Batch, return_representation: bool = False):
        pooled = torch.cat([self._encode_block(block) for block in batch.blocks])
        rows = torch.cat([block.graph_index for block in batch.blocks])
        # blocks are sorted by molecule size; put the molecules back in batch order
        pooled = torch.empty_like(pooled).index_copy(0, rows, pooled)
        features = F.relu(self.readout(pooled))
        predictions = {task: head(features).squeeze(-1) for task, head in zip(self.tasks, self.heads)}
        if return_representation:
            return predictions, features
        return predictions

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def shared_parameters(self) -> list[nn.Parameter]:
        task = {id(p) for p in self.task_parameters()}
        return [p for p in self.parameters() if id(p) not in task]


class NaiveQM9MPNN(QM9MPNN):
    """`QM9MPNN` with per-edge weight matrices: slow, for tests and the speed script only."""

    conv_class = NaiveEdgeConditionedConv
