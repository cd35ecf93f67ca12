"""The Slurm engine (:class:`companion.backbone.executor.Executor`) through submitit, and its preflight checks.

Units that may run at the same time and share a resource class go as one job array (submitit's ``batch()``), at most
``array_parallelism`` tasks of it running at once; dependencies are kept by the driver
(:mod:`companion.backbone.dispatch`), which submits a unit once the units it needs are built — so a failed unit
holds back only its own dependants, where Slurm's ``afterok`` on an array would hold back everything after it.
Every job has its folder ``<run folder>/<job id>/`` (``<array>_<task>`` for arrays) with submitit's script, pickle
and one log, ``<job id>_0_log.out`` (output, progress bars and tracebacks).

States come from Slurm's accounting: one ``sacct`` call for all the jobs of a run per poll.  A job that failed has
its remote traceback in its result file (submitit writes it); one cancelled, out of time, out of memory or on a
failed node is reported from its state at once, without waiting for a result that will never come.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from companion.backbone.executor import ExecutorError, ExecutorSettings, Job, log_tail, own_frames
from companion.backbone.jobs import UnitJob

STATE_WORDS = {
    "CANCELLED": "cancelled (scancel, or by an administrator)",
    "TIMEOUT": "reached its time limit (raise timeout_min of its resource class)",
    "NODE_FAIL": "its node failed",
    "OUT_OF_MEMORY": "ran out of memory (raise mem_gb of its resource class)",
    "PREEMPTED": "was preempted and not requeued",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "missed its deadline",
    "FAILED": "failed",
}
"""How each failed Slurm state reads in a report."""


class SlurmExecutor:
    """Runs units as Slurm jobs through submitit (see the module docstring)."""

    def __init__(self, settings: ExecutorSettings, folder: Path, *, profile: str, cache_root: str, root: str):
        self.settings, self.folder = settings, Path(folder)
        self.profile, self.cache_root, self.root = profile, cache_root, root

    def _executor(self, resource_class: str, n: int):
        import submitit

        s, r = self.settings.slurm, self.settings.resources_for(resource_class)
        kw: dict[str, Any] = {"slurm_max_num_timeout": s.max_requeues}
        if s.python:
            kw["slurm_python"] = s.python
        ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm", **kw)
        params: dict[str, Any] = {
            "name": f"companion-{resource_class}",
            "timeout_min": r.timeout_min,
            "mem_gb": r.mem_gb,
            "cpus_per_task": r.cpus_per_task,
            "slurm_array_parallelism": min(s.array_parallelism, max(n, 1)),
            "slurm_partition": s.partition,
            "slurm_account": s.account,
            "slurm_qos": s.qos,
            "slurm_constraint": s.constraint,
            "slurm_setup": list(s.setup) or None,
            "slurm_additional_parameters": dict(s.additional) or None,
            "slurm_stderr_to_stdout": True,  # one log per job: output, progress bars and tracebacks in order
        }
        if r.gpus_per_node:
            params["gpus_per_node"] = r.gpus_per_node
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def submit(self, units: Sequence[Any]) -> list[Job]:
        """One job array per resource class (a single job where a class has one unit)."""
        out: list[Job] = []
        by_class: dict[str, list[Any]] = {}
        for u in units:
            by_class.setdefault(u.resources, []).append(u)
        for resource_class, group in by_class.items():
            ex = self._executor(resource_class, len(group))
            try:
                with ex.batch():
                    handles = [ex.submit(UnitJob(u, self.profile, self.cache_root, self.root)) for u in group]
            except Exception as e:  # sbatch refused (bad partition, account, resources): say so, once
                raise ExecutorError(f"sbatch refused the {resource_class} jobs: {' '.join(str(e).split())}") from None
            for u, h in zip(group, handles, strict=True):
                out.append(Job(u.id, str(h.job_id), Path(h.paths.stdout), h))
        return out

    def poll(self, jobs: Sequence[Job]) -> dict[str, str]:
        """Job id -> Slurm state, from one ``sacct`` call (a job accounting has not seen yet is PENDING)."""
        if not jobs:
            return {}
        from submitit.slurm.slurm import read_job_id

        bases = sorted({j.job_id.split("_")[0] for j in jobs})
        r = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(bases)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        seen: dict[str, str] = {}
        for line in r.stdout.splitlines():
            jid, _, state = line.partition("|")
            try:
                parts = read_job_id(jid)
            except Exception:  # a form we do not know: ignore the line, the next poll may do better
                continue
            for p in parts:
                if len(p) >= 3:  # a range of array tasks in one record ("123_[0-3%2]": pending)
                    for i in range(int(p[1]), int(p[2]) + 1):
                        seen[f"{p[0]}_{i}"] = state
                else:
                    seen["_".join(p[:2])] = state
        return {j.job_id: seen.get(j.job_id, "PENDING") for j in jobs}

    def cancel(self, jobs: Sequence[Job]) -> None:
        if jobs:
            subprocess.run(["scancel", *[j.job_id for j in jobs]], capture_output=True, timeout=60)

    def close(self) -> None:
        """Nothing to release: the jobs belong to Slurm."""

    def failure(self, job: Job, state: str) -> str:
        """The remote traceback (a raising unit), or what the state means and the log's last lines."""
        word = state.split()[0] if state else "FAILED"
        handle = job.handle
        result = Path(handle.paths.result_pickle) if handle is not None else None
        if word == "FAILED" and result is not None and result.is_file():
            try:
                import pickle

                with open(result, "rb") as f:
                    outcome, value = pickle.load(f)
                if outcome == "error":
                    return own_frames(str(value))
            except Exception:  # an unreadable result: fall back to the log
                pass
        return f"the job {STATE_WORDS.get(word, word.lower())} ({state})\n" + log_tail(job.log)


# ------------------------------------------------------------------------------------------------ doctor
def slurm_checks(
    settings: ExecutorSettings, resource_classes: Sequence[str]
) -> list[tuple[str, bool | None, str, str]]:
    """``companion doctor --executor slurm``: (name, ok, detail, fix) for sbatch, accounting, the partition, its GPUs
    and whether each kind of work fits its nodes (CPUs, memory)."""
    out: list[tuple[str, bool | None, str, str]] = []
    missing = [c for c in ("sbatch", "sacct", "scancel", "sinfo") if shutil.which(c) is None]
    if missing:
        return [
            (
                "slurm",
                False,
                f"{', '.join(missing)} not on PATH",
                "run on a login node of the cluster (or `module load slurm`), or use --executor local",
            )
        ]
    version = subprocess.run(["sbatch", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    out.append(("slurm", True, version or "sbatch found", ""))
    acct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minute"], capture_output=True, text=True, timeout=30)
    out.append(
        (
            "slurm accounting",
            acct.returncode == 0,
            "sacct answers" if acct.returncode == 0 else f"sacct failed: {acct.stderr.strip()[:200]}",
            "the runner reads job states from Slurm's accounting (slurmdbd); ask the administrators",
        )
    )
    part = settings.slurm.partition
    fmt = ["-h", "-o", "%P|%a|%D|%c|%m|%G|%l"]
    r = subprocess.run(["sinfo", *fmt, *(["-p", part] if part else [])], capture_output=True, text=True, timeout=30)
    rows = [line.split("|") for line in r.stdout.splitlines() if line.strip()]
    if r.returncode != 0 or not rows:
        out.append(
            (
                "slurm partition",
                False,
                f"partition {part or '(default)'}: sinfo shows nothing ({r.stderr.strip()[:200]})",
                "set executor.slurm.partition to one `sinfo -s` lists",
            )
        )
        return out
    name, avail, nodes, cpus, mem, gres, limit = rows[0][:7]
    out.append(
        (
            "slurm partition",
            avail == "up",
            f"{name}: {avail}, {nodes} node(s), {cpus} CPUs and {mem} MB per node, GRES {gres}, time limit {limit}",
            f"partition {name} is {avail}: pick another",
        )
    )
    gpus = _gres_gpus(gres)
    for c in dict.fromkeys(resource_classes):
        res = settings.resources_for(c)
        node_cpus, node_mb, short = _leading_int(cpus), _leading_int(mem), []
        if node_cpus is not None and res.cpus_per_task > node_cpus:
            short.append(f"{res.cpus_per_task} CPUs (nodes have {node_cpus})")
        if node_mb is not None and res.mem_gb * 1024 > node_mb:
            short.append(f"{res.mem_gb:g} GB (nodes have {node_mb / 1024:.0f} GB)")
        if short:
            out.append(
                (
                    f"slurm fits {c}",
                    False,
                    f"{c} asks for {' and '.join(short)} per job: Slurm would never start it",
                    f"lower executor.resources.{c} (cpus_per_task, mem_gb) or pick a partition with bigger nodes",
                )
            )
        if res.gpus_per_node:
            ok = gpus >= res.gpus_per_node
            out.append(
                (
                    f"slurm gpus {c}",
                    ok,
                    f"{c} asks for {res.gpus_per_node} GPU(s) per node; the partition's nodes have {gpus}",
                    f"pick a GPU partition (executor.slurm.partition) or lower executor.resources.{c}.gpus_per_node",
                )
            )
    return out


def _leading_int(text: str) -> int | None:
    """sinfo's "2" or "257000" -> its number; None for "64+" (nodes differ: some may be bigger) or no number."""
    m = re.fullmatch(r"\s*(\d+)\s*", text)
    return int(m.group(1)) if m else None


def _gres_gpus(gres: str) -> int:
    """GPUs per node in sinfo's GRES column ("gpu:a100:8(S:0-1)" -> 8; "(null)" -> 0)."""
    best = 0
    for part in gres.split(","):
        bits = part.split("(")[0].split(":")
        if bits and bits[0] == "gpu":
            try:
                best = max(best, int(bits[-1]))
            except ValueError:
                best = max(best, 1)
    return best
