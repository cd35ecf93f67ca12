"""``companion figures --executor slurm`` against the real single-node Slurm (the ``slurm`` fixture): the ci
profile's units run as Slurm jobs and the figures' sidecar data equal the local ci run's (``ci_run``); a unit that
raises, one warned of its time limit (requeued by submitit's checkpoint protocol) and one cancelled with ``scancel`` are reported as
such while every other unit goes on; the rerun submits only what is missing and the cancelled SAE training resumes
from its checkpoint, ending with the very SAEs of the uninterrupted local run.

What runs on Slurm, to fit the test budget (every job pays ~10 s of imports on 2 cores): notebook 01, whose
figures are compared with the local run's, and notebook 04 on one of its four models, whose cached scores are
compared with the local run's entry (notebooks 00 and 03 only read organisms, which the Slurm cache shares with the
local run's by hard links).  Sweeps trained in parts are compared with whole ones in tests/sae/test_sae_parts.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ci_run import ROOT, figures_in

submitit = pytest.importorskip("submitit")
pytestmark = [pytest.mark.slow, pytest.mark.system, pytest.mark.xdist_group("ci_run")]  # make test-system

GOOD = ["organism:backdoor@blocks.1.hook_mlp_out", "organism:backdoor@blocks.1.hook_resid_pre"]
BAD = "organism:backdoor@blocks.1.hook_no_such_site"
ONLY = "01,04"
MODEL = "syco-p50-small"
COMMON = {"checkpoint_every": 8, "models": [MODEL]}


def _sacct(job_ids) -> dict[str, str]:
    bases = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(bases)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def _until(pred, timeout=180.0, every=0.1, what="condition"):
    t0 = time.monotonic()
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(every)


def _warn_of_time_limit(job_id: str) -> None:
    """Deliver the signal Slurm sends a job before its time limit (submitit asks for USR2) to the job's task, as
    slurmstepd does; submitit's handler then calls the job's checkpoint() and requeues it.  (``scancel --signal``,
    which submitit's ``_interrupt`` uses, is refused by this Slurm for a task of an array whose other tasks still wait:
    "Job can not be altered now".)"""
    raw = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobIDRaw", "-j", job_id], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    rows = subprocess.run(["scontrol", "listpids", raw], capture_output=True, text=True, check=True).stdout
    task = next(int(r.split()[0]) for r in rows.splitlines()[1:] if r.split()[2:4] == ["0", "0"])
    os.kill(task, signal.SIGUSR2)


class Run:
    """One ``run_notebooks(..., executor=<yaml>)`` call on the Slurm cache, and its unit state file."""

    def __init__(self, base: Path, cache: Path):
        self.base, self.cache = base, cache
        self.slurm_dir = base / "slurm"
        self.exec_yaml = base / "executor.yaml"
        self.exec_yaml.write_text(
            json.dumps(
                {
                    "kind": "slurm",
                    "slurm": {"folder": str(self.slurm_dir), "poll_s": 0.5, "array_parallelism": 8},
                    "resources": {"default": {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 20}},
                }
            )
        )
        self.figs = base / "figures"
        self.lines: list[str] = []

    def state(self) -> dict:
        try:
            run = (self.slurm_dir / "ci" / "latest").read_text().strip()
            return json.loads((self.slurm_dir / "ci" / run / "units.json").read_text())["units"]
        except (OSError, ValueError):
            return {}

    def unit(self, name: str) -> dict | None:
        return next((u for u in self.state().values() if u["name"] == name), None)

    def __call__(self, **overrides):
        from companion.backbone import runner

        with figures_in(self.figs):
            return runner.run_notebooks(
                "ci",
                only=ONLY,
                root=ROOT,
                build_dir=self.base / "executed",
                executor=str(self.exec_yaml),
                overrides={**COMMON, **overrides},
                log=self.lines.append,
            )


def _checkpointed_and_running(run: Run, cache: Path, name: str):
    """The job id of unit ``name`` once it runs and has written a training checkpoint."""
    u = run.unit(name)
    if not u or not u["job"] or not u["key"]:
        return None
    ck = cache / u["kind"] / f".ckpt-{u['key']}"
    if u["state"] == "done":
        raise AssertionError(f"{name} finished before the test could interrupt it")
    if ck.is_dir() and any(p.name.startswith("step-") for p in ck.iterdir()):
        return u["job"]
    return None


@pytest.fixture(scope="module")
def slurm_runs(slurm, ci_run, tmp_path_factory):
    """Run 1 with a third, impossible target while a unit is warned of its time limit and another is cancelled;
    then the rerun."""
    base = tmp_path_factory.mktemp("slurm-units")
    cache = base / "cache"
    local = Path(os.environ["COMPANION_CACHE"])
    for kind in ("tokenizer", "organism"):  # the organisms trained for the local run, shared by hard links
        shutil.copytree(local / kind, cache / kind, copy_function=os.link)
    old = os.environ["COMPANION_CACHE"]
    os.environ["COMPANION_CACHE"] = str(cache)
    run = Run(base, cache)
    actions: dict[str, str] = {}
    errors: list[BaseException] = []

    def intervene():
        try:
            pre = _until(
                lambda: _checkpointed_and_running(run, cache, f"sae-train {GOOD[0]}"),
                what="a checkpoint of the first sweep",
            )
            _warn_of_time_limit(pre)
            actions["preempted"] = pre
            cancel = _until(
                lambda: _checkpointed_and_running(run, cache, f"sae-train {GOOD[1]}"),
                what="a checkpoint of the second sweep",
            )
            subprocess.run(["scancel", cancel], check=True)
            actions["cancelled"] = cancel
        except BaseException as e:  # reported by the fixture
            errors.append(e)

    from companion.backbone.dispatch import UnitsFailed

    t = threading.Thread(target=intervene, daemon=True)
    t0 = time.monotonic()
    t.start()
    try:
        with pytest.raises(UnitsFailed) as failed:
            run(targets=GOOD + [BAD])
        t.join(timeout=60)
        first = (run.state(), list(run.lines), str(failed.value), time.monotonic() - t0)
        assert not errors, errors
        run.lines.clear()
        t1 = time.monotonic()
        results = run()
        second = (run.state(), list(run.lines), results, time.monotonic() - t1)
    finally:
        os.environ["COMPANION_CACHE"] = old
    print(f"slurm run 1 {first[3]:.0f} s, rerun {second[3]:.0f} s")
    return {"first": first, "second": second, "actions": actions, "run": run, "cache": cache, "local": local}


def test_units_ran_as_slurm_jobs_and_the_figures_equal_the_local_run(slurm_runs, ci_run):
    state, lines, results, _ = slurm_runs["second"]
    # Notebook 04 ran in the first run (its units all built) and is up to date now; notebook 01 runs now.
    assert [(r.notebook[:2], r.status) for r in results] == [("01", "ran"), ("04", "skipped")], lines
    done = {
        **{u["job"]: u for u in slurm_runs["first"][0].values() if u["state"] == "done"},
        **{u["job"]: u for u in state.values() if u["state"] == "done"},
    }
    assert sorted(u["kind"] for u in done.values()) == ["sae", "sae", "sae-eval", "sae-eval", "sycophancy-scores"]
    acct = _until(
        lambda: (lambda a: a if all(a.get(j) == "COMPLETED" for j in done) else None)(_sacct(done)),
        timeout=60,
        what="accounting to record every job",
    )
    assert all(acct[j] == "COMPLETED" for j in done)
    figs = slurm_runs["run"].figs
    wanted = {
        p.name for p in ci_run.figs.glob("*.json") if json.loads(p.read_text())["notebook"].startswith("notebooks/01_")
    }
    assert wanted and wanted <= {p.name for p in figs.glob("*.json")}
    for name in sorted(wanted):
        mine, theirs = json.loads((figs / name).read_text()), json.loads((ci_run.figs / name).read_text())
        assert mine["data"] == theirs["data"], f"{name}: sidecar data differ from the local run's"
    # Notebook 04's model: the same cache entry, with the same statistics, as the local run's notebook made.
    [mine] = (slurm_runs["cache"] / "sycophancy-scores").glob("*/scores.json")
    local = slurm_runs["local"] / "sycophancy-scores" / mine.parent.name / "scores.json"
    assert mine.read_text() == local.read_text()


def test_a_failure_a_requeue_and_a_cancellation_are_reported_and_the_rest_goes_on(slurm_runs):
    state, lines, message, _ = slurm_runs["first"]
    by_name = {u["name"]: u for u in state.values()}
    text = "\n".join(lines)
    # The impossible site raises; the report has the unit, job, log and the remote traceback.
    u = by_name[f"sae-train {BAD}"]
    assert u["state"] == "failed" and u["reason"] == "failed"
    assert f"--- unit sae-train {BAD} failed ---\njob {u['job']}, log {u['log']}" in text
    assert "KeyError: \"hook 'blocks.1.hook_no_such_site' does not exist" in text
    assert "submitit/core/submission.py" not in text  # the job wrapper's frames are left out
    assert by_name[f"sae-eval {BAD}"]["state"] == "not run"
    # Warned of its time limit: submitit's checkpoint() requeued it and it resumed from its checkpoint to the end.
    u = by_name[f"sae-train {GOOD[0]}"]
    assert u["job"] == slurm_runs["actions"]["preempted"] and u["state"] == "done"
    log = Path(u["log"]).read_text()
    assert "interrupted; requeued" in log and "resuming from the checkpoint at step" in log
    assert by_name[f"sae-eval {GOOD[0]}"]["state"] == "done"
    # Cancelled: reported from Slurm's state at once; its evaluation waits for a rerun.
    cancelled = by_name[f"sae-train {GOOD[1]}"]
    assert cancelled["job"] == slurm_runs["actions"]["cancelled"] and cancelled["reason"] == "cancelled"
    assert _sacct([cancelled["job"]])[cancelled["job"]].startswith("CANCELLED")
    assert "KeyboardInterrupt: stopped by SIGTERM" in Path(cancelled["log"]).read_text()  # at once, not at KillWait
    assert by_name[f"sae-eval {GOOD[1]}"]["state"] == "not run"
    # Every other unit went on; notebook 04's units all built, so it ran, and notebook 01 did not.
    assert by_name[f"sycophancy {MODEL}#0"]["state"] == "done"
    assert "01_gated_vs_l1_pareto.ipynb: not run, its units did not build" in text
    assert "04_sycophancy_agreement.ipynb: done" in text
    assert message.startswith("2 unit(s) failed") and "2 not run" in message
    assert "notebooks not run: 01_gated_vs_l1_pareto.ipynb" in message


def test_the_rerun_submits_only_what_is_missing_and_resumes_the_cancelled_training(slurm_runs):
    state, lines, _, _ = slurm_runs["second"]
    assert sorted(u["name"] for u in state.values()) == [f"sae-eval {GOOD[1]}", f"sae-train {GOOD[1]}"]
    resumed = next(u for u in state.values() if u["name"] == f"sae-train {GOOD[1]}")
    assert "resuming from the checkpoint at step" in Path(resumed["log"]).read_text()
    # Requeued, cancelled and resumed, or not: the sweeps are the uninterrupted local run's, bit for bit.
    import torch
    from safetensors.torch import load_file

    local, cache = slurm_runs["local"], slurm_runs["cache"]
    sweeps = sorted(p.name for p in (cache / "sae").iterdir() if (p / "manifest.json").is_file())
    assert len(sweeps) == 2
    for key in sweeps:

        def members(root, key=key):  # each SAE's measured step time (its log's seconds) differs between runs
            ms = json.loads((root / "sae" / key / "sweep.json").read_text())["members"]
            for m in ms:
                m["log"].pop("seconds")
            return ms

        assert members(cache) == members(local)
        for m in members(cache):
            mine = load_file(cache / "sae" / key / m["folder"] / "sae_weights.safetensors")
            theirs = load_file(local / "sae" / key / m["folder"] / "sae_weights.safetensors")
            assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not any(p.name.startswith(".ckpt-") for p in (cache / "sae").iterdir()), "checkpoints are removed"


def test_doctor_checks_sbatch_the_partition_and_its_gpus(slurm, tmp_path):
    from companion.cli import main

    ok = tmp_path / "ok.yaml"
    ok.write_text("kind: slurm\nslurm: {partition: debug}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: slurm\nslurm: {partition: gpu-a100}\nresources: {sae-train: {gpus_per_node: 1}}\n")
    big = tmp_path / "big.yaml"
    big.write_text("kind: slurm\nslurm: {partition: debug}\nresources: {sae-eval: {cpus_per_task: 64, mem_gb: 4096}}\n")
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text("kind: slurm\nslurm: {partition: debug}\nresources: {sae-train: {gpus_per_node: 1}}\n")
    from companion.backbone.executor import RESOURCE_CLASSES, resolve_executor
    from companion.backbone.profiles import load_profile
    from companion.backbone.slurm import slurm_checks

    base = load_profile("ci").executor
    checks = {c[0]: c for c in slurm_checks(resolve_executor(base, str(ok)), RESOURCE_CLASSES)}
    assert checks["slurm"][1] and checks["slurm accounting"][1] and checks["slurm partition"][1]
    assert checks["slurm partition"][2].startswith("debug")
    checks = {c[0]: c for c in slurm_checks(resolve_executor(base, str(bad)), RESOURCE_CLASSES)}
    assert checks["slurm partition"][1] is False and "gpu-a100" in checks["slurm partition"][2]
    checks = {c[0]: c for c in slurm_checks(resolve_executor(base, str(big)), RESOURCE_CLASSES)}
    assert checks["slurm fits sae-eval"][1] is False and "64 CPUs" in checks["slurm fits sae-eval"][2]
    assert "4096 GB" in checks["slurm fits sae-eval"][2] and "slurm fits sae-train" not in checks
    checks = {c[0]: c for c in slurm_checks(resolve_executor(base, str(gpus)), RESOURCE_CLASSES)}
    assert checks["slurm gpus sae-train"][1] is False and "have 0" in checks["slurm gpus sae-train"][2]
    assert main(["doctor", "--profile", "ci", "--executor", str(ok)]) == 0
