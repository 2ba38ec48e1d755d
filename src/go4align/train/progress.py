"""What a grid shows while it trains: one progress display, notes, and a log of warnings.

:class:`GridProgress` is the one display of ``go4align bench`` and ``go4align demo``: run k of N,
the benchmark, method and seed of the run in progress, elapsed and remaining time. On a terminal
it is a tqdm bar; elsewhere (a CI log, a pipe) it prints one line per finished run, so logs stay
readable. The work of a run is counted in training steps (an STL run trains one model per task),
so the remaining time weighs long runs as such.

:func:`warnings_to_log` keeps third-party warnings (say, a solver's "Solution may be inaccurate")
out of the display: each goes, with the method, seed and step it was raised at, to the grid's
``warnings.log``; go4align's own warnings are shown as one plain line as well.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

__all__ = ["GridProgress", "warnings_to_log", "WARNINGS_LOG"]

WARNINGS_LOG = "warnings.log"
PACKAGE = Path(__file__).resolve().parents[1]


Run = Hashable  # a run's key on the display: (benchmark, method label, seed)


class GridProgress:
    """One display over every run of one or more grids.

    Runs are planned by key (planning a key twice counts it once, so a caller such as the demo can
    announce every run of several grids before the first starts), then begin, advance by training
    steps and finish; a run that will not train is dropped.

    Args:
        enabled: ``False`` shows nothing but the notes.
        stream: where the display goes (standard error by default).
        verbose: also show one line per epoch of every run.
    """

    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None, verbose: bool = False):
        self.enabled, self.verbose = enabled, verbose
        self.stream = stream if stream is not None else sys.stderr
        self.planned: dict[Run, int] = {}  # training steps of every run still on the display
        self.done = 0  # runs finished (or found complete)
        self.worked = 0  # training steps done in this process
        self.start = time.perf_counter()
        self.bar: tqdm | None = None
        if enabled and self.stream.isatty():
            self.bar = tqdm(
                total=0,
                file=self.stream,
                smoothing=0,  # runs differ in cost: the average rate of the whole display
                bar_format="{desc} |{bar:20}| {elapsed} elapsed, {remaining} left",
                dynamic_ncols=True,
            )

    @property
    def runs(self) -> int:
        return len(self.planned)

    @property
    def work(self) -> int:
        return sum(self.planned.values())

    def _total_changed(self) -> None:
        if self.bar is not None:
            self.bar.total = self.work
            self.bar.refresh()

    def plan(self, run: Run, steps: int) -> None:
        """Put ``run``, of ``steps`` training steps, on the display (once)."""
        self.planned.setdefault(run, steps)
        self._total_changed()

    def drop(self, run: Run) -> None:
        """Take a planned run that will not train (skipped) off the display."""
        self.planned.pop(run, None)
        self._total_changed()

    def found_complete(self, run: Run) -> None:
        """A planned run is already complete (a resumed grid): it counts, with nothing to train."""
        self.planned[run] = 0
        self.done += 1
        self._total_changed()

    def begin(self, description: str) -> None:
        """A run starts: ``description`` names its benchmark, method and seed."""
        if self.bar is not None:
            self.bar.set_description_str(f"run {self.done + 1} of {self.runs}: {description}")

    def advance(self, steps: int) -> None:
        """``steps`` training steps of the current run are done."""
        self.worked += steps
        if self.bar is not None:
            self.bar.update(steps)

    def finish(self, run: Run, description: str, steps_done: int) -> None:
        """A run ends after ``steps_done`` steps trained here (fewer than planned when it resumed)."""
        self.planned[run] = steps_done
        self.done += 1
        self._total_changed()
        if self.enabled and self.bar is None:
            elapsed = time.perf_counter() - self.start
            self.stream.write(
                f"run {self.done} of {self.runs}: {description} done, {tqdm.format_interval(elapsed)} elapsed, "
                f"{self._remaining(elapsed)} left\n"
            )
            self.stream.flush()

    def _remaining(self, elapsed: float) -> str:
        if self.worked == 0:
            return "?"
        return tqdm.format_interval(elapsed / self.worked * max(0, self.work - self.worked))

    def note(self, text: str) -> None:
        """One line above the display (shown even when the display is off)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def epoch_line(self, text: str) -> None:
        """A run's per-epoch line: shown with ``verbose`` only."""
        if self.verbose:
            self.note(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _origin(filename: str) -> str:
    """A warning's source file without the machine's directories (``cvxpy/problems/problem.py``)."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return Path(filename).name


@contextlib.contextmanager
def warnings_to_log(
    log: Path, where: Callable[[], str], show: Callable[[str], None], write: bool = True
) -> Iterator[dict[tuple, int]]:
    """Send every warning raised inside to ``log``; yields how often each was raised (by message,
    category and place), so that the caller can count them.

    ``where()`` says where the code is when a warning is raised (``"nash-mtl seed 0 step 12"``).
    A warning repeated from the same place is logged once and counted when the block ends.
    go4align's own warnings are also passed to ``show`` as one plain line. Only a process that
    ``write``\\ s files writes the log.
    """
    counts: dict[tuple, int] = {}
    lines: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        key = (str(message), category, filename, lineno)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > 1:
            return
        text = f"{category.__name__}: {message}".replace("\n", " ")
        lines.append(f"{where()}: {text} ({_origin(filename)}:{lineno})")
        if Path(filename).resolve().is_relative_to(PACKAGE):
            show(f"warning: {where()}: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        try:
            yield counts
        finally:
            repeated = sum(n - 1 for n in counts.values())
            if repeated:
                lines.append(f"{where()}: the warnings above were repeated {repeated} more time(s)")
            if lines and write:
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write("".join(line + "\n" for line in lines))
