"""Atomic file writes: a reader sees the old file or the new one, never a torn or empty one.

Every write goes to a temporary file in the destination's folder (same filesystem, so ``os.replace`` is an atomic
rename) whose name starts with ``.`` and contains ``.tmp-<pid>-``; an interrupted write removes its temporary file,
and :func:`remove_stale_temporaries` sweeps up what a killed process could not (the runner calls it before a run
and after an interrupted one), leaving alone the temporaries of writers that are still alive.
The cache, ``save_figure``, the runner's stamps and ``companion fork`` all write through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".tmp-"
"""Part of every temporary name this module makes (``.<name>.tmp-XXXX<suffix>``)."""


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only be read by setting it, which races
    with other threads creating files)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is renamed onto ``path``, else removed.

    For writers that want a file name (``fig.savefig(tmp)``, ``torch.save``).  The suffix is kept so that tools
    that pick a format by extension still do.
    """
    dest = Path(path)
    with temporary_beside(dest) as tmp_path:
        yield tmp_path
        os.replace(tmp_path, dest)


@contextlib.contextmanager
def temporary_beside(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path in ``path``'s folder, removed on exit unless the caller renamed it away."""
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}{TEMP_MARK}{os.getpid()}-", suffix=dest.suffix, dir=dest.parent)
    try:
        # mkstemp makes the file private (0600) whatever the umask; a published file gets the usual permissions,
        # so a colleague or a job running as another user can read a shared figure or cache entry.
        os.fchmod(fd, 0o666 & ~umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary file made by this module."""
    name = Path(path).name
    return name.startswith(".") and TEMP_MARK in name


def writer_pid(path: str | os.PathLike) -> int | None:
    """The process that made a temporary file (None for names without one)."""
    rest = Path(path).name.partition(TEMP_MARK)[2]
    head = rest.partition("-")[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files that dead writers left directly in ``directory``; returns what was removed.

    A temporary whose writer is another process that is still running (a concurrent run, an open notebook) is kept;
    the caller's own are removed (it sweeps when it is not writing).
    """
    d = Path(directory)
    if not d.is_dir():
        return []
    gone = []
    for p in d.iterdir():
        if p.is_file() and is_temporary(p):
            pid = writer_pid(p)
            if pid is None or pid == os.getpid() or not _alive(pid):
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def writable_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written in ``folder`` (None when they can), asked of the file system itself, so it is
    right for root and for read-only mounts alike: an unnamed temporary file is opened in the folder, or in its
    nearest existing parent when the folder does not exist yet, and nothing is left behind."""
    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{folder}: {probe} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        where = "" if probe == folder else f" (it does not exist, and cannot be created in {probe})"
        return f"{folder} is not writable: {e.strerror or e}{where}"
    return None
