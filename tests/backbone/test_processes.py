"""The ``processes`` executor (companion.backbone.processes) driven by the same loop as Slurm's
(companion.backbone.dispatch.build_units), on units whose entries record when and where they ran: independent units
run at the same time in different worker processes, a dependant waits for what it needs, a failing unit is reported
with its own traceback while the others go on, and an interrupt stops the running units at once without leaving a
half-built entry."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import pytest

import _unit_entries as entries
from companion.backbone.cache import Cache
from companion.backbone.dispatch import build_units
from companion.backbone.executor import ExecutorSettings, resolve_executor
from companion.backbone.processes import ProcessExecutor
from companion.backbone.units import Unit

pytestmark = pytest.mark.xdist_group("processes")


def _unit(cache: Cache, name: str, seconds: float = 0.0, fail: bool = False, needs: tuple[str, ...] = ()) -> Unit:
    return Unit(
        name=name,
        kind=entries.KIND,
        key=cache.key(entries.KIND, entries.spec(name)),
        entry="_unit_entries:put",
        args={"name": name, "seconds": seconds, "fail": fail},
        needs=needs,
    )


def _ran(cache: Cache, unit: Unit) -> dict:
    return json.loads((cache.root / unit.kind / unit.key / "ran.json").read_text())


def _executor(tmp_path, cache: Cache, workers: int = 2) -> ProcessExecutor:
    settings = ExecutorSettings.model_validate({"kind": "processes", "processes": {"workers": workers}})
    return ProcessExecutor(settings, tmp_path / "run", profile="ci", cache_root=str(cache.root), root=str(tmp_path))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "cache"))
    (tmp_path / "run").mkdir()
    return Cache(tmp_path / "cache")


@pytest.mark.slow  # a pool of worker processes that import torch
def test_independent_units_overlap_in_two_workers_and_a_dependant_waits(tmp_path, cache):
    a, b = _unit(cache, "a", 1.5), _unit(cache, "b", 1.5)
    c = _unit(cache, "c", needs=(a.id, b.id))
    ex = _executor(tmp_path, cache)
    try:
        out = build_units([a, b, c], ex, poll_s=0.05, state_file=tmp_path / "run" / "units.json", log=lambda s: None)
    finally:
        ex.close()
    assert sorted(out.done) == sorted(u.id for u in (a, b, c)) and not out.failed
    ra, rb, rc = (_ran(cache, u) for u in (a, b, c))
    assert ra["pid"] != rb["pid"] and ra["pid"] != os.getpid()
    assert ra["start"] < rb["end"] and rb["start"] < ra["end"], "the two independent units did not overlap"
    assert rc["start"] >= max(ra["end"], rb["end"])
    logs = sorted((tmp_path / "run").glob("*.log"))
    assert len(logs) == 3 and all("ready in" in p.read_text() for p in logs)
    # Progress in a log is whole lines (one per finished bar), never a bar redrawn with carriage returns.
    bar = [ln for ln in logs[0].read_text().splitlines() if ln.startswith("steps of ")]
    assert len(bar) == 1 and "3/3" in bar[0] and "\r" not in logs[0].read_text(), logs[0].read_text()
    state = json.loads((tmp_path / "run" / "units.json").read_text())["units"]
    assert {r["state"] for r in state.values()} == {"done"}


@pytest.mark.slow  # a pool of worker processes that import torch
def test_a_failing_unit_reports_its_traceback_its_dependant_is_not_run_and_the_others_are_built(tmp_path, cache):
    bad, good = _unit(cache, "bad", fail=True), _unit(cache, "good", 0.2)
    after = _unit(cache, "after-bad", needs=(bad.id,))
    ex = _executor(tmp_path, cache)
    try:
        out = build_units([bad, good, after], ex, poll_s=0.05, log=lambda s: None)
    finally:
        ex.close()
    assert out.done == [good.id] and list(out.failed) == [bad.id] and list(out.not_run) == [after.id]
    (report,) = out.reports
    assert "ValueError: planted failure in bad" in report and "_unit_entries.py" in report
    # The wrapper's and the worker's frames are left out, as for a Slurm job.
    assert "jobs.py" not in report and "processes.py" not in report, report
    assert not (cache.root / entries.KIND / bad.key).exists()


@pytest.mark.slow  # two pools of worker processes that import torch
def test_a_killed_worker_fails_its_unit_in_one_line_and_the_queued_units_go_to_a_fresh_pool(tmp_path, cache):
    killed = dataclasses.replace(_unit(cache, "killed"), entry="_unit_entries:die", args={"name": "killed"})
    after = _unit(cache, "after")
    ex = _executor(tmp_path, cache, workers=1)
    try:
        out = build_units([killed, after], ex, poll_s=0.05, log=lambda s: None)
    finally:
        ex.close()
    assert list(out.failed) == [killed.id] and out.done == [after.id]
    (report,) = out.reports
    assert "its worker process died" in report and "out-of-memory killer" in report
    assert _ran(cache, after)["pid"] != os.getpid()


@pytest.mark.slow  # a pool of worker processes that import torch
def test_an_interrupt_stops_the_running_units_at_once_and_leaves_no_half_built_entry(tmp_path, cache):
    slow = [_unit(cache, f"slow{i}", 60.0) for i in range(3)]
    ex = _executor(tmp_path, cache)
    lines: list[str] = []

    def interrupt_when_both_run():
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if sum("building" in p.read_text() for p in (tmp_path / "run").glob("*.log")) >= 2:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_both_run, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build_units(slow, ex, poll_s=0.05, log=lines.append)
    assert time.monotonic() - t0 < 30
    assert any("interrupted: cancelled 3 job(s)" in s for s in lines)
    assert ex._pool is None  # the pool was shut down
    leftovers = [p.name for p in (cache.root / entries.KIND).iterdir()] if (cache.root / entries.KIND).exists() else []
    assert not [n for n in leftovers if not n.startswith(".") or n.startswith(".tmp")], leftovers


def test_processes_is_an_executor_kind_with_one_worker_per_core_by_default(tmp_path):
    s = resolve_executor(ExecutorSettings(), "processes")
    assert s.kind == "processes" and s.slots == (os.cpu_count() or 1) and s.folder == "build/units"
    with pytest.raises(ValueError, match="workers >= 1"):
        ExecutorSettings.model_validate({"kind": "processes", "processes": {"workers": 0}})
