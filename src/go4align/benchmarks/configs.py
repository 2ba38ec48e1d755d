"""The config files of the code's own protocols, written from the code: never edited by hand.

``configs/`` holds a TOML file per protocol that ``go4align bench --config FILE`` runs. Those of
:data:`GENERATED` are this module's output: the benchmark module's protocol (the paper's where
the paper has one) rendered as a ``[protocol]`` table, with a comment saying where it comes
from. After changing a protocol in the code, run ``python -m go4align.benchmarks.configs`` from
the repository's root; ``--check`` only says which files differ (exit 1), as the tests do. The
other files of ``configs/`` (budgets of our own, such as ``fashion-cpu.toml``) are written by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from go4align.benchmarks.api import Protocol

__all__ = ["GENERATED", "SHOWN", "ConfigFile", "check", "render", "write"]


@dataclass(frozen=True)
class ConfigFile:
    """One generated config: ``benchmark`` with ``options``, trained under the protocol that
    ``source`` (``"module:NAME"`` or ``"module:NAME[key]"``) names; ``about``: its header comment."""

    name: str
    benchmark: str
    source: str
    about: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def protocol(self) -> Protocol:
        module, _, attribute = self.source.partition(":")
        attribute, _, key = attribute.partition("[")
        value = getattr(importlib.import_module(module), attribute)
        return value[key.rstrip("]").strip("\"'")] if key else value


def _qm9_reduced_sizes() -> dict[str, int]:
    from go4align.benchmarks.qm9.data import PROTOCOLS

    return {f"{split}_size": len(PROTOCOLS["reduced"][split]) for split in ("train", "val", "test")}


GENERATED: tuple[ConfigFile, ...] = (
    ConfigFile(
        "nyuv2.toml",
        "nyuv2",
        "go4align.benchmarks.nyuv2:PROTOCOL",
        "NYUv2 (3 tasks), the protocol of Nash-MTL, FAMO and GO4Align: MTAN on SegNet, 200 epochs, batch 2, "
        "Adam 1e-4 halved after epoch 100 (StepLR(step_size=100, gamma=0.5) in the reference trainer), "
        "reported as the mean of the last 10 epochs' test metrics. GO4Align: K = 2 (paper). Evaluation "
        "uses the training batch size, as the reference, whose per-batch averaged depth and normal "
        "metrics depend on it.",
    ),
    ConfigFile(
        "cityscapes.toml",
        "cityscapes",
        "go4align.benchmarks.cityscapes:PROTOCOL",
        "CityScapes (2 tasks, 7 classes, 128x256): MTAN on SegNet, 200 epochs, batch 8, Adam 1e-4 halved "
        "after epoch 100, mean of the last 10 epochs' test metrics. M = 2, so K = 2. Evaluation uses the "
        "training batch size, as the reference. FAMO's weight decay 1e-2 is that of FAMO's CityScapes "
        "script (the paper's FAMO row; 1e-3 elsewhere).",
    ),
    ConfigFile(
        "celeba.toml",
        "celeba",
        "go4align.benchmarks.celeba:PROTOCOL",
        "CelebA (40 binary attributes): FAMO's CNN on 64x64 images, 15 epochs, batch 256, Adam 3e-4 "
        "(FAMO's trainer); test F1 at the epoch with the best mean validation F1, as FAMO's trainer. The "
        "paper publishes no K for CelebA: GO4Align runs with its default unless a spec gives one. No STL "
        'F1 is published: add the method "stl" (40 single-task runs). FAMO\'s CelebA trainer optimises '
        "the model's parameters only, so UW's log-variances stay at 0 (the published UW row is LS with "
        "halved losses): train_weighting_parameters = false; true trains them (lr 0.025).",
    ),
    ConfigFile(
        "qm9.toml",
        "qm9",
        'go4align.benchmarks.qm9:TRAINING_PROTOCOLS["full"]',
        "QM9 (11 targets), the full protocol: MPNN, 300 epochs, batch 120, Adam 1e-3 (the paper's grid is "
        "{1e-3, 5e-4, 1e-4}), ReduceLROnPlateau(factor 0.7, patience 5, min_lr 1e-5) on the validation "
        "Delta-m, as the reference trainer; test metrics at the epoch with the best validation Delta-m. "
        "GO4Align: K = 5 (paper, elbow of Delta-m against K). Split: test = the first 10k molecules of a "
        "fixed permutation, validation = the next 10k, train = the other 110,831.",
        {"protocol": "full"},
    ),
    ConfigFile(
        "qm9-reduced.toml",
        "qm9",
        'go4align.benchmarks.qm9:TRAINING_PROTOCOLS["reduced"]',
        "QM9, the reduced protocol that fits a CPU (docs/benchmarks.md): the same 10k test molecules as the "
        "full protocol, the first 2k of its validation and the first 10k of its training molecules; 6 "
        "epochs of batch 120 (504 steps), Adam 1e-3, no scheduler, test metrics at the best validation "
        "Delta-m. Delta-m against the paper's STL lands in the thousands of percent at this budget: train "
        'STL references at the same budget (method "stl") and compare against those. The sizes are '
        'those of protocol = "reduced", spelled out.',
        {"protocol": "reduced", **_qm9_reduced_sizes()},
    ),
    ConfigFile(
        "fashion.toml",
        "fashion",
        "go4align.benchmarks.fashion:PROTOCOL",
        "Multi-Fashion (2 tasks: the class of each of two overlaid Fashion-MNIST items). Not a benchmark "
        "of the GO4Align paper: a protocol of ours sized for a CPU (an epoch of 54,000 pairs took 33 s for "
        "GO4Align on one busy core), test accuracies at the epoch with the best mean validation accuracy.",
    ),
    ConfigFile(
        "digits.toml",
        "digits",
        "go4align.benchmarks.digits:PROTOCOL",
        "MultiDigits (2 tasks, scikit-learn's bundled 8x8 digits, 1,000 training pairs): seconds per run, "
        "for tests and the demo. Test accuracies at the epoch with the best mean validation accuracy.",
    ),
)

_WIDTH = 100
_COMMAND = "`python -m go4align.benchmarks.configs`"
#: Protocol fields every config shows, default or not: what a reader looks for first.
SHOWN = ("epochs", "batch_size", "lr", "optimizer", "reporting_rule")


def render(config: ConfigFile) -> str:
    """The TOML text of ``config``: the comment, ``benchmark``, ``[benchmark_options]``, the
    protocol's :data:`SHOWN` fields (``selection`` where the protocol uses it) and those that
    differ from :class:`Protocol`'s defaults, and one ``[protocol.method_options.NAME]`` table
    per method."""
    protocol = config.protocol()
    lines = [
        *_wrapped(config.about),
        f"# Generated from {config.source}",
        f"# by {_COMMAND}: change the code, not this file.",
    ]
    lines += [f"benchmark = {_value(config.benchmark)}"]
    if config.options:
        lines += ["", "[benchmark_options]", *(f"{k} = {_value(v)}" for k, v in config.options.items())]
    lines += ["", "[protocol]"]
    for item in dataclasses.fields(Protocol):
        value = getattr(protocol, item.name)
        shown = item.name in SHOWN or (item.name == "selection" and protocol.needs_validation)
        if item.name != "method_options" and (shown or value != _default(item)):
            lines.append(f"{item.name} = {_value(value)}")
    for method, options in protocol.method_options.items():
        lines += ["", f"[protocol.method_options.{method}]", *(f"{k} = {_value(v)}" for k, v in options.items())]
    return "\n".join(lines) + "\n"


def _default(item: dataclasses.Field) -> Any:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default  # MISSING for the required fields, which are always shown


def _wrapped(text: str) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > _WIDTH:
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line]


def _value(value: Any) -> str:
    """A TOML value: strings, booleans, numbers and (inline) tables of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain text of protocols
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"a config cannot hold {value!r} ({type(value).__name__})")


def _float(value: float) -> str:
    """The shorter of ``0.0001`` and ``1e-4`` (both TOML), as a person would write a rate."""
    mantissa, _, exponent = f"{value:e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{int(exponent)}"
    plain = repr(value)
    return scientific if len(scientific) < len(plain) and float(scientific) == value else plain


def check(directory: str | Path) -> list[str]:
    """The generated files of ``directory`` that are missing or differ from :func:`render`."""
    directory = Path(directory)
    stale = []
    for config in GENERATED:
        path = directory / config.name
        if not path.is_file() or path.read_text() != render(config):
            stale.append(config.name)
    return stale


def write(directory: str | Path) -> list[str]:
    """Write every generated file of ``directory`` that differs; returns their names."""
    directory = Path(directory)
    stale = check(directory)
    for config in GENERATED:
        if config.name in stale:
            (directory / config.name).write_text(render(config))
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m go4align.benchmarks.configs", description="Write the configs of the code's protocols."
    )
    parser.add_argument("--dir", default="configs", help="the configs folder (default: configs)")
    parser.add_argument("--check", action="store_true", help="only list the files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    if not Path(args.dir).is_dir():
        parser.error(f"--dir {args.dir!r} is not a directory")
    stale = check(args.dir) if args.check else write(args.dir)
    verb = "differ from the code" if args.check else "written"
    print(f"{', '.join(stale)} {verb}" if stale else "configs are up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
