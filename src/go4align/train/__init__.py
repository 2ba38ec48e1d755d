"""Training: one run (:func:`train_run`), grids of methods x seeds (:func:`run_grid`), method
specs, checkpoints that resume exactly."""

from .grid import check_output_dir, merge_stl, prepare_grid, run_dir_of, run_grid
from .placement import distributed
from .spec import MethodSpec, parse_method_spec, single_task_weighting, split_methods
from .trainer import StepInfo, Trainer, param_groups, train_run

__all__ = [
    "MethodSpec",
    "StepInfo",
    "Trainer",
    "check_output_dir",
    "distributed",
    "merge_stl",
    "param_groups",
    "parse_method_spec",
    "prepare_grid",
    "run_dir_of",
    "run_grid",
    "single_task_weighting",
    "split_methods",
    "train_run",
]
