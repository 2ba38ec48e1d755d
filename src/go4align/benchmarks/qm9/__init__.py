"""QM9 (11 regression tasks): data from the qm9pack wheel, the reference MPNN, losses and metrics,
and `make_benchmark`, the benchmark of the harness under the full, reduced or tiny protocol.

Needs the `qm9` extra (`pip install 'go4align[qm9]'`) only to build the feature cache; importing this
package needs torch and numpy alone.
"""

from go4align.benchmarks.qm9.benchmark import TRAINING_PROTOCOLS, make_benchmark
from go4align.benchmarks.qm9.data import (
    FEATURE_MODES,
    INSTALL_HINT,
    N_MOLECULES,
    PROTOCOLS,
    SPLIT_SEED,
    SPLITS,
    GraphBlock,
    MoleculeGraph,
    QM9Batch,
    QM9Cache,
    QM9Dataset,
    batch_graphs,
    collate,
    load_or_build_cache,
    load_qm9,
    split_range,
    split_ranges,
)
from go4align.benchmarks.qm9.model import QM9MPNN, NaiveQM9MPNN
from go4align.benchmarks.qm9.tasks import (
    METRIC_HIGHER_IS_BETTER,
    METRIC_NAMES,
    REPORT_UNITS,
    STL_REFERENCE,
    STL_REFERENCE_SOURCE,
    TASK_NAMES,
    QM9Metrics,
    TargetStats,
    losses,
)

__all__ = [
    "TRAINING_PROTOCOLS",
    "make_benchmark",
    "FEATURE_MODES",
    "INSTALL_HINT",
    "N_MOLECULES",
    "PROTOCOLS",
    "SPLIT_SEED",
    "SPLITS",
    "GraphBlock",
    "MoleculeGraph",
    "QM9Batch",
    "QM9Cache",
    "QM9Dataset",
    "batch_graphs",
    "collate",
    "load_or_build_cache",
    "load_qm9",
    "split_range",
    "split_ranges",
    "NaiveQM9MPNN",
    "QM9MPNN",
    "METRIC_HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "REPORT_UNITS",
    "STL_REFERENCE",
    "STL_REFERENCE_SOURCE",
    "TASK_NAMES",
    "QM9Metrics",
    "TargetStats",
    "losses",
]
