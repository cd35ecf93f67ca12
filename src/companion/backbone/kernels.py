"""Executing one notebook with papermill: a quiet kernel, and a clean stop when the run is interrupted.

* The kernel talks to the runner over IPC sockets, not TCP (ipykernel warns, in red, about unencrypted TCP), and a
  notebook that finished is shut down at once: its outputs are all in when its last cell is done, and a graceful
  shutdown (a shutdown request, preceded by the SIGINT jupyter_client sends by default, which the kernel logs as
  "KeyboardInterrupt caught in kernel") waits ~1 s per notebook for the interpreter to tear down.  The kernel's
  process group goes with it.  The sockets and the connection file live in a private folder of
  the runner's process under the system's temporary folder (:func:`runtime_dir`), never in the source tree (they
  would otherwise land in ``notebooks/``, the kernels' working folder, and a killed run would leave them there);
  the folders of runs that were killed are removed by the next run.
* Ctrl-C or SIGTERM during a notebook reach the runner's main thread only (papermill runs in a worker thread, so
  nbclient's own signal handlers, which would kill the kernel mid-write, are never installed).  The kernel's process
  group (the kernel and anything it spawned, such as organism-training workers) then gets SIGINT, so code in the
  middle of ``save_figure`` unwinds and removes its temporaries, then SIGTERM and, if need be, SIGKILL.  The runner
  keeps the partial notebook as ``<name>.failed.ipynb`` and sweeps temporaries a killed writer could not remove
  (:func:`companion.backbone.atomic.remove_stale_temporaries`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

_LIVE: weakref.WeakSet = weakref.WeakSet()
_LAST: dict[str, Any] = {}
"""The process of the kernel started last (its exit status says how a kernel that died went)."""
RUNTIME_PREFIX = "companion-kernels-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def runtime_dir() -> Path:
    """This process's folder for kernel sockets and connection files: ``<tmp>/companion-kernels-<pid>``, removed at
    exit.  On first use the folders of runner processes that no longer exist (killed with SIGKILL) are removed."""
    base = Path(tempfile.gettempdir())
    mine = base / f"{RUNTIME_PREFIX}{os.getpid()}"
    if not mine.is_dir():
        for old in base.glob(f"{RUNTIME_PREFIX}*"):
            pid = old.name[len(RUNTIME_PREFIX) :]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        mine.mkdir(mode=0o700, exist_ok=True)
        atexit.register(shutil.rmtree, mine, True)
    return mine


class QuietKernelManager(AsyncKernelManager):
    """A local kernel on IPC transport that is not interrupted when it is shut down after a finished notebook."""

    extra_env: Mapping[str, str] = {}
    """Variables the kernel gets on top of the runner's environment (its notebook, its run id): set per notebook on a
    subclass (:func:`execute`), since notebooks run at the same time share the runner's ``os.environ``."""
    kernel_cwd: str | None = None
    """The kernel's working folder, given to the kernel's process alone: papermill's own ``cwd`` changes the whole
    runner process's folder for the run, which notebooks running at the same time in threads would scramble."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", "ipc")
        # The IPC sockets are named after the connection file: both in runtime_dir(), out of the source tree.
        kwargs.setdefault("connection_file", str(runtime_dir() / f"kernel-{uuid.uuid4().hex[:12]}.json"))
        super().__init__(**kwargs)
        _LIVE.add(self)

    async def start_kernel(self, **kwargs: Any) -> None:  # type: ignore[override]  # the async manager's is async
        if self.extra_env:
            kwargs["env"] = {**(kwargs.get("env") or os.environ), **self.extra_env}
        if self.kernel_cwd is not None:
            kwargs["cwd"] = self.kernel_cwd
        await super().start_kernel(**kwargs)
        _LAST["process"] = getattr(self.provisioner, "process", None)

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:  # a graceful shutdown after the last cell: nothing to interrupt
            return
        await super()._async_interrupt_kernel()


def last_kernel_exit() -> int | None:
    """The exit status of the kernel started last (negative: the signal that ended it), None while it runs."""
    proc = _LAST.get("process")
    return None if proc is None else proc.poll()


def _kernels() -> list[tuple[int, Any]]:
    """(process group, Popen) of every kernel this process started that is still running."""
    out = []
    for km in list(_LIVE):
        prov = getattr(km, "provisioner", None)
        proc = getattr(prov, "process", None)
        if proc is not None and proc.poll() is None:
            out.append((int(getattr(prov, "pgid", None) or proc.pid), proc))
    return out


def _group_alive(pgid: int, proc) -> bool:
    proc.poll()  # reap the kernel itself once it exits, so its zombie does not keep the group "alive"
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_kernels(grace_s: float = 2.0, term_s: float = 5.0) -> None:
    """Stop every kernel this process started, with its subprocesses: SIGINT, then SIGTERM, then SIGKILL."""
    groups = _kernels()
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, term_s), (signal.SIGKILL, 1.0)):
        groups = [(g, p) for g, p in groups if _group_alive(g, p)]
        for g, _p in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)
        deadline = time.monotonic() + wait
        while groups and time.monotonic() < deadline:
            time.sleep(0.05)
            if not any(_group_alive(g, p) for g, p in groups):
                break
    for km in list(_LIVE):  # the kernels are gone: remove their connection and socket files
        with contextlib.suppress(Exception):
            km.cleanup_connection_file()
            km.cleanup_ipc_files()
        _LIVE.discard(km)


_STOPPED = threading.Event()
"""Set while a run is being stopped: a notebook whose kernel is then stopped was interrupted, it did not fail."""


def stop_all() -> None:
    """Stop every kernel of this run (notebooks running at the same time, from their threads) as an interrupt."""
    _STOPPED.set()
    stop_kernels()


def start_run() -> None:
    """Clear :func:`stop_all`'s mark before a run executes notebooks."""
    _STOPPED.clear()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-up runs."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) like Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _not_kernel_died(record) -> bool:
    """Drop nbclient's "Kernel died while waiting for execute reply." (logged through papermill's logger with no
    handler, so it lands on stderr as a bare line): the runner says in one line which cell it died in and why."""
    return "Kernel died" not in record.getMessage()


logging.getLogger("papermill").addFilter(_not_kernel_died)


def execute(
    nb_path: Path, out_path: Path, parameters: Mapping[str, Any], *, cwd: Path, env: Mapping[str, str] | None = None
) -> None:
    """Run ``nb_path`` into ``out_path`` with papermill on a :class:`QuietKernelManager` kernel (``env``: variables
    for that kernel alone, on top of this process's environment).

    Raises papermill's ``PapermillExecutionError`` when a cell fails.  Papermill runs in a worker thread, so the
    main thread alone receives Ctrl-C (nbclient would otherwise take the signal over and kill the kernel
    mid-write); on KeyboardInterrupt (Ctrl-C, or SIGTERM inside :func:`sigterm_as_interrupt`) the kernels are
    stopped and the worker has written ``out_path`` as far as the notebook ran before the interrupt propagates.
    Called from another thread (notebooks run at the same time), the main thread stops the run with
    :func:`stop_all`, and this raises KeyboardInterrupt once the partial notebook is written.
    """
    import papermill

    manager = type(
        "NotebookKernelManager", (QuietKernelManager,), {"extra_env": dict(env or {}), "kernel_cwd": str(cwd)}
    )

    outcome: dict[str, BaseException] = {}
    # A notebook may compute for minutes (00 trains the organisms): in a terminal, a bar of executed cells shows it
    # is moving. Logs and captured output get none (a bar redrawn into a file is noise).
    cell_bar: dict[str, Any] | bool = {"desc": nb_path.stem, "leave": False} if sys.stderr.isatty() else False

    def work() -> None:
        try:
            papermill.execute_notebook(
                str(nb_path),
                str(out_path),
                parameters=dict(parameters),
                kernel_name="python3",
                progress_bar=cell_bar,
                report_mode=False,
                kernel_manager_class=manager,
                coalesce_streams=True,
                shutdown_kernel="immediate",
            )
        except BaseException as e:  # handed to the main thread
            outcome["error"] = e

    worker = threading.Thread(target=work, name=f"papermill {nb_path.name}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except BaseException:
        stop_kernels()
        worker.join(30)  # papermill writes the partial notebook once its kernel is gone
        raise
    if _STOPPED.is_set():
        raise KeyboardInterrupt(f"{nb_path.name}: stopped with the run")
    if "error" in outcome:
        raise outcome["error"]
