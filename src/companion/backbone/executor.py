"""Where a run's work units execute: in the notebooks' own kernels (``local``), in worker processes on this machine
(``processes``) or as Slurm jobs (``slurm``).

A profile's ``executor:`` section (:class:`ExecutorSettings`) says which, and what each job asks for: Slurm settings
(partition, account, qos, constraint, how many array tasks run at once, setup lines such as ``module load cuda``,
any other ``#SBATCH`` option) and resources per *resource class* (GPUs, CPUs, memory, time limit), with the names lab
users know from submitit and Hydra's submitit launcher.  ``companion figures --executor slurm`` (``make figures
EXECUTOR=slurm``) switches the kind; ``--executor site.yaml`` deep-merges a file holding an executor section over the
profile's, so a site's partition and account live outside the packaged profiles.

An engine implements :class:`Executor` (submit, poll, cancel, explain a failure, close):
:mod:`companion.backbone.slurm` and :mod:`companion.backbone.processes` are the two there are; another (Ray, say) would
implement the same five methods (:func:`own_frames` and :func:`log_tail` help with the failures).  Inside a job, the
unit's entry builds its cache entry; results travel through the cache, never through pickles, so an entry's key and contents are the same whichever executor built it (:mod:`companion.backbone.jobs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError, model_validator

from companion.backbone.config import Config, deep_merge, format_validation_error

KINDS = ("local", "processes", "slurm")
"""The executor kinds: ``local`` (each notebook builds what it needs in its kernel), ``processes`` (a pool of worker
processes here builds every missing unit first) and ``slurm`` (submitit)."""

RESOURCE_CLASSES = ("default", "tokenizer", "organism", "sae-train", "sae-eval", "sycophancy")
"""The resource classes units belong to ("default" fills in what a class does not set)."""


class ExecutorError(ValueError):
    """A bad executor setting or an executor that cannot run here; the message says what to do."""


class Resources(Config):
    """What one job of a resource class asks for (submitit's names)."""

    gpus_per_node: int = 0
    """GPUs per job (Slurm ``--gpus-per-node``)."""
    cpus_per_task: int = 1
    """CPU cores per job."""
    mem_gb: float = 4.0
    """Memory per job in GB."""
    timeout_min: int = 60
    """Time limit per job in minutes; a job that reaches it is requeued if its unit can resume (SAE training)."""

    @model_validator(mode="after")
    def _check(self) -> Resources:
        if self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.mem_gb <= 0 or self.timeout_min < 1:
            raise ValueError("gpus_per_node >= 0, cpus_per_task >= 1, mem_gb > 0 and timeout_min >= 1 required")
        return self


class SlurmSettings(Config):
    """How jobs are submitted to Slurm."""

    partition: str | None = None
    """Partition (None: the cluster's default)."""
    account: str | None = None
    """Account to charge (None: the user's default)."""
    qos: str | None = None
    """Quality of service (None: the default)."""
    constraint: str | None = None
    """Node features required, e.g. "a100" (None: any node)."""
    array_parallelism: int = 8
    """How many tasks of one job array run at once (also the parallelism ``--dry-run`` plans with)."""
    setup: list[str] = []
    """Shell lines run in each job before Python starts, e.g. ["module load cuda/12.1", "source .venv/bin/activate"]."""
    additional: dict[str, str | int | bool] = {}
    """Any other ``#SBATCH`` option, by its long name: {"mail-type": "END", "exclude": "node07"}."""
    python: str | None = None
    """Command that runs Python in a job (None: this interpreter, which must be reachable from the compute nodes)."""
    folder: str = "build/slurm"
    """Where job scripts, pickles and logs go (relative to the project root); must be on a filesystem the nodes share."""
    poll_s: float = 2.0
    """Seconds between two looks at the jobs' states (one ``sacct`` call for all of them)."""
    max_requeues: int = 3
    """How often a job that reached its time limit is requeued to resume from its checkpoint."""

    @model_validator(mode="after")
    def _check(self) -> SlurmSettings:
        if self.array_parallelism < 1 or self.poll_s <= 0 or self.max_requeues < 0:
            raise ValueError("array_parallelism >= 1, poll_s > 0 and max_requeues >= 0 required")
        return self


class ProcessSettings(Config):
    """How units run as local worker processes (kind "processes")."""

    workers: int | None = None
    """Units built at once (None: one per CPU core). Each unit pins its own torch threads (1 in the fallback profiles)."""
    folder: str = "build/units"
    """Where each unit's log and the run's state file go (relative to the project root)."""
    poll_s: float = 0.5
    """Seconds between two looks at the workers."""

    @model_validator(mode="after")
    def _check(self) -> ProcessSettings:
        if (self.workers is not None and self.workers < 1) or self.poll_s <= 0:
            raise ValueError("workers >= 1 (or null: one per core) and poll_s > 0 required")
        return self


class ExecutorSettings(Config):
    """A profile's ``executor:`` section."""

    kind: Literal["local", "processes", "slurm"] = "local"
    """"local": every notebook builds what it needs in its own kernel; "processes" and "slurm": the run builds its
    missing units first, in worker processes here or as Slurm jobs."""
    slurm: SlurmSettings = SlurmSettings()
    """Submission settings, for kind "slurm"."""
    processes: ProcessSettings = ProcessSettings()
    """Worker settings, for kind "processes"."""
    resources: dict[str, Resources] = {}
    """Resources per resource class (default, tokenizer, organism, sae-train, sae-eval, sycophancy)."""

    @property
    def folder(self) -> str:
        """Where the runs of this kind keep their logs and state files (relative to the project root)."""
        return self.processes.folder if self.kind == "processes" else self.slurm.folder

    @property
    def poll_s(self) -> float:
        """Seconds between two looks at the running units."""
        return self.processes.poll_s if self.kind == "processes" else self.slurm.poll_s

    @property
    def slots(self) -> int:
        """How many units run at once (the parallelism ``--dry-run`` plans with)."""
        if self.kind == "processes":
            import os

            return self.processes.workers or os.cpu_count() or 1
        return self.slurm.array_parallelism if self.kind == "slurm" else 1

    @model_validator(mode="after")
    def _check(self) -> ExecutorSettings:
        unknown = sorted(set(self.resources) - set(RESOURCE_CLASSES))
        if unknown:
            raise ValueError(f"unknown resource class(es) {unknown}; the classes are {list(RESOURCE_CLASSES)}")
        return self

    def resources_for(self, resource_class: str) -> Resources:
        """The resources of one class: its own settings over the "default" class's over the built-in defaults."""
        base = self.resources.get("default", Resources())
        own = self.resources.get(resource_class)
        if own is None:
            return base
        return base.model_copy(update={f: getattr(own, f) for f in own.model_fields_set})


def resolve_executor(profile_settings: ExecutorSettings, choice: str | None = None) -> ExecutorSettings:
    """The executor a run uses: the profile's section, with ``choice`` applied (None: as the profile says;
    "local"/"slurm": that kind; a path to a YAML file: its executor section deep-merged over the profile's)."""
    if not choice:
        return profile_settings
    if choice in KINDS:
        return profile_settings.model_copy(update={"kind": choice})
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ExecutorError(f"--executor {choice!r}: neither an executor kind ({', '.join(KINDS)}) nor a YAML file")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ExecutorError(f"{path}: not valid YAML: {e}") from None
    if isinstance(raw, dict) and set(raw) == {"executor"}:  # a profile-style file
        raw = raw["executor"]
    if not isinstance(raw, dict):
        raise ExecutorError(f"{path}: an executor section is a mapping (kind, slurm, resources)")
    try:
        return ExecutorSettings.model_validate(deep_merge(profile_settings.model_dump(exclude_unset=True), raw))
    except ValidationError as e:
        raise ExecutorError(f"{path}: {format_validation_error(e, 'executor')}") from None


# ------------------------------------------------------------------------------------------------ engines
@dataclasses.dataclass
class Job:
    """One submitted unit."""

    unit_id: str
    """The unit it runs (:attr:`companion.backbone.units.Unit.id`)."""
    job_id: str
    """The engine's id for it (Slurm: ``<job>`` or ``<array>_<task>``)."""
    log: Path | None
    """Its log file (stderr, where tracebacks and progress bars go)."""
    handle: Any = None
    """The engine's own job object."""


TERMINAL_OK = "COMPLETED"
QUEUED_STATES = frozenset(
    {
        "PENDING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "SUSPENDED",
        "RESV_DEL_HOLD",
        "SUBMITTED",
        "UNKNOWN",
        "CONFIGURING",
    }
)
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"})
"""Engine states that are not over yet; every other state but COMPLETED is a failure (FAILED, CANCELLED, TIMEOUT,
NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE)."""


def phase(state: str) -> Literal["queued", "running", "done", "failed"]:
    """An engine state (Slurm's names) as one of the four phases the progress display counts."""
    state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0"
    if state in QUEUED_STATES:
        return "queued"
    if state in RUNNING_STATES:
        return "running"
    return "done" if state == TERMINAL_OK else "failed"


class Executor(Protocol):
    """An engine that runs units as jobs (the interface another engine would implement)."""

    def submit(self, units: Sequence[Any]) -> list[Job]:
        """Submit units that may run now (one job each; an engine may group them, e.g. as a job array)."""

    def poll(self, jobs: Sequence[Job]) -> dict[str, str]:
        """The current state of each job, by job id (Slurm's state names)."""

    def cancel(self, jobs: Sequence[Job]) -> None:
        """Stop jobs that have not finished."""

    def failure(self, job: Job, state: str) -> str:
        """What went wrong with a finished job that did not succeed: the remote traceback, or the log's tail."""

    def close(self) -> None:
        """Release what the engine holds once the run's units are settled (a pool of workers; nothing for Slurm)."""


def settings_summary(settings: ExecutorSettings, classes: Sequence[str] = ()) -> list[str]:
    """Lines saying what the executor will ask for (for ``--dry-run`` and ``companion units``)."""
    if settings.kind == "local":
        return ["executor local: each notebook builds what it needs in its own kernel, one after another"]
    if settings.kind == "processes":
        return [f"executor processes: {settings.slots} worker process(es) here; logs under {settings.folder}/"]
    s = settings.slurm
    where = (
        ", ".join(
            f"{k} {v}"
            for k, v in (
                ("partition", s.partition),
                ("account", s.account),
                ("qos", s.qos),
                ("constraint", s.constraint),
            )
            if v
        )
        or "the cluster's defaults"
    )
    lines = [f"executor slurm: {where}; up to {s.array_parallelism} array tasks at once; logs under {s.folder}/"]
    for c in dict.fromkeys(classes):
        r = settings.resources_for(c)
        lines.append(f"  {c}: {r.gpus_per_node} GPU, {r.cpus_per_task} CPU, {r.mem_gb:g} GB, {r.timeout_min} min")
    return lines


def check_kind(settings: ExecutorSettings) -> None:
    """Fail early, in one line, when the executor cannot work here (Slurm's commands or submitit are missing)."""
    if settings.kind != "slurm":
        return
    import shutil

    missing = [c for c in ("sbatch", "sacct", "scancel") if shutil.which(c) is None]
    if missing:
        raise ExecutorError(
            f"executor slurm: {', '.join(missing)} not found on PATH; run on a Slurm login node "
            "(or use --executor local)"
        )
    try:
        import submitit  # noqa: F401  (only: is it installed?)
    except ImportError:
        raise ExecutorError("executor slurm needs the submitit package: run `make setup`") from None


def classes_of(units: Sequence[Any]) -> list[str]:
    """The resource classes of ``units``, in order of first appearance."""
    return list(dict.fromkeys(u.resources for u in units))


def own_frames(traceback: str) -> str:
    """A unit's traceback without the frames of the engines' plumbing (submitit, the job wrapper, the worker pool):
    they are the same every time."""
    lines = traceback.rstrip().splitlines()
    plumbing = ("/submitit/", "/companion/backbone/jobs.py", "/companion/backbone/processes.py", "/concurrent/futures/")
    out, skip = [], False
    for line in lines:
        if line.startswith('  File "'):
            skip = any(p in line for p in plumbing)
        elif not line.startswith("  "):
            skip = False
        if not skip:
            out.append(line)
    return "\n".join(out)


def log_tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, progress-bar carriage returns resolved ("" when there is none)."""
    if path is None or not Path(path).is_file():
        return f"(no log at {path})"
    text = Path(path).read_text(errors="replace").replace("\r\n", "\n")
    shown = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(f"  | {line}" for line in shown[-lines:])
