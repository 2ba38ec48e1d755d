"""One ``go4align bench`` command as several processes: local workers and cluster jobs.

``--workers N`` (:func:`run_workers`) starts ``N`` copies of the command on this machine, each
with its own device (``cuda`` becomes ``cuda:0`` ... ``cuda:N-1``; on the CPU each gets
``threads // N`` torch threads, at least one). They share the grid: each takes the next run no
other holds (``run.lock``), so a long run does not hold back the rest, and together they train
every run of the grid (or of its ``--shard``) once. Their output is shown line by line, each
line prefixed with its worker.

``--launcher submitit`` (:func:`submit`) sends the command to a cluster through submitit's
``AutoExecutor`` as a job array of ``--jobs N`` tasks, task ``k`` running ``--shard k/N``.

The processes of one command record it once in ``grid.json`` (an ``invocations`` entry with a
shared id). Every process resumes its runs from their checkpoints, as a single one does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["worker_devices", "worker_threads", "run_workers", "submit", "run_bench", "invocation_argument"]

#: The hidden option that gives a worker or job the command it is part of.
INVOCATION_OPTION = "--invocation"
CLUSTERS = ("slurm", "local", "debug")


def worker_devices(device: str, workers: int, cuda_devices: int) -> list[str]:
    """One device per worker: ``cpu`` for all, or ``cuda:k`` for worker ``k`` (``device`` is
    ``cuda`` without an index, and this machine has ``cuda_devices`` >= ``workers``)."""
    if workers == 1:
        return [device]
    if device == "cpu":
        return ["cpu"] * workers
    if device != "cuda":
        raise ValueError(
            f"--workers {workers} gives each worker its own device: use --device cuda (workers get cuda:0 to "
            f"cuda:{workers - 1}) or --device cpu, not {device!r}"
        )
    if cuda_devices < workers:
        raise ValueError(f"--workers {workers} needs {workers} CUDA devices, this machine has {cuda_devices}")
    return [f"cuda:{k}" for k in range(workers)]


def worker_threads(threads: int, workers: int) -> int:
    """The torch threads of each worker: the command's ``--threads`` split between them."""
    return max(1, threads // workers)


def invocation_argument(command: str) -> str:
    """The value of :data:`INVOCATION_OPTION` for the processes of ``command``: a new id and the
    command as typed."""
    return json.dumps({"id": uuid.uuid4().hex, "command": command})


def run_workers(
    argv: Sequence[str],
    devices: Sequence[str],
    threads: int,
    invocation: str,
    *,
    stream: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``go4align <argv>`` as ``len(devices)`` worker processes, worker ``k`` on
    ``devices[k]`` with ``threads`` torch threads, and wait for all; returns 0, or the first
    non-zero exit status (each failure is named on ``stream``, standard error by default).
    ``argv`` is the command's own; the options appended to it override its ``--workers``,
    ``--device`` and ``--threads``."""
    stream = stream if stream is not None else sys.stderr
    count = len(devices)
    processes, forwarders = [], []
    for k, device in enumerate(devices, 1):
        command = [sys.executable, "-m", "go4align.cli", *argv, "--workers", "1", "--device", device]
        command += ["--threads", str(threads), INVOCATION_OPTION, invocation]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
        forwarder = threading.Thread(target=_forward, args=(process.stdout, f"worker {k}/{count}: ", stream))
        forwarder.start()
        processes.append(process)
        forwarders.append(forwarder)
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:  # they got the terminal's Ctrl-C too; let them checkpoint and stop
            process.wait()
        raise
    finally:
        for forwarder in forwarders:
            forwarder.join()
    for k, code in enumerate(codes, 1):
        if code:
            print(f"go4align bench: worker {k}/{count} ({devices[k - 1]}) exited with status {code}", file=stream)
    return next((code for code in codes if code), 0)


def _forward(source: IO[str], prefix: str, stream: IO[str]) -> None:
    for line in source:
        stream.write(prefix + line)
        stream.flush()
    source.close()


def run_bench(argv: Sequence[str]) -> int:
    """What a submitit job runs: ``go4align <argv>``; a failure raises, so that the job fails."""
    from go4align.cli import main

    code = main(list(argv))
    if code:
        shard = argv[argv.index("--shard") + 1] if "--shard" in argv else "?"
        raise RuntimeError(f"go4align bench (shard {shard}) exited with status {code}; its error is above")
    return code


def submit(
    argv: Sequence[str],
    jobs: int,
    invocation: str,
    folder: str | Path,
    *,
    cluster: str = "slurm",
    parameters: Mapping[str, Any] | None = None,
    wait: bool = False,
    stream: IO[str] | None = None,
) -> int:
    """Submit ``go4align <argv>`` as a job array of ``jobs`` tasks through submitit, task ``k``
    with ``--shard k/jobs``; logs go to ``folder``. ``parameters`` go to
    ``AutoExecutor.update_parameters`` (``timeout_min``, ``gpus_per_node``,
    ``slurm_partition``...; ``None`` values are left out). With ``wait``, wait for every job and
    return 1 if one failed (naming it and its log); else return 0 once submitted."""
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be one of {CLUSTERS}, got {cluster!r}")
    try:
        import submitit
    except ImportError:
        raise ImportError("--launcher submitit needs the submitit package: pip install 'go4align[submitit]'") from None
    stream = stream if stream is not None else sys.stderr
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)  # logs: <job id>_<task>_log.*
    except (RuntimeError, ValueError) as error:  # no sbatch on this machine, for cluster="slurm"
        raise ValueError(f"submitit cannot submit to the {cluster} cluster here: {error}") from error
    settings = {"name": "go4align", **{k: v for k, v in (parameters or {}).items() if v is not None}}
    try:
        executor.update_parameters(**settings)
    except (NameError, AssertionError, ValueError) as error:
        raise ValueError(f"submitit refuses the job parameters {settings}: {error}") from error
    tasks = [
        [*argv, "--launcher", "none", "--shard", f"{k}/{jobs}", INVOCATION_OPTION, invocation]
        for k in range(1, jobs + 1)
    ]
    try:
        submitted = executor.map_array(run_bench, tasks)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:  # sbatch refused the array
        raise ValueError(f"submitting {jobs} job(s) to {cluster} failed: {error}") from error
    ids = ", ".join(job.job_id for job in submitted)
    print(f"go4align bench: submitted {jobs} job(s) to {cluster} ({ids}); logs in {folder}", file=stream)
    if not wait:
        return 0
    failed = 0
    for k, job in enumerate(submitted, 1):
        try:
            job.result()
        except Exception:  # noqa: BLE001 -- submitit re-raises the job's failure, whatever it was
            failed += 1
            log = job.paths.stderr
            print(
                f"go4align bench: job {job.job_id} (shard {k}/{jobs}) failed: {_job_error(log)}; log: {log}",
                file=stream,
            )
    return 1 if failed else 0


def _job_error(log: Path) -> str:
    """The one-line error the go4align command of a failed job printed, or the last line of its log."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "its log cannot be read"
    named = [line for line in lines if line.startswith("go4align ") and ": error: " in line]
    return named[-1] if named else (lines[-1] if lines else "nothing in its log")
