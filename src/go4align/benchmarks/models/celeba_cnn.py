"""FAMO's CelebA network: a small VGG-like CNN shared by all attributes, one linear head each.

Follows Cranial-XIX/FAMO ``experiments/celeba/models.py`` (``Network``) layer for layer, with the
channel list ``[w, 2w, 4w, 8w]`` for a width ``w`` (64 in the reference; tests use a few channels):
conv(w)-pool, 2 x conv(2w)-pool, 2 x conv(4w)-pool, 2 x conv(8w), global average pooling, then two
bias-free linear layers 8w -> 8w with batch norm and ReLU. Each head is ``Linear(8w, 1)`` followed by
a sigmoid, so predictions are probabilities (the reference trains them with ``BCELoss``).
PyTorch's default initialisation, as the reference.

Contract shared by every model of the project: ``forward(x)`` returns ``{task: prediction}``
(``(B,)`` probabilities here); ``forward(x, return_representation=True)`` returns
``(predictions, representation)`` with the representation the shared ``(B, 8w)`` features every
head reads; ``shared_parameters()`` and ``task_parameters()`` are disjoint and cover all parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _linear(features: int) -> list[nn.Module]:
    return [nn.Linear(features, features, bias=False), nn.BatchNorm1d(features), nn.ReLU(inplace=True)]


class CelebACNN(nn.Module):
    """The shared CNN with one sigmoid head per task.

    Args:
        tasks: task names, one head each (the 40 attribute names for CelebA).
        width: channels of the first convolution (64 in the reference).
    """

    def __init__(self, tasks: Sequence[str], width: int = 64):
        super().__init__()
        self.tasks = tuple(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be a non-empty sequence of distinct names, got {tasks!r}")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        self.width = width
        w = width
        self.shared_base = nn.Sequential(
            *_conv(3, w),
            nn.MaxPool2d(2, stride=2),
            *_conv(w, 2 * w),
            *_conv(2 * w, 2 * w),
            nn.MaxPool2d(2, stride=2),
            *_conv(2 * w, 4 * w),
            *_conv(4 * w, 4 * w),
            nn.MaxPool2d(2, stride=2),
            *_conv(4 * w, 8 * w),
            *_conv(8 * w, 8 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            *_linear(8 * w),
            *_linear(8 * w),
        )
        # A list, not a dict keyed by name: task names need not be valid module names.
        self.heads = nn.ModuleList(nn.Linear(8 * w, 1) for _ in self.tasks)

    def forward(self, x: torch.Tensor, return_representation: bool = False):
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 8:
            raise ValueError(f"input must be (B, 3, H, W) with H, W >= 8 (three poolings), got {tuple(x.shape)}")
        h = self.shared_base(x)
        predictions = {task: torch.sigmoid(head(h)).squeeze(-1) for task, head in zip(self.tasks, self.heads)}
        if return_representation:
            return predictions, h
        return predictions

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared_base.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def extra_repr(self) -> str:
        return f"tasks=<{len(self.tasks)} tasks>, width={self.width}"
