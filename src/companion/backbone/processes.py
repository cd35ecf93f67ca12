"""The local engine (:class:`companion.backbone.executor.Executor`): units as worker processes on this machine.

``--executor processes`` (a profile's ``executor: {kind: processes}``) builds a run's missing units before the
notebooks run, ``processes.workers`` at a time, in a pool of worker processes started once (spawned: each imports
companion first, so the numeric code paths are pinned as in a kernel or a Slurm job, and pays torch's import once,
not once per unit).  The driver (:mod:`companion.backbone.dispatch`) submits a unit when the units it needs are built,
as for Slurm, so independent work — two SAE sweeps, a dozen scoring units, the organisms of every seed — fills every
core, where the notebooks' own kernels would build it one after another.  A unit's entry is the same function a
Slurm job calls (:func:`companion.backbone.jobs.run_unit`), so its cache entry is the same, bit for bit.

Each unit's output (progress bars and tracebacks included) goes to its own log, ``<run folder>/<n>_<kind>.log``.
Interrupting the run (Ctrl-C, SIGTERM) stops the running units at once: the entries they were building are removed
and their locks released (SAE sweeps keep their checkpoints), and a rerun builds what is still missing.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from companion.backbone.executor import ExecutorSettings, Job, log_tail, own_frames


def _run_logged(unit: Any, profile: str, cache_root: str, root: str, log: str) -> dict[str, Any]:
    """In a worker: run one unit with its file descriptors 1 and 2 (C libraries' output too) sent to its log.

    A worker runs many units, where a Slurm job runs one in a fresh process: what a unit may leave behind is reset
    after it (torch's thread count, which an SAE sweep sets; objects only the cycle collector frees, such as a
    TransformerBridge's), so no unit sees another's."""
    import gc

    import torch

    from companion.backbone.jobs import run_unit

    threads = torch.get_num_threads()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            return run_unit(unit, profile, cache_root, root)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
        torch.set_num_threads(threads)
        gc.collect()


def _init_worker(threads: int) -> None:
    import companion  # noqa: F401  first: pins the numeric code paths before anything imports torch

    # isort: split
    import torch

    # The workers share the cores: a unit that does not pin its own threads (the paper profile's torch_threads: 0)
    # gets its share, not every core times the number of workers.
    torch.set_num_threads(threads)

    # Ctrl-C reaches the whole process group: the driver alone handles it, stopping the workers with SIGTERM (an
    # idle worker would otherwise die with a traceback, a busy one twice over).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Handle:
    """A job's unit and, once a worker has it, its future."""

    def __init__(self, unit: Any):
        self.unit, self.future, self.cancelled = unit, None, False


class ProcessExecutor:
    """Runs units in a pool of ``workers`` local processes (see the module docstring)."""

    def __init__(self, settings: ExecutorSettings, folder: Path, *, profile: str, cache_root: str, root: str):
        self.workers = settings.slots
        self.folder = Path(folder)
        self.profile, self.cache_root, self.root = profile, cache_root, root
        self._pool: Any = None
        self._n = 0
        self._queued: list[Job] = []
        self._started: list[Job] = []

    def _ensure_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(max(1, (os.cpu_count() or 1) // self.workers),),
            )
        return self._pool

    def submit(self, units: Sequence[Any]) -> list[Job]:
        """Queue units; they start in :meth:`poll` as workers free up (never more than ``workers`` handed to the
        pool at once: a unit waiting in the pool's own queue could not be told apart from a running one, nor
        cancelled)."""
        out = []
        for u in units:
            self._n += 1
            job_id = str(self._n)
            log = self.folder / f"{job_id}_{re.sub(r'[^A-Za-z0-9.-]+', '_', u.kind)}.log"
            job = Job(u.id, job_id, log, _Handle(u))
            self._queued.append(job)
            out.append(job)
        self._start_queued()
        return out

    def _start_queued(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        busy = sum(1 for j in self._started if not j.handle.future.done())
        while self._queued and busy < self.workers:
            job = self._queued[0]
            try:
                job.handle.future = self._ensure_pool().submit(
                    _run_logged, job.handle.unit, self.profile, self.cache_root, self.root, str(job.log)
                )
            except BrokenProcessPool:
                # A worker was killed (the out-of-memory killer, most often): the units it and its siblings were
                # running are reported failed (see failure()); what is still queued goes to a fresh pool.
                self._pool = None
                continue
            self._queued.pop(0)
            self._started.append(job)
            busy += 1

    def poll(self, jobs: Sequence[Job]) -> dict[str, str]:
        """Job id -> state in Slurm's names (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)."""
        self._start_queued()
        states = {}
        for j in jobs:
            fut = j.handle.future
            if j.handle.cancelled:
                states[j.job_id] = "CANCELLED"
            elif fut is None:
                states[j.job_id] = "PENDING"
            elif fut.done():
                states[j.job_id] = "FAILED" if fut.cancelled() or fut.exception() is not None else "COMPLETED"
            else:
                states[j.job_id] = "RUNNING"
        return states

    def cancel(self, jobs: Sequence[Job]) -> None:
        """Drop what has not started and stop the workers: SIGTERM makes a running unit stop at once and clean up
        (:func:`companion.backbone.jobs.run_unit`), as ``scancel`` does to a Slurm job."""
        for j in jobs:
            j.handle.cancelled = True
        self._queued.clear()
        self.close(stop=True)

    def failure(self, job: Job, state: str) -> str:
        """The unit's traceback as the worker raised it (or why it did not run), then the last lines of its log."""
        fut = job.handle.future
        exc = None if fut is None or fut.cancelled() else fut.exception()
        if exc is None:
            return f"the unit was {state.lower()}\n" + log_tail(job.log)
        remote = getattr(exc, "__cause__", None)  # concurrent.futures' _RemoteTraceback: the worker's traceback
        text = str(remote) if remote is not None else f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ == "BrokenProcessPool":
            text = (
                "its worker process died (killed from outside, most often by the out-of-memory killer: see "
                f"`dmesg`): {exc}"
            )
        return own_frames(text.strip().strip('"').strip()) + "\n--- log ---\n" + log_tail(job.log, 10)

    def close(self, *, stop: bool = False) -> None:
        """Shut the pool down (``stop``: end the running units first, with SIGTERM)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if stop:
            for p in list(getattr(pool, "_processes", {}).values()):
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except (ProcessLookupError, OSError):
                    pass
        pool.shutdown(wait=True, cancel_futures=True)
