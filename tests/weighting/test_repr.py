"""The exact repr of every method, with its defaults and its first non-default option set (the
first two option sets of its row in ``helpers.methods``): a repr shows the constructor arguments
resolved (a preset's or a mode's values, not ``None``), and the modules the method holds."""

from __future__ import annotations

import pytest
from helpers.methods import METHODS, option_id

#: test id -> repr, for 3 tasks
REPRS = {
    "ls": "LS(num_tasks=3)",
    "stl": "STL(num_tasks=3, task=0)",
    "stl-task=2": "STL(num_tasks=3, task=2)",
    "si": "SI(num_tasks=3, variant='log')",
    "si-variant=log1p": "SI(num_tasks=3, variant='log1p')",
    "gls": "GLS(num_tasks=3)",
    "rlw": "RLW(num_tasks=3, seed=0)",
    "rlw-seed=3": "RLW(num_tasks=3, seed=3)",
    "dwa": "DWA(num_tasks=3, temperature=2.0, mode='iteration', window=25, reduction='mean')",
    "dwa-mode=epoch": "DWA(num_tasks=3, temperature=2.0, mode='epoch', window=25, reduction='sum')",
    "uw": "UW(num_tasks=3, init=0.0, lr=0.025)",
    "uw-init=-0.5": "UW(num_tasks=3, init=-0.5, lr=0.025)",
    "famo": "FAMO(num_tasks=3, gamma=0.001, lr=0.025, eps=1e-08, max_norm=0.0)",
    "famo-max_norm=1.0": "FAMO(num_tasks=3, gamma=0.001, lr=0.025, eps=1e-08, max_norm=1.0)",
    "go4align": (
        "GO4Align(\n"
        "  num_tasks=3, num_groups=2, preset='default', beta=0.0001, smoothing='relative', max_scale=100.0, strict=False, scale_balance='mean', smooth_alignment=True, loss_floor=None, min_weight_ratio=1e-08\n"
        "  (grouping): Grouping(num_groups=2, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "go4align-num_groups=3": (
        "GO4Align(\n"
        "  num_tasks=3, num_groups=3, preset='default', beta=0.0001, smoothing='relative', max_scale=100.0, strict=False, scale_balance='mean', smooth_alignment=True, loss_floor=None, min_weight_ratio=1e-08\n"
        "  (grouping): Grouping(num_groups=3, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "go4align-paper": (
        "GO4AlignPaper(\n"
        "  num_tasks=3, num_groups=2, preset='paper', beta=0.0001, smoothing='absolute', max_scale=inf, strict=True, scale_balance='mean', smooth_alignment=True, loss_floor=None, min_weight_ratio=0.0\n"
        "  (grouping): Grouping(num_groups=2, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "go4align-paper-num_groups=3,loss_floor=1e-06": (
        "GO4AlignPaper(\n"
        "  num_tasks=3, num_groups=3, preset='paper', beta=0.0001, smoothing='absolute', max_scale=inf, strict=True, scale_balance='mean', smooth_alignment=True, loss_floor=1e-06, min_weight_ratio=0.0\n"
        "  (grouping): Grouping(num_groups=3, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "mgda": "MGDA(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0, normalisation='none', solver='reference', max_iter=250)",
    "mgda-solver=exact,normalisation=loss+": "MGDA(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0, normalisation='loss+', solver='exact', max_iter=250)",
    "mgda-ub": "MGDAUB(num_tasks=3, target='representation', head_gradients='weighted', jacobian='auto', max_norm=0.0, normalisation='none', solver='reference', max_iter=250)",
    "mgda-ub-normalisation=loss": "MGDAUB(num_tasks=3, target='representation', head_gradients='weighted', jacobian='auto', max_norm=0.0, normalisation='loss', solver='reference', max_iter=250)",
    "pcgrad": "PCGrad(num_tasks=3, target='parameters', head_gradients='unweighted', jacobian='auto', max_norm=0.0, reduction='sum', seed=0)",
    "pcgrad-reduction=mean,seed=5": "PCGrad(num_tasks=3, target='parameters', head_gradients='unweighted', jacobian='auto', max_norm=0.0, reduction='mean', seed=5)",
    "graddrop": "GradDrop(num_tasks=3, target='parameters', leak=0.0, activation_sign=False, max_norm=1.0, seed=0, jacobian='auto')",
    "graddrop-leak=0.5,activation_sign=False": "GradDrop(num_tasks=3, target='parameters', leak=0.5, activation_sign=False, max_norm=1.0, seed=0, jacobian='auto')",
    "cagrad": "CAGrad(num_tasks=3, target='parameters', head_gradients='unweighted', jacobian='auto', max_norm=0.0, c=0.4, rescale=1, solver='slsqp')",
    "cagrad-c=0.0,rescale=2": "CAGrad(num_tasks=3, target='parameters', head_gradients='unweighted', jacobian='auto', max_norm=0.0, c=0.0, rescale=2, solver='slsqp')",
    "imtl-g": "IMTLG(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0)",
    "imtl-g-target=representation": "IMTLG(num_tasks=3, target='representation', head_gradients='weighted', jacobian='auto', max_norm=0.0)",
    "nash-mtl": "NashMTL(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=1.0, update_weights_every=1, optim_niter=20, solver='CLARABEL')",
    "nash-mtl-max_norm=0.0,update_weights_every=2": "NashMTL(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0, update_weights_every=2, optim_niter=20, solver='CLARABEL')",
    "aligned-mtl": "AlignedMTL(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0, scale_mode='min')",
    "aligned-mtl-scale_mode=median": "AlignedMTL(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0, scale_mode='median')",
    "torchjd": (
        "TorchJD(\n"
        "  num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0\n"
        "  (aggregator): ConFIG(pref_vector=None)\n"
        ")"
    ),
    "torchjd-aggregator=Mean": (
        "TorchJD(\n"
        "  num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0\n"
        "  (aggregator): Mean()\n"
        ")"
    ),
    "grouped-uw": (
        "Grouped(\n"
        "  num_tasks=3\n"
        "  (method): UW(num_tasks=3, init=0.0, lr=0.025)\n"
        "  (grouping): Grouping(num_groups=2, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "grouped-uw-num_groups=3": (
        "Grouped(\n"
        "  num_tasks=3\n"
        "  (method): UW(num_tasks=3, init=0.0, lr=0.025)\n"
        "  (grouping): Grouping(num_groups=3, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "grouped-famo": (
        "Grouped(\n"
        "  num_tasks=3\n"
        "  (method): FAMO(num_tasks=3, gamma=0.001, lr=0.025, eps=1e-08, max_norm=0.0)\n"
        "  (grouping): Grouping(num_groups=2, clustering='exact', group_weights=None, seed=0)\n"
        ")"
    ),
    "grouped-famo-clustering=lloyd": (
        "Grouped(\n"
        "  num_tasks=3\n"
        "  (method): FAMO(num_tasks=3, gamma=0.001, lr=0.025, eps=1e-08, max_norm=0.0)\n"
        "  (grouping): Grouping(num_groups=2, clustering='lloyd', group_weights=None, seed=0)\n"
        ")"
    ),
}

CASES = [
    pytest.param(info, options, id=option_id(info.label, options))
    for info in METHODS
    for options in info.option_sets[:2]
]


def test_every_case_has_its_repr_and_no_other():
    assert sorted(REPRS) == sorted(case.id for case in CASES)


@pytest.mark.parametrize("info, options", CASES)
def test_the_repr_is_exact(info, options):
    assert repr(info.make_or_skip(3, **options)) == REPRS[option_id(info.label, options)]
