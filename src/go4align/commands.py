"""The command lines that grids record: as typed, never with a path of the machine.

One sanitiser for every command a grid records or a report prints: :func:`portable_command`,
after :func:`entry_command` for an argv list (the running program's, or an old ``grid.json``'s).
Imports nothing of the package and neither torch nor numpy, so that the report can use it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["entry_command", "portable_command"]


def entry_command(argv: Sequence[str] | None = None) -> str:
    """The running program's command line without the path of its script: ``go4align ...`` for
    the console script, ``python -m pkg ...`` for a module, ``python script.py ...`` otherwise."""
    argv = list(sys.argv if argv is None else argv) or [""]
    script = Path(argv[0])
    if script.name == "__main__.py":
        head = f"python -m {script.parent.name}"
    elif script.name == "go4align":
        head = "go4align"
    else:
        head = f"python {shlex.quote(script.name)}" if script.name else "python"
    return " ".join([head, shlex.join(argv[1:])]) if argv[1:] else head


def portable_command(command: str) -> str:
    """``command`` without a path of the machine: an absolute path argument (also in
    ``--option=/path``) inside the working directory becomes relative to it (the same command
    from there); one outside it keeps only its last part, after ``.../`` (elided)."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: not a command line shlex.join wrote; left as it is
        return command
    changed = [_portable(word) for word in words]
    return command if changed == words else shlex.join(changed)


def _portable(word: str) -> str:
    option, equals, value = word.partition("=")
    if equals and option.startswith("-") and os.path.isabs(value):
        return f"{option}={_portable(value)}"
    if not os.path.isabs(word):
        return word
    try:
        relative = os.path.relpath(word)
    except ValueError:  # another drive (Windows): no relative path leads there
        relative = os.pardir
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return ".../" + Path(word).name
    return relative
