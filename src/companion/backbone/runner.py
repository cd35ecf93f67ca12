"""Execute the numbered notebooks with papermill (``make figures``), skipping those that are up to date.

What must run, and why, is decided by :mod:`companion.backbone.plan` (inputs, stamps, parameters), before anything
runs.  Each notebook's stamp is removed as it starts and rewritten when it finishes, with the hashes of the figures
it saved, so a run that fails or is interrupted is redone next time; an interrupted notebook's partial copy is kept
as ``<name>.failed.ipynb`` (:mod:`companion.backbone.kernels` stops its kernel).  Git state is read once per run and
handed to the kernels, so every figure of a run records the same commit and dirty flag.

This module must stay cheap to import: deciding to skip everything must not import torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from companion.backbone.manifest import describe_changes  # noqa: F401 - re-exported: the runner's public names
from companion.backbone.plan import (  # noqa: F401 - re-exported: the runner's public names
    NOTEBOOK_RE,
    NotebookPlan,
    RunnerError,
    discover,
    figures_dir,
    load_params_class,
    params_class_path,
    parse_param_args,
    plan_run,
    read_notebook,
    route_overrides,
)
from companion.backbone.profiles import Profile, load_profile, project_root


class NotebookFailed(RunnerError):
    """A notebook raised in one of its cells; the message holds the cell and the traceback."""


@dataclasses.dataclass
class NotebookResult:
    """What happened to one notebook in a run."""

    notebook: str
    """Notebook file name."""
    status: str
    """"ran", "skipped", "not applicable" (not a notebook of the profile) or "not run" (its units failed to build);
    in a dry run "would run" or "up to date"."""
    seconds: float
    """Wall time spent on it (0 when skipped)."""
    output: Path | None
    """The executed copy, when there is one."""
    reasons: tuple[str, ...] = ()
    """Why it ran (or would run): which inputs changed, --force, no earlier run, ..."""


# ---------------------------------------------------------------------------------------------- the run
def run_notebooks(
    profile: str | None = None,
    *,
    only: str | Sequence[str] | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    executor: str | None = None,
    root: Path | None = None,
    notebooks_dir: Path | None = None,
    build_dir: Path | None = None,
    log: Callable[[str], Any] = print,
) -> list[NotebookResult]:
    """Run the selected notebooks in order under ``profile``; returns what happened to each.

    ``overrides`` values that are text (the command line's) are converted by each notebook's declared types; every
    parameter is validated before any notebook executes.  ``dry_run`` reports what would run, and why, and the
    units those notebooks need that the cache lacks, with the expected wall time; it runs nothing.  ``executor``
    ("local", "processes", "slurm" or an executor YAML file; default: the profile's) says where those units are
    built: "processes" and "slurm" build them before the notebooks run, in worker processes here or as Slurm jobs
    (:mod:`companion.backbone.dispatch`); a notebook whose units failed is not run, and the run ends with
    :class:`~companion.backbone.dispatch.UnitsFailed`; after "processes" has built them, the notebooks run as many
    at a time as it has workers.  A failing notebook stops the run (:class:`NotebookFailed`; its partial copy is
    kept as ``<name>.failed.ipynb``), as does an interrupt (KeyboardInterrupt, also for SIGTERM); earlier executed
    copies and stamps are kept.
    """
    t_start = time.time()
    root = (root or project_root()).resolve()
    prof = load_profile(profile)
    notebooks_dir = (notebooks_dir or root / "notebooks").resolve()
    out_dir = (build_dir or root / "build" / "executed") / prof.name
    nbs = discover(notebooks_dir, only)
    if not nbs:
        raise RunnerError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    # Notebooks that are not this profile's (notebook 00 under paper/rehearsal) are skipped, saying why.
    excluded = [NotebookResult(nb.name, "not applicable", 0.0, None) for nb in nbs if prof.skip_reason(nb.name)]
    for r in excluded:
        log(f"{r.notebook}: skipped, not a notebook of profile {prof.name!r}: {prof.skip_reason(r.notebook)}")
    nbs = [nb for nb in nbs if not prof.skip_reason(nb.name)]
    plans = plan_run(prof, nbs, dict(overrides or {}), root=root, out_dir=out_dir, force=force)
    from companion.backbone.executor import resolve_executor

    settings = resolve_executor(prof.executor, executor)

    if dry_run:
        planned: list[NotebookResult] = list(excluded)
        for plan in plans:
            status = "would run" if plan.reasons else "up to date"
            why = f" ({'; '.join(plan.reasons)})" if plan.reasons else ", would be skipped"
            log(f"{plan.path.name}: {status}{why}")
            planned.append(NotebookResult(plan.path.name, status, 0.0, None, tuple(plan.reasons)))
        n = sum(r.status == "would run" for r in planned)
        if n:
            from companion.backbone.dispatch import dry_run as units_dry_run

            units_dry_run(plans, prof.name, settings, log)
        log(
            f"dry run, profile {prof.name!r}: {n} would run, {len(plans) - n} up to date; parameters valid; "
            "nothing was executed"
        )
        return planned

    from companion.backbone.atomic import remove_stale_temporaries
    from companion.backbone.gitstate import GIT_ENV, read_git_state
    from companion.backbone.kernels import sigterm_as_interrupt

    results: list[NotebookResult] = list(excluded)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = figures_dir(prof, root)
    env_before = dict(os.environ)
    try:
        prof.apply_env()
        os.environ.update({"COMPANION_ROOT": str(root), "COMPANION_PROFILE": prof.name, "COMPANION_RUNNER": "1"})
        if any(p.reasons for p in plans):
            for d in (figs, out_dir):  # what an earlier, killed run could not clean up
                remove_stale_temporaries(d)
            # Read once, before any kernel writes a figure: every figure of this run records the same state.
            os.environ[GIT_ENV] = json.dumps(read_git_state(root))
        with sigterm_as_interrupt():
            blocked: dict[str, str] = {}
            if settings.kind != "local" and any(p.reasons for p in plans):
                from companion.backbone.dispatch import prepare_units

                blocked, outcome = prepare_units(plans, prof.name, settings, root=root, log=log)
            done: dict[str, NotebookResult] = {}
            for plan in plans:
                if plan.path.name in blocked:
                    log(f"{plan.path.name}: not run, {blocked[plan.path.name]}")
                    done[plan.path.name] = NotebookResult(plan.path.name, "not run", 0.0, None, tuple(plan.reasons))
                elif not plan.reasons:
                    log(f"{plan.path.name}: up to date, skipped")
                    done[plan.path.name] = NotebookResult(plan.path.name, "skipped", 0.0, out_dir / plan.path.name)
            todo = [p for p in plans if p.path.name not in done]
            # Once an executor has built the units, the notebooks only read the cache: they run as many at a time as
            # it had workers (the local executor leaves the building to them, one after another).
            at_once = settings.slots if settings.kind == "processes" else 1
            done.update(_execute_all(todo, at_once, prof, out_dir, figs, root, log))
            results += [done[p.path.name] for p in plans]
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    ran = sum(r.status == "ran" for r in results)
    not_run = sum(r.status == "not run" for r in results)
    log(
        f"{ran} ran, {len(results) - ran - not_run} skipped{f', {not_run} not run' if not_run else ''}, profile "
        f"{prof.name!r}, {time.time() - t_start:.1f} s; executed copies in {out_dir}"
    )
    if blocked:
        from companion.backbone.dispatch import UnitsFailed, failure_message

        raise UnitsFailed(failure_message(blocked, outcome))
    return results


def _execute_all(
    plans: Sequence[NotebookPlan], at_once: int, prof: Profile, out_dir: Path, figs: Path, root: Path, log
) -> dict[str, NotebookResult]:
    """Execute ``plans``, ``at_once`` at a time (in plan order as slots free up); notebook name -> result.  A failure
    starts nothing new, lets the running notebooks finish, then raises; an interrupt stops them all."""
    from companion.backbone import kernels

    kernels.start_run()
    if at_once <= 1 or len(plans) <= 1:
        return {p.path.name: _execute(p, prof, out_dir, figs, root, log) for p in plans}
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    out: dict[str, NotebookResult] = {}
    pending, running = list(plans), dict[Future, NotebookPlan]()
    failure: BaseException | None = None
    pool = ThreadPoolExecutor(at_once, thread_name_prefix="notebook")
    try:
        while pending or running:
            while pending and failure is None and len(running) < at_once:
                plan = pending.pop(0)
                running[pool.submit(_execute, plan, prof, out_dir, figs, root, log)] = plan
            if not running:
                break
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in finished:
                plan = running.pop(f)
                try:
                    out[plan.path.name] = f.result()
                except NotebookFailed as e:
                    failure = failure or e
    except BaseException:
        kernels.stop_all()
        wait(running, timeout=60)  # each keeps its partial notebook and says it was interrupted
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if failure is not None:
        raise failure
    return out


def _execute(plan: NotebookPlan, prof: Profile, out_dir: Path, figs: Path, root: Path, log) -> NotebookResult:
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from companion.backbone import kernels
    from companion.backbone.atomic import atomic_write_text, remove_stale_temporaries, temporary_beside

    nb_path = plan.path
    final = out_dir / nb_path.name
    failed = out_dir / f"{nb_path.stem}.failed.ipynb"
    stamp_path = out_dir / f"{nb_path.stem}.stamp.json"
    stamp_path.unlink(missing_ok=True)  # from here on, until it finishes, the notebook is not up to date
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    env = {
        "COMPANION_NOTEBOOK": nb_path.relative_to(root).as_posix() if nb_path.is_relative_to(root) else nb_path.name,
        "COMPANION_RUN_ID": run_id,
    }
    log(f"{nb_path.name}: running ({'; '.join(plan.reasons)})")
    t0 = time.time()
    with temporary_beside(final) as running:
        try:
            parameters = {"profile": prof.name, "overrides": plan.overrides}
            kernels.execute(nb_path, running, parameters, cwd=nb_path.parent, env=env)
        except PapermillExecutionError as e:
            _keep(running, failed)
            msg = (
                f"{nb_path.name} failed in cell {e.cell_index} (execution count {e.exec_count}); earlier results "
                f"are kept. Partial notebook: {failed}\n--- cell source ---\n{e.source}\n--- error ---\n"
                f"{e.ename}: {e.evalue}\n" + _strip_ansi("\n".join(e.traceback))
            )
            raise NotebookFailed(msg) from None
        except DeadKernelError:
            _keep(running, failed)
            remove_stale_temporaries(figs)  # the kernel is dead: whatever it was writing is debris
            raise NotebookFailed(_dead_kernel_message(nb_path.name, failed, kernels.last_kernel_exit())) from None
        except BaseException:
            _keep(running, failed)
            remove_stale_temporaries(figs)  # the kernel is dead: whatever it was writing is debris
            log(
                f"{nb_path.name}: interrupted after {time.time() - t0:.1f} s; partial notebook kept as {failed}; "
                "the next run redoes it"
            )
            raise
        _tag_executed(running, prof)
        os.replace(running, final)
    failed.unlink(missing_ok=True)
    secs = time.time() - t0
    stamp = {
        "inputs": plan.manifest,
        "run": run_id,
        "figures": _figures_of_run(figs, run_id),
        "seconds": round(secs, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(stamp_path, json.dumps(stamp, indent=1))
    log(f"{nb_path.name}: done in {secs:.1f} s")
    return NotebookResult(nb_path.name, "ran", secs, final, tuple(plan.reasons))


def _dead_kernel_message(name: str, failed: Path, status: int | None) -> str:
    """One line for a kernel that died under a cell (killed from outside, most often by the out-of-memory killer)."""
    import signal

    cell = "?"
    try:
        cells = json.loads(failed.read_text())["cells"]
        started = [i for i, c in enumerate(cells) if (c.get("metadata", {}).get("papermill") or {}).get("start_time")]
        i = started[-1]
        first = "".join(cells[i]["source"]).strip().splitlines()[0]
        cell = f"{i} ({first[:60]!r}{'...' if len(first) > 60 else ''})"
    except (OSError, ValueError, KeyError, IndexError):
        pass
    if status is not None and status < 0:
        how = f"killed by {signal.Signals(-status).name}"
    else:
        how = "its process ended" + (f" with exit status {status}" if status is not None else "")
    cause = (
        "most likely the machine ran out of memory and the out-of-memory killer ended it (see `dmesg`): free "
        "memory, or lower what this cell holds at once (batch sizes, items, model size)"
        if status in (None, -signal.SIGKILL)
        else "it crashed"
    )
    return f"{name}: the kernel died in cell {cell}, {how}; {cause}. Partial notebook: {failed}"


def _keep(running: Path, failed: Path) -> None:
    """Keep the partial executed notebook (papermill wrote it as far as it ran) as ``<name>.failed.ipynb``."""
    if running.is_file() and running.stat().st_size:
        os.replace(running, failed)


def _figures_of_run(figs: Path, run_id: str) -> dict[str, dict[str, str]]:
    """Figure stem -> image hashes, for every sidecar in ``figs`` that this run wrote."""
    out = {}
    for side in sorted(figs.glob("*.json")) if figs.is_dir() else []:
        try:
            text = side.read_text()
            if run_id not in text:
                continue
            data = json.loads(text)
        except (OSError, ValueError):
            continue
        if data.get("run") == run_id and data.get("files"):
            out[side.stem] = data["files"]
    return out


def _tag_executed(path: Path, prof: Profile) -> None:
    """Stamp the executed copy with its profile, so it can never pass for a paper run."""
    nb = json.loads(path.read_text())
    nb.setdefault("metadata", {}).setdefault("companion", {})["executed_profile"] = prof.name
    nb["metadata"]["companion"]["fallback"] = prof.is_fallback
    path.write_text(json.dumps(nb, indent=1))


def _strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)
