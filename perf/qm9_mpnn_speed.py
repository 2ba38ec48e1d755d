"""Training-step time of the QM9 MPNN: naive per-edge NNConv versus the node-level reformulation.

One step = forward + sum of the 11 per-task MSE losses + backward, on one batch of real QM9 training
molecules (reduced protocol, features="reference"); median of several runs, the two models taking
turns, after one warm-up round.
Builds the reduced protocol's feature cache (first 30,000 molecules of the split permutation) on the
first run, which needs `pip install 'go4align[qm9]'`.

    PYTHONPATH=src python perf/qm9_mpnn_speed.py [--batch-size 120] [--runs 5] [--threads N] [--cache-dir DIR]
"""

import argparse
import statistics
import time

import torch

from go4align.benchmarks.qm9 import QM9MPNN, TASK_NAMES, NaiveQM9MPNN, collate, load_qm9, losses


def step_seconds(model: torch.nn.Module, batch, targets) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    losses(model(batch), targets).sum().backward()
    return time.perf_counter() - start


def interleaved_medians(models: dict, batch, targets, runs: int) -> dict[str, float]:
    """Median step time per model; the models take turns so that a shared machine's changing load
    hits both alike. The first round warms up allocators and kernels and is not timed."""
    times = {name: [] for name in models}
    for run in range(runs + 1):
        for name, model in models.items():
            seconds = step_seconds(model, batch, targets)
            if run:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=120)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice, one per core)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    train = load_qm9("reduced", "reference", cache_dir=args.cache_dir)["train"]
    print(f"load_qm9('reduced'): {time.perf_counter() - start:.1f} s (includes featurising if not cached)")

    generator = torch.Generator().manual_seed(args.seed)
    items = [train[int(i)] for i in torch.randperm(len(train), generator=generator)[: args.batch_size]]
    collate_times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        batch, targets = collate(items)
        collate_times.append(time.perf_counter() - start)
    atoms = sum(int(block.node_mask.sum()) for block in batch.blocks)
    padded = sum(block.node_mask.numel() for block in batch.blocks)
    edges = sum(int(m.sum()) * (int(m.sum()) - 1) for block in batch.blocks for m in block.node_mask)
    print(
        f"batch: {len(batch)} molecules, {atoms} atoms ({padded} padded), {edges} directed edges, "
        f"{len(batch.blocks)} blocks; collate {statistics.median(collate_times) * 1000:.1f} ms"
    )

    torch.manual_seed(args.seed)
    fast = QM9MPNN()
    naive = NaiveQM9MPNN()
    naive.load_state_dict(fast.state_dict())
    with torch.no_grad():
        fast_out, naive_out = fast(batch), naive(batch)
    difference = max((fast_out[t] - naive_out[t]).abs().max().item() for t in TASK_NAMES)

    medians = interleaved_medians({"naive": naive, "fast": fast}, batch, targets, args.runs)
    naive_time, fast_time = medians["naive"], medians["fast"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs")
    print(f"naive step: {naive_time:.3f} s")
    print(f"fast step:  {fast_time:.3f} s")
    print(f"ratio naive/fast: {naive_time / fast_time:.1f}x (max prediction difference {difference:.1e})")


if __name__ == "__main__":
    main()
