"""A lock that holds across hosts sharing a network filesystem (NFS, Lustre, GPFS): one build of a cache entry at
a time, whichever machine of a cluster asks.

``flock``/``fcntl`` locks are not reliable across NFS clients, so the lock is a file: holding the lock means having
created ``path``.  It is created atomically with its content already in place — a uniquely named file is written
and closed, then hard-linked to ``path`` (``link`` fails if ``path`` exists, atomically, also over NFS; where the
filesystem has no hard links, ``O_CREAT | O_EXCL``) — and it records who holds it: host, pid, the process's start
time, the kernel's boot id and pid namespace, and a random token.  While held, a thread touches the file every
``heartbeat_s`` seconds; releasing removes it.

A waiter breaks a lock whose holder is gone:

* same machine (same host, boot and pid namespace): the holder's pid is no longer running (or is another process
  that reused the number);
* another machine: the heartbeat (the file's mtime) has not moved for ``stale_after_s`` seconds — judged by the
  file's age on the wall clock, and by this process's own clock since it first saw that heartbeat, so that neither
  a skewed clock nor a lost update alone breaks a live lock;
* an unreadable record (a lock file of another format): after ``stale_after_s`` seconds without change.

Breaking is itself serialised by a short-lived ``<path>.break`` file made the same way, and removes the lock only
if it still carries the token that was judged stale, so two waiters never both break it, nor break a new holder's.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from companion.backbone.atomic import umask

HOST = socket.gethostname()


def _read_first(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


#: What makes a pid meaningful: the same kernel (boot) and the same pid namespace on the same host.
_BOOT = _read_first("/proc/sys/kernel/random/boot_id")
try:
    _PIDNS = os.readlink("/proc/self/ns/pid")
except OSError:
    _PIDNS = ""


def _proc_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, Linux), or "" where unknown."""
    stat = _read_first(f"/proc/{pid}/stat")
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def _running(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    now = _proc_start(pid)
    return not (start and now and now != start)  # the number was reused by a later process


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as recorded in its file."""

    host: str
    """Host name of the holder."""
    pid: int
    """Process id on that host."""
    token: str
    """Random id of this acquisition."""
    boot: str = ""
    """Kernel boot id of the holder's machine."""
    pidns: str = ""
    """Pid namespace of the holder."""
    start: str = ""
    """Start time of the holding process (so a reused pid is not mistaken for it)."""
    since: float = 0.0
    """When it was acquired (holder's wall clock)."""

    @property
    def local(self) -> bool:
        """Whether the pid can be checked from here (same host, same kernel boot, same pid namespace)."""
        return self.host == HOST and self.boot == _BOOT and self.pidns == _PIDNS

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _me(token: str) -> Holder:
    return Holder(HOST, os.getpid(), token, _BOOT, _PIDNS, _proc_start(os.getpid()), time.time())


def read_holder(path: str | os.PathLike) -> Holder | None:
    """The record in a lock file; None if it is missing or unreadable."""
    try:
        d = json.loads(Path(path).read_text())
        return Holder(**{k: d[k] for k in Holder.__dataclass_fields__ if k in d})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def create_exclusive(path: Path, holder: Holder) -> bool:
    """Create ``path`` holding ``holder``'s record, atomically; False if it already exists."""
    data = json.dumps(holder.__dict__).encode()
    mode = 0o666 & ~umask()  # readable by whoever shares the folder, so they can see who holds it
    tmp = path.with_name(f"{path.name}.{holder.host}.{holder.pid}.{holder.token[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        # On NFS the reply to a successful link can be lost (the retry then fails): the link count tells.
        with contextlib.suppress(OSError):
            if os.stat(tmp).st_nlink == 2:
                return True
        if not os.path.exists(path):  # no hard links on this filesystem: exclusive create
            return _create_excl_fallback(path, data, mode)
        return False
    finally:
        os.unlink(tmp)


def _create_excl_fallback(path: Path, data: bytes, mode: int) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _heartbeat(path: Path) -> tuple[int, int] | None:
    """The file's identity and mtime (what a waiter watches for change), or None if it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


class HostLock:
    """An exclusive lock on ``path`` that holds across processes and hosts (see the module docstring).

    Use as a context manager.  ``stale_after_s`` is how long a silent heartbeat of another host's holder is
    trusted; ``heartbeat_s`` how often the holder refreshes it (a few times within ``stale_after_s``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        stale_after_s: float = 120.0,
        heartbeat_s: float = 10.0,
        poll_s: float = 0.05,
        max_poll_s: float = 1.0,
        announce_after_s: float | None = 5.0,
        what: str = "",
    ):
        if not 0 < heartbeat_s < stale_after_s:
            raise ValueError(f"need 0 < heartbeat_s < stale_after_s, got {heartbeat_s} and {stale_after_s}")
        self.path = Path(path)
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.poll_s, self.max_poll_s = poll_s, max_poll_s
        self.announce_after_s = announce_after_s
        self.what = what or str(self.path)
        self._token: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.broken: list[Holder | None] = []
        """Stale holders this lock removed before acquiring (for logs and tests)."""

    # -- acquiring -------------------------------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> None:
        """Wait until the lock is ours; ``TimeoutError`` after ``timeout`` seconds (None: wait for ever)."""
        if self._token is not None:
            raise RuntimeError(f"{self.path} is already held by this HostLock")
        token = uuid.uuid4().hex
        t0 = time.monotonic()
        seen: tuple[tuple[int, int] | None, float] = (None, t0)  # the heartbeat last seen, and since when
        delay, announced = self.poll_s, False
        while True:
            if create_exclusive(self.path, _me(token)):
                self._token = token
                self._start_heartbeat()
                return
            beat = _heartbeat(self.path)
            if beat is None:
                continue  # released between our attempt and our look: try again at once
            now = time.monotonic()
            if beat != seen[0]:
                seen = (beat, now)
            holder = read_holder(self.path)
            reason = self._stale_reason(holder, beat, now - seen[1])
            if reason:
                self._break(holder, beat, reason)
                continue
            if timeout is not None and now - t0 >= timeout:
                raise TimeoutError(
                    f"{self.what}: still locked by {holder.describe() if holder else 'another process'}"
                    f" after {timeout:.0f} s ({self.path})"
                )
            if not announced and self.announce_after_s is not None and now - t0 >= self.announce_after_s:
                who = holder.describe() if holder else "another process"
                print(f"companion: waiting for {self.what}, being built by {who} ({self.path})", file=sys.stderr)
                announced = True
            time.sleep(delay)
            delay = min(delay * 1.5, self.max_poll_s)

    def _stale_reason(self, holder: Holder | None, beat: tuple[int, int], unchanged_s: float) -> str:
        if holder is not None and holder.local:
            return "" if _running(holder.pid, holder.start) else f"{holder.describe()} is no longer running"
        wall_age = time.time() - beat[1] / 1e9
        age = max(unchanged_s, wall_age)
        if age <= self.stale_after_s:
            return ""
        who = holder.describe() if holder else "an unreadable lock record"
        return f"no heartbeat from {who} for {age:.0f} s"

    def _break(self, holder: Holder | None, beat: tuple[int, int], reason: str) -> None:
        """Remove the lock file if it is still the one judged stale; one breaker at a time."""
        guard = self.path.with_name(self.path.name + ".break")
        if not create_exclusive(guard, _me(uuid.uuid4().hex)):
            # Someone else is breaking it (for milliseconds); a breaker that died leaves a guard to clear.
            g = read_holder(guard)
            gbeat = _heartbeat(guard)
            dead = (g is not None and g.local and not _running(g.pid, g.start)) or (
                gbeat is not None and time.time() - gbeat[1] / 1e9 > max(10.0, self.heartbeat_s)
            )
            if dead:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(guard)
            time.sleep(self.poll_s)
            return
        try:
            now = read_holder(self.path)
            same = _heartbeat(self.path) == beat and (now == holder)
            if same:
                os.unlink(self.path)
                self.broken.append(holder)
                print(f"companion: removed a stale lock on {self.what} ({reason})", file=sys.stderr)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)

    # -- holding ---------------------------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._beat_loop, name=f"lock-heartbeat {self.path.name}", daemon=True)
        self._beat.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.held():
                print(
                    f"companion: the lock on {self.what} was taken over by another process "
                    f"(it judged this one dead): the builds may overlap",
                    file=sys.stderr,
                )
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def held(self) -> bool:
        """Whether the lock file is (still) ours."""
        h = read_holder(self.path)
        return self._token is not None and h is not None and h.token == self._token

    def release(self) -> None:
        """Remove the lock file, if it is still ours."""
        if self._token is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            if self.held():
                os.unlink(self.path)
        finally:
            self._token = None

    def __enter__(self) -> HostLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
