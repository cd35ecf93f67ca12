"""One cache directory shared by two accounts (a lab's shared cache; Slurm jobs running as another user): each
reads what the other built, a build under one account is waited for by the other, and a lock left by the other's
dead process is recovered.

The two accounts are two fresh uids in one fresh group (numbers no account on the machine uses, so nothing is added
to /etc/passwd). A child process imports what it needs as root, then drops to its uid, its gid and a umask, and
only then touches the cache: everything the cache does happens with that account's rights.
"""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0,
        reason="the two-account cache test runs only as root on Linux (it switches a child process to other uids)",
    ),
]

_ACCOUNT = r"""
import os, sys, time, traceback
# Everything that reads the interpreter's or the venv's files first: the accounts may not be allowed to.
import torch  # noqa: F401
from companion.backbone import environment
from companion.backbone.cache import Cache
from companion.backbone.locks import HostLock
environment.numerics()

uid, gid, shared_gid, root, log = sys.argv[1:6]
os.setgroups([int(shared_gid)])  # the lab's group, besides the account's own
os.setgid(int(gid))
os.setuid(int(uid))
assert os.getuid() == int(uid) and os.getgid() == int(gid)
cache = Cache(root)

def note(msg):
    with open(log, "a") as f:
        f.write(f"{uid} {msg}\n")

def serve(action, tag, mask, hold):
    os.umask(int(mask, 8))
    spec = {"tag": tag}
    if action == "build":
        def build(d):
            note(f"building {tag}")
            (d / "payload.txt").write_text(f"{tag} by {uid}")
            time.sleep(float(hold))
        p = cache.get_or_build("sae", spec, build)
    elif action == "read":
        p = cache.get("sae", spec)
    elif action == "die-holding":  # a process of this account that dies while it holds the build lock
        pid = os.fork()
        if pid == 0:
            HostLock(cache.path("sae", spec).parent / f".{cache.key('sae', spec)}.lock").acquire()
            os._exit(0)
        os.waitpid(pid, 0)
        return "died"
    return (p / "payload.txt").read_text()

print("ready", flush=True)
for line in sys.stdin:
    try:
        print("ok", serve(*line.split()), flush=True)
    except Exception:
        print("error", " | ".join(traceback.format_exc().splitlines()), flush=True)
"""


def _free_ids(n, lookup, start=61000):
    ids = []
    i = start
    while len(ids) < n:
        try:
            lookup(i)
        except KeyError:
            ids.append(i)
        i += 1
    return ids


class Account:
    """A child process running as one account; it does cache operations on request."""

    def __init__(self, script, uid, gid, shared_gid, root, log):
        self.uid = uid
        env = {**os.environ, "HOME": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(uid), str(gid), str(shared_gid), str(root), str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, action, tag, *, mask="002", hold=0.0):
        self.proc.stdin.write(f"{action} {tag} {mask} {hold}\n")
        self.proc.stdin.flush()

    def reply(self):
        status, _, text = self.proc.stdout.readline().strip().partition(" ")
        assert status == "ok", f"uid {self.uid}: {text}"
        return text

    def do(self, action, tag, **kw):
        self.send(action, tag, **kw)
        return self.reply()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def shared(tmp_path):
    """A cache folder as a lab sets one up (owned by a shared group, setgid so entries keep that group) and two
    accounts, each with its own primary group and the shared group besides."""
    gid, gid_a, gid_b = _free_ids(3, grp.getgrgid)
    uid_a, uid_b = _free_ids(2, pwd.getpwuid)
    root = Path(tempfile.mkdtemp(prefix="companion-shared-cache-", dir="/tmp"))  # pytest's tmp_path is 0700
    os.chown(root, 0, gid)
    os.chmod(root, 0o2775)
    log = root.parent / f"{root.name}.log"
    log.touch()
    os.chmod(log, 0o666)
    script = tmp_path / "account.py"
    script.write_text(_ACCOUNT)
    accounts = [Account(script, uid, g, gid, root, log) for uid, g in ((uid_a, gid_a), (uid_b, gid_b))]
    yield *accounts, root, log
    for acc in accounts:
        acc.close()
    shutil.rmtree(root, ignore_errors=True)
    log.unlink(missing_ok=True)


def _modes(path):
    return {p.relative_to(path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [path, *path.rglob("*")]}


def test_two_accounts_share_one_cache(shared):
    a, b, root, log = shared
    # A builds x (taking 2 s); B asks for x meanwhile: it waits for A's build and reads it instead of building.
    a.send("build", "x", hold=2.0)
    deadline = time.time() + 60
    while "building x" not in log.read_text():
        assert time.time() < deadline, "A never started building"
        time.sleep(0.05)
    assert b.do("build", "x") == f"x by {a.uid}"
    assert a.reply() == f"x by {a.uid}"
    assert log.read_text().count("building x") == 1
    # B builds y; A reads it.
    assert b.do("build", "y") == f"y by {b.uid}"
    assert a.do("read", "y") == f"y by {b.uid}"
    # Under the default umask 022 an entry is still readable by the other account (not mkdtemp's 0700).
    assert a.do("build", "z", mask="022") == f"z by {a.uid}"
    assert b.do("read", "z") == f"z by {a.uid}"
    # A lock left by A's dead process is recovered by B (the pid is A's: B may not signal it, only see it is gone).
    assert a.do("die-holding", "w") == "died"
    assert b.do("build", "w") == f"w by {b.uid}"

    entries = [e for e in (root / "sae").iterdir() if e.is_dir()]
    assert len(entries) == 4
    for e in entries:
        modes = _modes(e)
        assert all(m & 0o044 == 0o044 for m in modes.values()), f"not readable by group and others: {modes}"
        # Every file has the lab's group (the folder is setgid), not the builder's own group.
        assert {p.stat().st_gid for p in [e, *e.rglob("*")]} == {root.stat().st_gid}
        assert e.stat().st_uid in (a.uid, b.uid) and modes["."] & stat.S_ISGID
