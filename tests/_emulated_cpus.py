"""The runs of ``tests/_cpu_worker.py`` on this CPU and on emulated Intel and AMD CPUs, started early.

Under qemu a worker spends ~40 s of CPU, mostly importing torch and transformers instruction by instruction.
``make test-system`` runs serially and mostly keeps one of its two cores busy, so ``conftest.py`` starts the three workers as soon as
collection has selected a test that needs them, at low priority (``nice``), and
``tests/models/test_reproducible_numerics.py`` collects their reports when it is reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).with_name("_cpu_worker.py")
CPUS = {"native": [], "Haswell": ["-cpu", "Haswell"], "EPYC": ["-cpu", "EPYC"]}
"""Where the worker runs: this CPU, and emulated Intel and AMD CPUs with AVX2 (``qemu-x86_64 -cpu MODEL``)."""
FIXTURE = "emulated_runs"
"""The fixture of the tests that need these runs (conftest starts them when it sees it)."""
PINNED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "COMPANION_NATIVE_NUMERICS")
"""Left out of the workers' environment: they pin (or not) by themselves."""


def unavailable() -> str | None:
    """Why the emulated runs cannot happen here (one line), or None."""
    if platform.machine() != "x86_64":
        return f"not an x86-64 machine ({platform.machine()}): no emulated x86-64 CPUs to compare with"
    if shutil.which("qemu-x86_64") is None:
        return "qemu-x86_64 not found (apt-get install qemu-user): not training on emulated Intel and AMD CPUs"
    return None


class Runs:
    """The three worker processes, their output files and their reports."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="companion-cpus-"))
        env = {k: v for k, v in os.environ.items() if k not in PINNED}
        qemu = shutil.which("qemu-x86_64")
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        self.procs: dict[str, subprocess.Popen] = {}
        for cpu, args in CPUS.items():
            one = nice + ([qemu, *args] if args else []) + [sys.executable, str(WORKER), str(self.dir / cpu)]
            # the two variants one after the other on each CPU, so that three processes share the cores
            cmd = ["sh", "-c", " && ".join(shlex.join([*one, v]) for v in ("pinned", "control"))]
            with open(self.dir / f"{cpu}.out", "w") as out, open(self.dir / f"{cpu}.err", "w") as err:
                # A session of its own, so that stop() can end the shell and the worker it started (killing the
                # shell alone left the emulated worker running on after the tests).
                self.procs[cpu] = subprocess.Popen(
                    cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
                )

    def reports(self, timeout: float = 900) -> dict[str, dict[str, dict]]:
        """{cpu: {"pinned" | "control": report}}, waiting for the workers; a failed worker is an AssertionError."""
        out: dict[str, dict[str, dict]] = {}
        for cpu, p in self.procs.items():
            p.wait(timeout=timeout)
            err = (self.dir / f"{cpu}.err").read_text()
            assert p.returncode == 0, f"{cpu}: the worker failed (exit {p.returncode}):\n{err[-3000:]}"
            lines = (self.dir / f"{cpu}.out").read_text().splitlines()
            out[cpu] = {r.pop("variant"): r for r in (json.loads(x) for x in lines if x.startswith("{"))}
        return out

    def stop(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_RUNS: Runs | None = None


def start() -> Runs | None:
    """Start the runs once per test session (None where they cannot happen)."""
    global _RUNS
    if _RUNS is None and unavailable() is None:
        _RUNS = Runs()
    return _RUNS


def stop() -> None:
    """Stop whatever still runs and remove the runs' files (end of the session)."""
    global _RUNS
    if _RUNS is not None:
        _RUNS.stop()
        _RUNS = None
