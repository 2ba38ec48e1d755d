"""Published numbers of the GO4Align paper family: one table per benchmark, keyed by the
benchmark's own metric and task names, so that the benchmarks take their single-task reference
from here and the report prints the paper's numbers beside ours.

Plain dicts, transcribed from the papers (the GO4Align paper, arXiv 2404.06486, and each
baseline's paper), each with its provenance. Per benchmark: ``directions`` and ``tasks`` of the
metrics in ``stl`` (the single-task reference, with ``stl_source``; ``None`` where none is
published), ``rows`` (per-metric results of some methods), ``decimals`` (their printed precision),
``mr`` and ``delta_m`` (per method, the papers' spellings). Delta-m values are in percent (lower is
better); MR is the paper's, over the paper's full set of methods, so it is not comparable with an
MR over a different set of methods. Imports nothing, so that the report needs no torch.
"""

from __future__ import annotations

__all__ = ["CELEBA", "CITYSCAPES", "NYUV2", "PUBLISHED", "QM9", "TABLE9_SECONDS_PER_EPOCH"]

_PAPER = "Shen et al., GO4Align: Group Optimization for Multi-Task Alignment, NeurIPS 2024 (arXiv 2404.06486)"

NYUV2 = {
    "provenance": f"{_PAPER}, Table 1 (NYUv2, 3 tasks; MTAN on SegNet, mean of the last 10 epochs).",
    "directions": {
        "miou": "higher",
        "pix_acc": "higher",
        "abs_err": "lower",
        "rel_err": "lower",
        "angle_mean": "lower",
        "angle_median": "lower",
        "within_11.25": "higher",
        "within_22.5": "higher",
        "within_30": "higher",
    },
    "tasks": {
        "semantic": ["miou", "pix_acc"],
        "depth": ["abs_err", "rel_err"],
        "normal": ["angle_mean", "angle_median", "within_11.25", "within_22.5", "within_30"],
    },
    "stl_source": (
        "the single-task results the paper family compares against (CAGrad's), as BASE in "
        "AvivNavon/nash-mtl experiments/nyuv2/utils.py, there with rates as fractions"
    ),
    "stl": {
        "miou": 38.30,
        "pix_acc": 63.76,
        "abs_err": 0.6754,
        "rel_err": 0.2780,
        "angle_mean": 25.01,
        "angle_median": 19.21,
        "within_11.25": 30.14,
        "within_22.5": 57.20,
        "within_30": 69.15,
    },
    "rows": {
        "LS": {
            "miou": 39.29,
            "pix_acc": 65.33,
            "abs_err": 0.5493,
            "rel_err": 0.2263,
            "angle_mean": 28.15,
            "angle_median": 23.96,
            "within_11.25": 22.09,
            "within_22.5": 47.50,
            "within_30": 61.08,
        },
        "FAMO": {
            "miou": 38.88,
            "pix_acc": 64.90,
            "abs_err": 0.5474,
            "rel_err": 0.2194,
            "angle_mean": 25.06,
            "angle_median": 19.57,
            "within_11.25": 29.21,
            "within_22.5": 56.61,
            "within_30": 68.98,
        },
        "Nash-MTL": {
            "miou": 40.13,
            "pix_acc": 65.93,
            "abs_err": 0.5261,
            "rel_err": 0.2171,
            "angle_mean": 25.26,
            "angle_median": 20.08,
            "within_11.25": 28.40,
            "within_22.5": 55.47,
            "within_30": 68.15,
        },
        "GO4Align": {
            "miou": 40.42,
            "pix_acc": 65.37,
            "abs_err": 0.5492,
            "rel_err": 0.2167,
            "angle_mean": 24.76,
            "angle_median": 18.94,
            "within_11.25": 30.54,
            "within_22.5": 57.87,
            "within_30": 69.84,
        },
    },
    # Printed precision of the rows above, which is what the paper's MR ranks.
    "decimals": {
        "miou": 2,
        "pix_acc": 2,
        "abs_err": 4,
        "rel_err": 4,
        "angle_mean": 2,
        "angle_median": 2,
        "within_11.25": 2,
        "within_22.5": 2,
        "within_30": 2,
    },
    "mr": {"LS": 9.89, "FAMO": 4.33, "Nash-MTL": 2.89, "GO4Align": 2.11},
    "delta_m": {
        "LS": 5.59,
        "SI": 4.39,
        "RLW": 7.78,
        "DWA": 3.57,
        "UW": 4.05,
        "MGDA": 1.38,
        "PCGrad": 3.97,
        "GradDrop": 3.58,
        "CAGrad": 0.20,
        "IMTL-G": -0.76,
        "Nash-MTL": -4.04,
        "FAMO": -4.10,
        "GO4Align": -6.08,
    },
}

CITYSCAPES = {
    "provenance": (
        f"{_PAPER}, CityScapes results (2 tasks; MTAN on SegNet, mean of the last 10 epochs). "
        "LS from the Nash-MTL paper's table: the FAMO and GO4Align tables print SI's row "
        "for LS by mistake."
    ),
    "directions": {"miou": "higher", "pix_acc": "higher", "abs_err": "lower", "rel_err": "lower"},
    "tasks": {"semantic": ["miou", "pix_acc"], "depth": ["abs_err", "rel_err"]},
    "stl_source": (
        "the single-task results the paper family compares against (CAGrad's), as BASE in "
        "Cranial-XIX/FAMO experiments/cityscapes/utils.py, there with rates as fractions"
    ),
    "stl": {"miou": 74.01, "pix_acc": 93.16, "abs_err": 0.0125, "rel_err": 27.77},
    "rows": {"GO4Align": {"miou": 72.63, "pix_acc": 93.03, "abs_err": 0.0164, "rel_err": 27.58}},
    "decimals": {"miou": 2, "pix_acc": 2, "abs_err": 4, "rel_err": 2},
    "mr": {},
    "delta_m": {
        "LS": 22.60,
        "SI": 14.11,
        "RLW": 24.38,
        "DWA": 21.45,
        "UW": 5.89,
        "MGDA": 44.14,
        "PCGrad": 18.29,
        "GradDrop": 23.73,
        "CAGrad": 11.64,
        "IMTL-G": 11.10,
        "Nash-MTL": 6.82,
        "FAMO": 8.13,
        "GO4Align": 8.11,
    },
}

# The metrics of go4align.benchmarks.qm9: each target's test MAE (energies in meV).
_QM9_TARGETS = ["mu", "alpha", "eps_HOMO", "eps_LUMO", "R2", "ZPVE", "U0", "U", "H", "G", "c_v"]
_QM9_METRICS = [f"{target}_mae" for target in _QM9_TARGETS]

QM9 = {
    "provenance": (
        f"{_PAPER}, QM9 results (11 tasks; MPNN, test MAE at the best validation epoch; "
        "GO4Align with K = 5). Energies in meV."
    ),
    "directions": {name: "lower" for name in _QM9_METRICS},
    "tasks": {target: [f"{target}_mae"] for target in _QM9_TARGETS},
    "stl_source": (
        "Single-task MPNN test MAE (reported units) from Navon et al., Multi-Task Learning as a "
        "Bargaining Game (Nash-MTL), ICML 2022, QM9 table; reused unchanged as the Delta-m baseline by "
        "FAMO (NeurIPS 2023) and GO4Align (NeurIPS 2024); also the BASE array of the Nash-MTL repository, "
        "experiments/quantum_chemistry/utils.py"
    ),
    "stl": dict(
        zip(
            _QM9_METRICS,
            [0.0671, 0.1814, 60.576, 53.915, 0.5027, 4.539, 58.838, 64.244, 63.852, 66.223, 0.07212],
            strict=True,
        )
    ),
    "rows": {
        "GO4Align": dict(
            zip(_QM9_METRICS, [0.17, 0.35, 102.4, 119.0, 1.22, 4.94, 53.9, 54.3, 54.3, 53.9, 0.11], strict=True)
        )
    },
    "decimals": dict(zip(_QM9_METRICS, [2, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2], strict=True)),
    "mr": {},
    "delta_m": {
        "LS": 177.6,
        "SI": 77.8,
        "RLW": 203.8,
        "DWA": 175.3,
        "UW": 108.0,
        "MGDA": 120.5,
        "PCGrad": 125.7,
        "CAGrad": 112.8,
        "IMTL-G": 77.2,
        "Nash-MTL": 62.0,
        "FAMO": 58.5,
        "GO4Align": 52.7,
    },
}

CELEBA = {
    "provenance": (
        f"{_PAPER}, CelebA results (40 binary attributes, F1; FAMO's CNN, test at the best "
        "validation epoch). No single-task F1 values are published."
    ),
    "directions": {},
    "tasks": {},
    "stl_source": "not published; produced by the harness's STL runs (one run per attribute)",
    "stl": None,
    "rows": {},
    "decimals": {},
    "mr": {},
    "delta_m": {
        "LS": 4.15,
        "SI": 7.20,
        "RLW": 1.46,
        "DWA": 3.20,
        "UW": 3.23,
        "MGDA": 14.85,
        "PCGrad": 3.17,
        "GradDrop": 3.29,
        "CAGrad": 2.48,
        "IMTL-G": 0.84,
        "Nash-MTL": 2.84,
        "FAMO": 1.21,
        "GO4Align": 0.88,
    },
}

PUBLISHED = {"nyuv2": NYUV2, "cityscapes": CITYSCAPES, "qm9": QM9, "celeba": CELEBA}

TABLE9_SECONDS_PER_EPOCH = {
    "provenance": f"{_PAPER}, Table 9 (seconds per epoch on one A100 GPU).",
    "nyuv2": {
        "LS": 86.2,
        "GO4Align": 87.8,
        "FAMO": 102.9,
        "Nash-MTL": 201.3,
        "MGDA": 199.7,
        "PCGrad": 192.4,
        "CAGrad": 180.4,
        "IMTL-G": 180.7,
    },
    "qm9": {
        "LS": 89.0,
        "GO4Align": 93.5,
        "FAMO": 100.4,
        "Nash-MTL": 585.4,
        "MGDA": 601.5,
        "PCGrad": 352.1,
        "CAGrad": 296.4,
        "IMTL-G": 306.1,
    },
    "cityscapes": {
        "LS": 66.6,
        "GO4Align": 67.3,
        "FAMO": 78.7,
        "Nash-MTL": 138.3,
        "MGDA": 136.7,
        "PCGrad": 100.2,
        "CAGrad": 107.8,
        "IMTL-G": 113.5,
    },
    "celeba": {
        "LS": 170.8,
        "GO4Align": 171.7,
        "FAMO": 183.5,
        "Nash-MTL": 2134.8,
        "MGDA": 902.5,
        "PCGrad": 1486.7,
        "CAGrad": 590.1,
        "IMTL-G": 522.2,
    },
}
