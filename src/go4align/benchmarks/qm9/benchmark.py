"""QM9 as a harness benchmark: the 11 regression tasks under the paper's protocol or a smaller one.

Three protocols share the model (the reference MPNN), the per-task MSE losses on standardised
targets and the test MAE in the paper's units, and each has its split (`data.PROTOCOLS`) and its
training protocol (:data:`TRAINING_PROTOCOLS`):

- ``"full"``: the paper's (Nash-MTL/FAMO/GO4Align): 110,831 / 10,000 / 10,000 molecules, 300 epochs
  of batch 120, Adam 1e-3 (the best of the paper's grid {1e-3, 5e-4, 1e-4}), ReduceLROnPlateau
  (factor 0.7, patience 5, min_lr 1e-5, as the reference trainer) on the validation Delta-m, test
  metrics at the epoch with the best validation Delta-m; GO4Align with K = 5.
- ``"reduced"``: the CPU-sized protocol of the evidence runs (docs/benchmarks.md): the first 10,000 / 2,000 / 10,000
  molecules of the full splits, 6 epochs, no scheduler, otherwise as ``"full"``.
- ``"tiny"``: 200 / 100 / 100 molecules and 2 epochs of batch 50 with the full protocol's
  scheduler, so that tests run every part of the full protocol in seconds.

The best validation epoch is chosen by Delta-m against the paper's single-task MAEs
(`tasks.STL_REFERENCE`), which the report also uses when a grid has no ``stl`` runs. Only the full
protocol can approach them: at the reduced budget, train STL references at the same budget (method
``stl``), which the report then uses instead.
"""

from __future__ import annotations

import os

from go4align.benchmarks.api import Benchmark, Metric, Protocol, Task
from go4align.benchmarks.qm9.data import SPLITS, collate, load_qm9
from go4align.benchmarks.qm9.model import QM9MPNN
from go4align.benchmarks.qm9.tasks import METRIC_NAMES, STL_REFERENCE, TASK_NAMES, QM9Metrics, losses

__all__ = ["TRAINING_PROTOCOLS", "make_benchmark"]

_SHARED = {
    "lr": 1e-3,
    "reporting_rule": "best_validation",
    "selection": "delta_m",
    "method_options": {"go4align": {"num_groups": 5}},
}
_PLATEAU = {"scheduler": "plateau", "scheduler_options": {"factor": 0.7, "patience": 5, "min_lr": 1e-5}}

TRAINING_PROTOCOLS: dict[str, Protocol] = {
    "full": Protocol(epochs=300, batch_size=120, **_SHARED, **_PLATEAU),
    "reduced": Protocol(epochs=6, batch_size=120, **_SHARED),
    "tiny": Protocol(epochs=2, batch_size=50, **_SHARED, **_PLATEAU),
}


def make_benchmark(
    protocol: str = "full",
    features: str = "reference",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
) -> Benchmark:
    """QM9 under ``protocol`` (``"full"``, ``"reduced"`` or ``"tiny"``, see the module docstring).

    Args:
        features: ``"reference"`` (torch_geometric's node features, quirks included) or ``"rdkit"``
            (proper aromaticity and hybridisation, a documented deviation); see `data.featurise_molecule`.
        data_dir: the folder of qm9pack's CSV files (default: the installed qm9pack), read only to
            build the feature cache.
        cache_dir: where the feature cache lies (default: ``$GO4ALIGN_CACHE/qm9`` or
            ``~/.cache/go4align/qm9``).
        train_size, val_size, test_size: keep the first molecules of a split of ``protocol``, e.g.
            ``protocol="full", train_size=20000, val_size=2000`` (the training protocol stays the
            protocol's).

    The first use of a protocol featurises its molecules into the cache, which needs the ``qm9``
    extra (``pip install 'go4align[qm9]'``); later uses read the cache only.
    """
    if protocol not in TRAINING_PROTOCOLS:
        raise ValueError(f"unknown QM9 protocol {protocol!r}; choose one of {sorted(TRAINING_PROTOCOLS)}")
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    splits = load_qm9(protocol, features, sizes=sizes, cache_dir=cache_dir, data_dir=data_dir)
    stats = splits["train"].stats
    # The sizes are recorded as they resolve, so that naming a protocol's own sizes is the same run.
    # Where the files and the cache lie is not part of the benchmark's identity (see fashion).
    options = {"protocol": protocol, "features": features, **{f"{s}_size": len(splits[s]) for s in SPLITS}}
    return Benchmark(
        name="qm9",
        tasks=[Task(task, Metric(metric, higher_is_better=False)) for task, metric in zip(TASK_NAMES, METRIC_NAMES)],
        datasets=splits.__getitem__,
        model=lambda seed: QM9MPNN(),
        losses=losses,
        metrics=lambda: QM9Metrics(stats),
        protocol=TRAINING_PROTOCOLS[protocol],
        stl_reference=STL_REFERENCE,
        collate_fn=collate,
        options=options,
    )
