"""SegNet for the dense benchmarks: MTAN (Liu et al., CVPR 2019) and the plain split network.

Both follow AvivNavon/nash-mtl ``experiments/nyuv2/models.py`` (``_SegNet`` = SegNet-MTAN,
``SegNetSplit`` = plain SegNet) layer for layer: the same convolutions, batch norms, attention
blocks and initialisation (Xavier-normal convolutions, zero biases, unit batch norms), with the
channel list ``[w, 2w, 4w, 8w, 8w]`` for a width ``w`` (64 in the paper; tests use a few channels).

Contract shared by every model of the project:

- ``forward(x)`` returns ``{task: prediction}``; ``forward(x, return_representation=True)`` returns
  ``(predictions, representation)``.
- ``shared_parameters()`` and ``task_parameters()`` are disjoint lists covering all parameters.

Outputs per task: ``"semantic"`` log-probabilities ``(B, C, H, W)``, ``"depth"`` ``(B, 1, H, W)``,
``"normal"`` unit vectors ``(B, 3, H, W)``. Inputs are ``(B, 3, H, W)`` with H and W multiples of 32
(five 2x2 poolings).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from go4align.benchmarks import dense

_LEVELS = 5


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _convs(channels: int, count: int) -> nn.Sequential:
    # One block unwrapped, as the reference nests it, so its checkpoints map key by key.
    if count == 1:
        return _conv(channels, channels)
    return nn.Sequential(*(_conv(channels, channels) for _ in range(count)))


def _attention(in_channels: int, out_channels: int) -> nn.Sequential:
    """MTAN's soft attention mask: two 1x1 convolutions, the last one squashed to (0, 1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.Sigmoid(),
    )


def _head(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def _channels(width: int) -> list[int]:
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    return [width, 2 * width, 4 * width, 8 * width, 8 * width]


def _decoder_channels(f: list[int], level: int) -> int:
    """Channels of the decoder's output at ``level``: the encoder's channels one level up."""
    return f[max(level - 1, 0)]


class _Backbone(nn.Module):
    """The shared SegNet encoder-decoder (max-pooling indices reused for unpooling).

    Level ``k`` (0 = full resolution) of the encoder is ``conv_block_enc[k](encoder_block[k](.))``; the
    decoder runs from level 4 back to 0 with ``conv_block_dec[k](decoder_block[k](unpool(.)))``.
    """

    def __init__(self, f: list[int]):
        super().__init__()
        self.encoder_block = nn.ModuleList(_conv(3 if k == 0 else f[k - 1], f[k]) for k in range(_LEVELS))
        self.conv_block_enc = nn.ModuleList(_convs(f[k], 1 if k < 2 else 2) for k in range(_LEVELS))
        self.decoder_block = nn.ModuleList(_conv(f[k], _decoder_channels(f, k)) for k in range(_LEVELS))
        self.conv_block_dec = nn.ModuleList(_convs(_decoder_channels(f, k), 1 if k < 2 else 2) for k in range(_LEVELS))

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Every level's features, each list indexed by level: the encoder block's output
        (``encoder_in``), the level's encoder output (``encoder_out``), the unpooled decoder input
        (``upsampled``) and the decoder output (``decoder_out``; ``decoder_out[0]`` is the last)."""
        features = {key: [None] * _LEVELS for key in ("encoder_in", "encoder_out", "upsampled", "decoder_out")}
        indices = [None] * _LEVELS
        h = x
        for k in range(_LEVELS):
            features["encoder_in"][k] = self.encoder_block[k](h)
            features["encoder_out"][k] = self.conv_block_enc[k](features["encoder_in"][k])
            h, indices[k] = F.max_pool2d(features["encoder_out"][k], 2, 2, return_indices=True)
        for k in reversed(range(_LEVELS)):
            features["upsampled"][k] = F.max_unpool2d(h, indices[k], 2, 2)
            h = self.conv_block_dec[k](self.decoder_block[k](features["upsampled"][k]))
            features["decoder_out"][k] = h
        return features


class _MultiTaskSegNet(nn.Module):
    """Heads and the model contract; subclasses give each task its final features."""

    def __init__(self, tasks: Sequence[str], num_classes: int, width: int):
        super().__init__()
        self.tasks = dense.check_tasks(tasks)
        if dense.SEMANTIC in self.tasks and (
            not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2
        ):
            raise ValueError(f"num_classes must be an int >= 2 for the semantic task, got {num_classes!r}")
        self.num_classes = num_classes
        self.width = width
        self.channels = _channels(width)
        self.backbone = _Backbone(self.channels)
        out = {dense.SEMANTIC: num_classes, dense.DEPTH: 1, dense.NORMAL: 3}
        self.heads = nn.ModuleDict({task: _head(self.channels[0], out[task]) for task in self.tasks})

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _task_features(self, features: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, return_representation: bool = False):
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"input must be (B, 3, H, W) with H and W multiples of 32, got {tuple(x.shape)}")
        features = self.backbone(x)
        predictions = {}
        for task, h in self._task_features(features).items():
            y = self.heads[task](h)
            if task == dense.SEMANTIC:
                y = F.log_softmax(y, dim=1)
            elif task == dense.NORMAL:
                y = y / y.norm(p=2, dim=1, keepdim=True)
            predictions[task] = y
        if return_representation:
            return predictions, features["decoder_out"][0]
        return predictions

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, num_classes={self.num_classes}, width={self.width}"


class SegNetSplit(_MultiTaskSegNet):
    """Plain SegNet with one head per task on the shared decoder output (hard parameter sharing).

    With a single task it is the single-task (STL) model. ``representation`` is the shared decoder's
    last feature map ``(B, width, H, W)``, the input of every head (as the reference).

    Args:
        tasks: dense task kinds (``"semantic"``, ``"depth"``, ``"normal"``).
        num_classes: classes of the semantic task.
        width: channels of the first layer (64 in the paper).
    """

    def __init__(self, tasks: Sequence[str], num_classes: int, width: int = 64):
        super().__init__(tasks, num_classes, width)
        self._init_weights()

    def _task_features(self, features):
        return {task: features["decoder_out"][0] for task in self.tasks}


class SegNetMTAN(_MultiTaskSegNet):
    """SegNet-MTAN: the shared SegNet plus one attention network per task.

    At every encoder and decoder level, task ``t`` computes a soft mask from the shared features and
    its own previous attended features, multiplies the shared level output by it, and passes the
    result on through a convolution. The mask blocks (``encoder_att[t]``, ``decoder_att[t]``) and the
    head are task ``t``'s; the convolutions between masks (``encoder_block_att``,
    ``decoder_block_att``) are applied by every task with the same weights, so they are shared.

    Parameter split (``parameter_split``): ``"reference"`` (default, as the Nash-MTL code behind the
    published tables, ``SegNetMtan.shared_parameters``) counts every parameter outside the heads
    as shared, attention masks included, so gradient-oriented methods see each task's masks in the
    shared gradient (zero for the other tasks). ``"strict"``: shared = SegNet backbone +
    ``encoder_block_att`` + ``decoder_block_att``; task = attention masks + heads.

    ``representation``: the shared decoder's last feature map ``(B, width, H, W)``, which each task's
    last mask multiplies before its head. The tasks also read earlier shared features, so gradients
    with respect to it do not carry every path from the losses to the backbone. (The reference
    returns the three task-specific attended features as a tuple instead.)

    Args:
        tasks: dense task kinds (``"semantic"``, ``"depth"``, ``"normal"``).
        num_classes: classes of the semantic task.
        width: channels of the first layer (64 in the paper).
        parameter_split: ``"reference"`` or ``"strict"`` (see above).
    """

    def __init__(self, tasks: Sequence[str], num_classes: int, width: int = 64, parameter_split: str = "reference"):
        super().__init__(tasks, num_classes, width)
        if parameter_split not in ("reference", "strict"):
            raise ValueError(f"parameter_split must be 'reference' or 'strict', got {parameter_split!r}")
        self.parameter_split = parameter_split
        f = self.channels
        self.encoder_block_att = nn.ModuleList(_conv(f[k], f[min(k + 1, _LEVELS - 1)]) for k in range(_LEVELS))
        self.decoder_block_att = nn.ModuleList(_conv(f[k], _decoder_channels(f, k)) for k in range(_LEVELS))
        self.encoder_att = nn.ModuleDict(
            {
                task: nn.ModuleList(_attention(f[k] if k == 0 else 2 * f[k], f[k]) for k in range(_LEVELS))
                for task in self.tasks
            }
        )
        self.decoder_att = nn.ModuleDict(
            {
                task: nn.ModuleList(
                    _attention(f[k] + _decoder_channels(f, k), _decoder_channels(f, k)) for k in range(_LEVELS)
                )
                for task in self.tasks
            }
        )
        self._init_weights()

    def _task_features(self, features):
        return {task: self._attend(task, features) for task in self.tasks}

    def _attend(self, task: str, features: dict[str, list[torch.Tensor]]) -> torch.Tensor:
        encoder_att, decoder_att = self.encoder_att[task], self.decoder_att[task]
        a = None
        for k in range(_LEVELS):
            shared = features["encoder_in"][k]
            mask = encoder_att[k](shared if a is None else torch.cat((shared, a), dim=1))
            a = F.max_pool2d(self.encoder_block_att[k](mask * features["encoder_out"][k]), 2, 2)
        for k in reversed(range(_LEVELS)):
            a = F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=True)
            a = self.decoder_block_att[k](a)
            mask = decoder_att[k](torch.cat((features["upsampled"][k], a), dim=1))
            a = mask * features["decoder_out"][k]
        return a

    def shared_parameters(self) -> list[nn.Parameter]:
        masks = [*self.encoder_att.parameters(), *self.decoder_att.parameters()]
        return [
            *self.backbone.parameters(),
            *self.encoder_block_att.parameters(),
            *self.decoder_block_att.parameters(),
            *(masks if self.parameter_split == "reference" else []),
        ]

    def task_parameters(self) -> list[nn.Parameter]:
        masks = [*self.encoder_att.parameters(), *self.decoder_att.parameters()]
        return [*(masks if self.parameter_split == "strict" else []), *self.heads.parameters()]


ARCHITECTURES = {"mtan": SegNetMTAN, "split": SegNetSplit}


def build_segnet(architecture: str, tasks: Sequence[str], num_classes: int, width: int = 64) -> nn.Module:
    """``ARCHITECTURES[architecture](tasks, num_classes, width)`` with a clear error for a bad name."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {tuple(ARCHITECTURES)}, got {architecture!r}")
    return ARCHITECTURES[architecture](tasks, num_classes=num_classes, width=width)
