"""QM9 (11 regression tasks): data from the qm9pack wheel, the reference MPNN, losses and metrics.

Needs the `qm9` extra (`pip install 'go4align[qm9]'`) only to build the feature cache; importing this
package needs torch and numpy alone.
"""

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
)
from go4align.benchmarks.qm9.model import NaiveQM9MPNN, QM9MPNN
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
    "FEATURE_MODES", "INSTALL_HINT", "N_MOLECULES", "PROTOCOLS", "SPLIT_SEED", "SPLITS",
    "GraphBlock", "MoleculeGraph", "QM9Batch", "QM9Cache", "QM9Dataset", "batch_graphs", "collate",
    "load_or_build_cache", "load_qm9", "split_range",
    "NaiveQM9MPNN", "QM9MPNN",
    "METRIC_HIGHER_IS_BETTER", "METRIC_NAMES", "REPORT_UNITS", "STL_REFERENCE", "STL_REFERENCE_SOURCE",
    "TASK_NAMES", "QM9Metrics", "TargetStats", "losses",
]
