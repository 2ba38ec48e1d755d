"""Time per training step in steady state, measured so that a run's place in the process cannot
change it.

The first steps of a run pay one-off costs (lazy initialisation, allocator growth, kernel
selection, imports inside a method), and in a grid the first run in the process pays the most.
:class:`StepTimer` therefore skips the first ``warmup`` steps that a trainer runs in its process
(again after a resume, which is a new process) and records every ``stride``-th step after that.
A step's time runs from the end of the previous step's counted work to the end of its own: data
loading, the step and the trainer's per-step bookkeeping count; evaluation, checkpoints and
callbacks do not (the trainer restarts the clock after them with :meth:`StepTimer.restart`).

On the CPU the clock is ``time.perf_counter`` (wall time), and the process's CPU time
(``time.process_time``) of the same steps is kept beside it: on a busy machine the wall time of a
step includes the time the process waited for a core, and a report can see that the two part.
On CUDA the clock is a pair of CUDA events around each sampled step, read at
:meth:`StepTimer.flush` (end of epoch, checkpoint), so the timer adds no host synchronisation to
the steps: the events measure the time the device's stream took between the two points, which in
steady state is the step's real cost whether the host or the device is the bottleneck.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

__all__ = ["StepTimer", "WARMUP_STEPS", "MAX_SAMPLES", "step_time_summary"]

#: Steps skipped after a trainer starts (at most half of the steps it has to run).
WARMUP_STEPS = 10
#: At most about this many sampled steps per run; longer runs sample every stride-th step.
MAX_SAMPLES = 2000


class StepTimer:
    """Sampled step times of one run, in milliseconds.

    Args:
        device: where the steps run; CUDA steps are timed with events.
        first_step: the global step at which this trainer starts (0, or where a resume starts).
        total_steps: the run's total number of steps (sets the stride).
        samples: samples recorded before a resume (``state_dict()`` of the earlier timer).
    """

    def __init__(self, device: torch.device, first_step: int, total_steps: int, samples: list | None = None):
        self.cuda = device.type == "cuda"
        self.clock = "cuda_events" if self.cuda else "perf_counter"
        self.warmup = min(WARMUP_STEPS, max(1, (total_steps - first_step) // 2))
        self.first_sampled = first_step + self.warmup
        self.stride = max(1, math.ceil(total_steps / MAX_SAMPLES))
        # [global step, wall ms] on CUDA, [global step, wall ms, CPU ms] on the CPU
        self.samples: list[list[float]] = [list(s) for s in samples or []]
        self._pending: list[tuple[int, torch.cuda.Event, torch.cuda.Event]] = []
        self._start: tuple[float, float] | torch.cuda.Event | None = None

    def sampled(self, step: int) -> bool:
        return step >= self.first_sampled and step % self.stride == 0

    def restart(self, next_step: int) -> None:
        """Start the clock for ``next_step`` (before an epoch, after a checkpoint or callback)."""
        self._start = self._now() if self.sampled(next_step) else None

    def lap(self, step: int) -> None:
        """``step``'s counted work is done; the clock runs on for ``step + 1``."""
        end = self._now() if self.sampled(step) or self.sampled(step + 1) else None
        if self.sampled(step) and self._start is not None:
            if self.cuda:
                self._pending.append((step, self._start, end))
            else:
                self.samples.append([step] + [1000.0 * (b - a) for a, b in zip(self._start, end)])
        self._start = end if self.sampled(step + 1) else None

    def _now(self) -> tuple[float, float] | torch.cuda.Event:
        if not self.cuda:
            return time.perf_counter(), time.process_time()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def flush(self) -> None:
        """Read the CUDA events recorded so far (one wait for the last one; a no-op on the CPU)."""
        if not self._pending:
            return
        self._pending[-1][2].synchronize()
        self.samples += [[step, start.elapsed_time(end)] for step, start, end in self._pending]
        self._pending = []

    def state_dict(self) -> list[list[float]]:
        self.flush()
        return [list(s) for s in self.samples]

    def summary(self) -> dict | None:
        """What ``result.json`` records as ``step_time_ms`` (``None`` before any sample)."""
        self.flush()
        cpu = [sample[2] for sample in self.samples if len(sample) > 2]
        return step_time_summary(
            [sample[1] for sample in self.samples],
            self.clock,
            self.stride,
            int(self.samples[0][0]) if self.samples else None,
            cpu if len(cpu) == len(self.samples) else None,
        )


def step_time_summary(
    times_ms: list[float], clock: str, stride: int, first_step: int | None, cpu_ms: list[float] | None = None
) -> dict | None:
    """Median and quartiles (and 10th/90th percentiles) of the sampled step times, and the median
    CPU time of the same steps where it was measured. A resumed run skipped warm-up steps again
    after its restart; ``first_sampled_step`` shows the first skip."""
    if not times_ms:
        return None
    p10, p25, median, p75, p90 = np.percentile(np.asarray(times_ms, dtype=float), [10, 25, 50, 75, 90])
    return {
        "median": float(median),
        "p25": float(p25),
        "p75": float(p75),
        "p10": float(p10),
        "p90": float(p90),
        "cpu_median": float(np.median(cpu_ms)) if cpu_ms else None,
        "samples": len(times_ms),
        "first_sampled_step": first_step,
        "stride": stride,
        "clock": clock,
    }
