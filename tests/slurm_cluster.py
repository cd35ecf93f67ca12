"""The ``slurm`` fixture: a real single-node Slurm (``.ci/slurm/cluster.sh``) for tests that submit jobs.

``COMPANION_SLURM_TESTS``:

* unset: use the test cluster when it is already running (``sudo .ci/slurm/cluster.sh up``); skip otherwise, with
  one line saying how to enable the tests;
* ``1``: the tests must run (``.ci/run`` sets it): start the cluster if it is not running (root; installs Debian's
  packages when missing) and *fail*, never skip, when that is impossible;
* ``0``: skip them.

A cluster this fixture started is stopped at the end of the session, pass or fail; one that was already running is
left running.  Parallel workers (pytest-xdist) share it: each registers under ``<state>/test-users/`` and the last
one out stops a cluster a test session started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "slurm" / "cluster.sh"
ENV = "COMPANION_SLURM_TESTS"
STATE = Path(os.environ.get("COMPANION_SLURM_DIR", "/tmp/companion-slurm"))
HOW = (
    f"Slurm tests skipped: no test cluster is running. Start one with `sudo {SCRIPT.relative_to(ROOT)} up` "
    f"(Debian; installs slurm-wlm, munge, slurmdbd, mariadb-server) or set {ENV}=1 to have the tests start it"
)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The running test cluster."""

    conf: Path
    """Its slurm.conf (``SLURM_CONF`` is set to it for the session)."""
    state: Path
    """Its state folder: config, daemon logs (``log/``)."""
    started_here: bool
    """Whether this session started it (and so stops it)."""
    bring_up_s: float
    """How long starting it took this session (0 when it was running)."""
    partition: str = "debug"
    """The partition jobs go to."""


def _script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COMPANION_SLURM_DIR": str(STATE)},
    )


def _up_already() -> bool:
    return SCRIPT.is_file() and _script("status", timeout=60).returncode == 0


@contextlib.contextmanager
def _fixture_lock():
    """Serialise start/stop decisions of parallel workers (they run on this machine: flock is fine here)."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / ".fixture.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _users() -> Path:
    return STATE / "test-users"


@pytest.fixture(scope="session")
def slurm() -> Cluster:
    """The single-node test cluster, up and answering (``sinfo`` idle, ``sacct`` working); see the module doc."""
    mode = os.environ.get(ENV, "").strip()
    if mode == "0":
        pytest.skip(f"Slurm tests skipped: {ENV}=0")
    required = mode == "1"
    started, t0 = False, time.monotonic()
    if not _up_already():
        if not required:
            pytest.skip(HOW)
        if os.geteuid() != 0:
            pytest.fail(
                f"{ENV}=1 but the test cluster is not running and starting it needs root: run `sudo {SCRIPT} up` first",
                pytrace=False,
            )
        with _fixture_lock():
            if not _up_already():
                r = _script("up")
                if r.returncode != 0:
                    pytest.fail(
                        f"could not start the test Slurm cluster ({SCRIPT} up):\n{r.stderr[-3000:]}", pytrace=False
                    )
                (STATE / "started-by-tests").write_text(str(os.getpid()))
                started = True
    bring_up = time.monotonic() - t0 if started else 0.0
    me = None
    with contextlib.suppress(OSError):  # a non-root user of a running cluster cannot register (nor stop it)
        _users().mkdir(exist_ok=True)
        me = _users() / str(os.getpid())
        me.touch()
    conf = STATE / "etc" / "slurm.conf"
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield Cluster(conf, STATE, started, bring_up)
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if me is not None:
            _leave(me)


def _leave(me: Path) -> None:
    """Unregister; the last session out stops a cluster that a test session started."""
    with _fixture_lock():
        me.unlink(missing_ok=True)
        others = [p for p in _users().iterdir() if p.name.isdigit() and _alive(int(p.name))]
        marker = STATE / "started-by-tests"
        if others or not marker.exists():
            return
        r = _script("down", timeout=300)
        marker.unlink(missing_ok=True)
        if r.returncode != 0:
            raise RuntimeError(f"could not stop the test Slurm cluster ({SCRIPT} down):\n{r.stderr[-3000:]}")
