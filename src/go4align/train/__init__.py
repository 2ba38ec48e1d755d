"""Training: one run (:func:`train_run`), grids of methods x seeds (:func:`run_grid`), method
specs, checkpoints that resume exactly."""

from .grid import check_output_dir, merge_stl, prepare_grid, run_dir_of, run_grid
from .placement import distributed
from .spec import MethodSpec, parse_method_spec, single_task_weighting, split_methods
from .tensorboard import TensorBoardCallback
from .trainer import EpochInfo, StepInfo, Trainer, param_groups, train_run

__all__ = [
    "EpochInfo",
    "MethodSpec",
    "StepInfo",
    "TensorBoardCallback",
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
