"""HostLock: one holder at a time across processes and hosts on a shared filesystem; stale locks recovered."""

import itertools
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from companion.backbone.locks import HOST, Holder, HostLock, create_exclusive, read_holder

FAST = dict(stale_after_s=0.6, heartbeat_s=0.1, poll_s=0.02, max_poll_s=0.05, announce_after_s=None)


def _other_host_lock(path, *, age_s=0.0, host="node-b"):
    """A lock file as a process on another machine writes it; its heartbeat (mtime) ``age_s`` seconds old."""
    assert create_exclusive(path, Holder(host, 4242, "t0ken", "other-boot", "pid:[1]", "99", time.time() - age_s))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))


def _timed_acquire(lock, timeout=30.0):
    t0 = time.monotonic()
    lock.acquire(timeout=timeout)
    return time.monotonic() - t0


def test_the_lock_file_records_its_holder_and_is_removed_on_release(tmp_path):
    path = tmp_path / "k.lock"
    with HostLock(path, **FAST) as lock:
        h = read_holder(path)
        assert (h.host, h.pid) == (HOST, os.getpid()) and h.local and lock.held()
        assert path.stat().st_mode & 0o044  # readable by others sharing the folder: they see who holds it
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing else left behind


def test_a_second_holder_in_another_thread_waits_and_times_out(tmp_path):
    path = tmp_path / "k.lock"
    with HostLock(path, **FAST):
        with pytest.raises(TimeoutError, match=f"pid {os.getpid()} on {HOST}"):
            HostLock(path, **FAST).acquire(timeout=0.3)  # its own live process: never judged stale


def test_the_heartbeat_keeps_a_held_lock_fresh(tmp_path):
    path = tmp_path / "k.lock"
    with HostLock(path, **FAST):
        m0 = path.stat().st_mtime_ns
        time.sleep(0.35)
        assert path.stat().st_mtime_ns > m0


_HOLD = """
import json, os, sys, time
from companion.backbone.locks import HostLock
path, log, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = HostLock(path, stale_after_s=0.6, heartbeat_s=0.1, poll_s=0.01, max_poll_s=0.03, announce_after_s=None)
lock.acquire(timeout=60)
t0 = time.time()
time.sleep(hold)
with open(log, "a") as f:
    f.write(json.dumps([t0, time.time(), len(lock.broken)]) + "\\n")
lock.release()
"""


def _spawn_holders(tmp_path, n, hold):
    script = tmp_path / "hold.py"
    script.write_text(_HOLD)
    log = tmp_path / "log.jsonl"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "k.lock"), str(log), str(hold)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_concurrent_processes_hold_it_one_at_a_time(tmp_path):
    spans = sorted(_spawn_holders(tmp_path, 4, 0.15))
    assert len(spans) == 4
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert start >= end, "two processes held the lock at once"
    assert sum(b for *_, b in spans) == 0  # live holders are never broken


def test_a_lock_left_by_a_dead_process_on_this_host_is_recovered_at_once(tmp_path):
    path = tmp_path / "k.lock"
    code = (
        "import os, sys; from companion.backbone.locks import HostLock; "
        "HostLock(sys.argv[1]).acquire(); os._exit(0)"
    )  # dies holding it: no release
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    dead = read_holder(path)
    assert dead is not None and dead.host == HOST and path.exists()
    lock = HostLock(path, **{**FAST, "stale_after_s": 3600})  # no waiting on heartbeats: the pid says it
    assert _timed_acquire(lock) < 1.0
    assert lock.broken == [dead] and read_holder(path).pid == os.getpid()
    lock.release()


def test_a_reused_pid_does_not_keep_a_dead_holders_lock(tmp_path):
    path = tmp_path / "k.lock"
    me = Holder(HOST, os.getpid(), "old", *_local_ids(), start="1", since=0.0)  # our pid, another start time
    assert create_exclusive(path, me)
    lock = HostLock(path, **{**FAST, "stale_after_s": 3600})
    assert _timed_acquire(lock) < 1.0 and lock.broken == [me]
    lock.release()


def _local_ids():
    from companion.backbone import locks

    return locks._BOOT, locks._PIDNS


def test_another_hosts_lock_with_a_live_heartbeat_is_waited_for(tmp_path):
    path = tmp_path / "k.lock"
    _other_host_lock(path)
    stop = threading.Event()

    def other_host():  # its heartbeat, then its release after 1.2 s
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:
            os.utime(path)
            time.sleep(0.1)
        path.unlink()
        stop.set()

    t = threading.Thread(target=other_host)
    t.start()
    lock = HostLock(path, **FAST)  # would break it after 0.6 s without a heartbeat
    waited = _timed_acquire(lock)
    t.join()
    assert stop.is_set() and waited >= 1.1 and lock.broken == []
    lock.release()


def test_another_hosts_lock_with_an_old_heartbeat_is_broken(tmp_path):
    path = tmp_path / "k.lock"
    _other_host_lock(path, age_s=3600)
    lock = HostLock(path, **{**FAST, "stale_after_s": 60, "heartbeat_s": 5})
    assert _timed_acquire(lock) < 1.0  # older than stale_after on the wall clock: no need to watch it
    assert [b.host for b in lock.broken] == ["node-b"]
    lock.release()


def test_a_heartbeat_that_stops_is_broken_after_stale_after_even_if_clocks_disagree(tmp_path):
    path = tmp_path / "k.lock"
    _other_host_lock(path, age_s=-30)  # the other host's clock runs 30 s ahead: its mtime is in our future
    lock = HostLock(path, **FAST)
    waited = _timed_acquire(lock)
    assert 0.6 <= waited < 5 and [b.host for b in lock.broken] == ["node-b"]
    lock.release()


def test_an_unreadable_leftover_lock_file_is_recovered(tmp_path):
    path = tmp_path / "k.lock"
    path.write_text("")  # what filelock left behind in caches made by earlier versions
    old = time.time() - 3600
    os.utime(path, (old, old))
    lock = HostLock(path, **FAST)
    assert _timed_acquire(lock) < 1.0 and lock.broken == [None]
    lock.release()


def test_many_waiters_break_a_stale_lock_once_and_then_take_turns(tmp_path):
    _other_host_lock(tmp_path / "k.lock", age_s=3600)
    spans = sorted(_spawn_holders(tmp_path, 4, 0.1))
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert start >= end, "two processes held the lock at once"
    assert sum(b for *_, b in spans) == 1, "the stale lock was broken more than once (or a live one was)"


def test_a_holder_whose_lock_was_taken_over_does_not_remove_the_new_holders(tmp_path, capsys):
    path = tmp_path / "k.lock"
    first = HostLock(path, **FAST)
    first.acquire()
    path.unlink()  # as a waiter does that judged it dead (say, during a network outage)
    second = HostLock(path, **FAST)
    second.acquire(timeout=1)
    assert not first.held() and second.held()
    time.sleep(0.25)  # first's heartbeat notices
    first.release()
    assert second.held() and path.exists()
    second.release()
    assert "taken over" in capsys.readouterr().err


def test_settings_are_checked():
    with pytest.raises(ValueError, match="heartbeat_s < stale_after_s"):
        HostLock("x.lock", stale_after_s=1, heartbeat_s=2)
