"""Building a run's missing units before its notebooks (``companion figures --executor slurm``), with progress and
fault reports, and the unit plan of ``--dry-run``.

:func:`prepare_units` derives the units of the notebooks that will run (:mod:`companion.backbone.units`), drops those
already in the cache and hands the rest to the executor, each once the units it needs are built.  It polls every
job's state (one ``sacct`` call for all of them) and shows queued / running / done / failed — a bar in a terminal,
and a line per state change in every case — and keeps ``<run folder>/units.json`` up to date for ``companion units``.

Faults: a unit that raises is reported in one block (unit, job id, log path, the remote traceback); one cancelled,
out of time, out of memory or on a failed node is reported from its state; the units that depend on a failed one
are "not run", every other unit goes on.  The notebooks whose units all succeeded then run; the others are not run,
and the run ends with an error naming what failed.  A rerun submits only the units still missing, and an SAE sweep
resumes from its last checkpoint.  Ctrl-C cancels the run's jobs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from companion.backbone.executor import Executor, ExecutorSettings, Job, phase, settings_summary
from companion.backbone.plan import RunnerError
from companion.backbone.units import Unit, duration, is_built, merge, missing, plan_schedule, unit_table, units_for

STATE_FILE = "units.json"
LATEST = "latest"


class UnitsFailed(RunnerError):
    """Units of the run failed (or depend on one that did); the message names them and the notebooks not run."""


@dataclasses.dataclass
class Outcome:
    """What happened to the units a run submitted."""

    done: list[str] = dataclasses.field(default_factory=list)
    """Ids of the units built."""
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Unit id -> why it failed, in one line."""
    not_run: dict[str, str] = dataclasses.field(default_factory=dict)
    """Unit id -> the failed unit it depends on."""
    reports: list[str] = dataclasses.field(default_factory=list)
    """One block per failure: unit, job, log and the traceback or the log's tail."""
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    """Unit id -> unit name, for every unit submitted."""


def notebook_params(plans: Sequence[Any]) -> list[tuple[str, Any]]:
    """(notebook name, validated parameters) for each plan that will run."""
    from companion.backbone.plan import load_params_class

    return [(p.path.name, load_params_class(p.cls_path).from_dict(p.values)) for p in plans if p.reasons]


def dry_run(plans: Sequence[Any], profile: str, settings: ExecutorSettings, log: Callable[[str], Any]) -> list[Unit]:
    """Say which units the run would build and what that would take; build nothing.  Returns those units."""
    per = units_for(notebook_params(plans), profile)
    todo = missing(merge(per))
    if not todo:
        log(f"units: all {len(merge(per))} units these notebooks need are in the cache")
        return []
    slots = settings.slots
    s = plan_schedule(todo, slots)
    log(
        f"units: {len(todo)} of {len(merge(per))} missing from the cache"
        + (
            " (built by the notebooks themselves under the local executor)"
            if settings.kind == "local"
            else ", would be submitted:"
        )
    )
    for line in unit_table(todo):
        log(line)
    for line in settings_summary(settings, [u.resources for u in todo]):
        log(line)
    log(
        f"expected wall time {duration(s.wall_s)} on {slots} slot(s) (serial {duration(s.serial_s)}; critical path "
        f"{duration(s.critical_path_s)}: {' -> '.join(s.critical_path)}); estimates are FLOP counts at doctor's "
        "assumed throughput: orders of magnitude"
    )
    return todo


def prepare_units(
    plans: Sequence[Any],
    profile: str,
    settings: ExecutorSettings,
    *,
    root: Path,
    log: Callable[[str], Any] = print,
    executor: Executor | None = None,
) -> tuple[dict[str, str], Outcome]:
    """Build the missing units of the notebooks that will run; returns (notebook -> why it must not run, outcome)."""
    from companion.backbone.cache import default_cache
    from companion.backbone.executor import check_kind

    check_kind(settings)
    per = units_for(notebook_params(plans), profile)
    everything = merge(per)
    todo = missing(everything)
    if not todo:
        log(f"units: all {len(everything)} units these notebooks need are in the cache")
        return {}, Outcome()
    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    folder = (root / settings.folder / profile / run).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / LATEST).write_text(run + "\n")
    own = executor is None
    if executor is None:
        engine: Any
        if settings.kind == "processes":
            from companion.backbone.processes import ProcessExecutor as engine
        else:
            from companion.backbone.slurm import SlurmExecutor as engine
        executor = engine(
            settings, folder, profile=profile, cache_root=str(default_cache().root.resolve()), root=str(root)
        )
    log(
        f"units: {len(todo)} of {len(everything)} missing from the cache; submitting to {settings.kind} "
        f"(logs in {folder})"
    )
    try:
        outcome = build_units(todo, executor, poll_s=settings.poll_s, state_file=folder / STATE_FILE, log=log)
    finally:
        if own:
            executor.close()
    blocked = {}
    for nb, units in per.items():
        bad = [u.name for u in units if u.id in outcome.failed or u.id in outcome.not_run]
        if bad:
            blocked[nb] = f"its units did not build: {', '.join(bad)}"
    return blocked, outcome


def build_units(
    units: Sequence[Unit],
    executor: Executor,
    *,
    poll_s: float = 2.0,
    state_file: Path | None = None,
    log: Callable[[str], Any] = print,
) -> Outcome:
    """Run ``units`` (dependency-ordered; needs outside the list are built) through ``executor``; see the module."""
    by_id = {u.id: u for u in units}
    state = {u.id: "waiting" for u in units}
    jobs: dict[str, Job] = {}
    out = Outcome(names={u.id: u.name for u in units})
    bar = _bar(len(units))

    def say(line: str) -> None:
        if bar is None:
            log(line)
        else:  # the bar steps aside for the line and is redrawn under it
            with bar.external_write_mode(file=sys.stderr):
                log(line)

    def settle(uid: str, new: str, reason: str = "") -> None:
        state[uid] = new
        job = jobs.get(uid)
        where = f" (job {job.job_id})" if job else ""
        say(f"  {by_id[uid].name}: {new}{where}{': ' + reason if reason else ''}")

    try:
        while True:
            for u in units:  # what became ready, or can never run
                if state[u.id] != "waiting":
                    continue
                failed_need = next((n for n in u.needs if n in by_id and state[n] in ("failed", "not run")), None)
                if failed_need:
                    out.not_run[u.id] = by_id[failed_need].name
                    settle(u.id, "not run", f"depends on {by_id[failed_need].name}")
            ready = [
                u
                for u in units
                if state[u.id] == "waiting" and all(n not in by_id or state[n] == "done" for n in u.needs)
            ]
            if ready:
                for job in executor.submit(ready):
                    jobs[job.unit_id] = job
                    settle(job.unit_id, "queued")
            active = [jobs[uid] for uid, st in state.items() if st in ("queued", "running")]
            if not active:
                break
            polled = executor.poll(active)
            for job in active:
                st = polled.get(job.job_id, "PENDING")
                now = phase(st)
                if now == state[job.unit_id]:
                    continue
                unit = by_id[job.unit_id]
                if now == "failed" and is_built(unit):
                    # The entry was published (atomically, manifest last) before the job ended badly, e.g. killed
                    # on its way out: the work is done, say so and go on.
                    say(f"  {unit.name}: its job ended {st} after its {unit.kind} entry was complete")
                    now = "done"
                if now == "failed":
                    reason = st.split()[0].lower() if st else "failed"
                    out.failed[job.unit_id] = reason
                    report = _report(by_id[job.unit_id], job, executor.failure(job, st))
                    out.reports.append(report)
                    settle(job.unit_id, "failed", reason)
                    say(report)
                else:
                    if now == "done":
                        out.done.append(job.unit_id)
                    settle(job.unit_id, now)
            _write_state(state_file, units, state, jobs, out)
            _update_bar(bar, state)
            if any(st in ("queued", "running") for st in state.values()):
                time.sleep(poll_s)
    except BaseException:
        live = [jobs[uid] for uid, st in state.items() if st in ("queued", "running")]
        if live:
            executor.cancel(live)
            say(
                f"interrupted: cancelled {len(live)} job(s) ({', '.join(j.job_id for j in live)}); a rerun submits "
                "what is still missing, and SAE sweeps resume from their checkpoints"
            )
            for j in live:
                state[j.unit_id] = "cancelled"
        _write_state(state_file, units, state, jobs, out)
        raise
    finally:
        if bar is not None:
            bar.close()
    _write_state(state_file, units, state, jobs, out)
    counts = {k: sum(v == k for v in state.values()) for k in ("done", "failed", "not run")}
    log(f"units: {counts['done']} built, {counts['failed']} failed, {counts['not run']} not run")
    return out


def _report(unit: Unit, job: Job, detail: str) -> str:
    return f"--- unit {unit.name} failed ---\njob {job.job_id}, log {job.log}\n{detail}\n--- end of {unit.name} ---"


def _bar(total: int):
    """A progress bar on stderr when it is a terminal (else None: the lines say everything)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="units", unit="unit", file=sys.stderr, leave=True)


def _update_bar(bar: Any, state: Mapping[str, str]) -> None:
    if bar is None:
        return
    counts = {k: sum(v == k for v in state.values()) for k in ("queued", "running", "done", "failed")}
    bar.n = counts["done"]
    bar.set_postfix(counts, refresh=True)


def _write_state(
    path: Path | None, units: Sequence[Unit], state: Mapping[str, str], jobs: Mapping[str, Job], out: Outcome
) -> None:
    if path is None:
        return
    from companion.backbone.atomic import atomic_write_text

    rows = {
        u.id: {
            "name": u.name,
            "kind": u.kind,
            "key": u.key,
            "state": state[u.id],
            "job": jobs[u.id].job_id if u.id in jobs else None,
            "log": str(jobs[u.id].log) if u.id in jobs else None,
            "reason": out.failed.get(u.id) or (f"depends on {out.not_run[u.id]}" if u.id in out.not_run else ""),
        }
        for u in units
    }
    atomic_write_text(path, json.dumps({"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "units": rows}, indent=1))


def failure_message(blocked: Mapping[str, str], outcome: Outcome) -> str:
    """The run's closing error: which units failed, which were not run, which notebooks did not run."""
    names = outcome.names
    parts = [
        f"{len(outcome.failed)} unit(s) failed: "
        + "; ".join(f"{names.get(u, u)} ({why})" for u, why in outcome.failed.items())
    ]
    if outcome.not_run:
        parts.append(
            f"{len(outcome.not_run)} not run: "
            + "; ".join(f"{names.get(u, u)} (depends on {dep})" for u, dep in outcome.not_run.items())
        )
    parts.append(
        f"notebooks not run: {', '.join(blocked) or 'none'}. Fix the cause and run the same command again: "
        "only the missing units are submitted"
    )
    return ". ".join(parts)


def latest_state(root: Path, settings: ExecutorSettings, profile: str) -> tuple[Path, dict[str, Any]] | None:
    """The state file of the profile's last run with units, and its contents (None when there is none)."""
    base = root / settings.folder / profile
    try:
        run = (base / LATEST).read_text().strip()
        path = base / run / STATE_FILE
        return path, json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def units_report(
    profile: str | None = None, *, only: str | None = None, executor: str | None = None, root: Path | None = None
) -> list[str]:
    """``companion units``: every unit the profile's notebooks need, with its state — built or missing in the
    cache, or, for units of the last run that are not built, what that run recorded (refreshed from ``sacct`` for
    jobs still queued or running) — without reading any log."""
    from companion.backbone.executor import resolve_executor
    from companion.backbone.plan import discover, load_params_class, params_class_path, read_notebook
    from companion.backbone.profiles import load_profile, project_root
    from companion.backbone.runtime import resolve_params

    root = (root or project_root()).resolve()
    prof = load_profile(profile)
    settings = resolve_executor(prof.executor, executor)
    pairs = []
    for nb in discover(root / "notebooks", only):
        if not prof.skip_reason(nb.name):
            cls = load_params_class(params_class_path(read_notebook(nb), nb))
            pairs.append((nb.name, resolve_params(cls, prof)))
    per = units_for(pairs, prof.name)
    everything = merge(per)
    states = {u.id: "built" if is_built(u) else "missing" for u in everything}
    extra: dict[str, str] = {}
    last = latest_state(root, settings, prof.name)
    if last is not None:
        path, recorded = last
        rows = recorded.get("units", {})
        live = [
            Job(uid, r["job"], None)
            for uid, r in rows.items()
            if r.get("job") and r.get("state") in ("queued", "running") and states.get(uid) == "missing"
        ]
        polled = _poll_quietly(settings, live)
        for uid, r in rows.items():
            if uid not in states or states[uid] == "built":
                continue
            st = phase(polled[r["job"]]) if r.get("job") in polled else r.get("state", "missing")
            if st == "done":  # built by that run, yet not in this cache (cleared, or another $COMPANION_CACHE)
                continue
            states[uid] = st
            extra[uid] = "  ".join(
                x for x in (f"job {r['job']}" if r.get("job") else "", r.get("reason") or "", r.get("log") or "") if x
            )
    lines = [
        f"profile {prof.name!r}: {len(everything)} units for {len(pairs)} notebook(s)"
        + (f"; last run's record: {last[0]}" if last else "")
    ]
    lines += unit_table(everything, states, extra)
    counts = {k: sum(v == k for v in states.values()) for k in dict.fromkeys(states.values())}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    todo = [u for u in everything if states[u.id] != "built"]
    if todo:
        slots = settings.slots
        s = plan_schedule(todo, slots)
        lines.append(
            f"what is not built: about {duration(s.wall_s)} on {slots} slot(s) with executor {settings.kind} "
            f"(serial {duration(s.serial_s)})"
        )
    return lines


def _poll_quietly(settings: ExecutorSettings, jobs: Sequence[Job]) -> dict[str, str]:
    """States of a past run's jobs still queued or running, if ``sacct`` answers here ({} otherwise)."""
    import shutil

    if not jobs or settings.kind != "slurm" or shutil.which("sacct") is None:
        return {}
    from companion.backbone.slurm import SlurmExecutor

    try:
        return SlurmExecutor(settings, Path("."), profile="", cache_root="", root="").poll(jobs)
    except Exception:  # accounting down: show what the run recorded
        return {}
