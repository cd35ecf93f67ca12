"""Faults from outside a run (issue 19): a kernel killed as the out-of-memory killer kills, and a run killed with
SIGKILL.  Each ends in one line naming what happened, and leaves nothing in the source tree."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nbfixtures import write_smoke_notebook

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures"
pytestmark = pytest.mark.slow  # executes notebooks


@pytest.fixture
def project(tmp_path):
    write_smoke_notebook(tmp_path / "notebooks" / "00_figs.ipynb")
    return tmp_path


def _figures(project, *args, **kw):
    env = {**os.environ, "COMPANION_ROOT": str(project), "PYTHONPATH": str(FIXTURES)}
    return subprocess.Popen(
        [sys.executable, "-m", "companion.cli", "figures", "--profile", "ci", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _not_outputs(project) -> list[str]:
    """Everything in the project but its notebooks and the run's outputs (build/)."""
    return sorted(
        str(p.relative_to(project))
        for p in project.rglob("*")
        if not p.is_dir()
        and p.relative_to(project).parts[0] != "build"
        and p.relative_to(project) != Path("notebooks/00_figs.ipynb")
    )


def test_a_killed_run_leaves_no_sockets_in_the_tree_and_a_killed_kernel_is_one_line_naming_cell_and_cause(project):
    # 1. The run itself is killed with SIGKILL while its kernel computes.
    proc = _figures(project, "-p", "save_delay=30", start_new_session=True)
    runtime = Path(tempfile.gettempdir()) / f"companion-kernels-{proc.pid}"
    deadline = time.monotonic() + 120
    while not any(p.is_socket() for p in runtime.glob("*")):  # the kernel is up
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    try:
        assert _not_outputs(project) == []  # before: notebooks/kernel-ipc-1 ... -5, never removed
        assert any(p.is_socket() for p in runtime.glob("*"))  # the debris is where the next run finds it

        # 2. The next run's kernel is killed as the out-of-memory killer kills (SIGKILL, from its own cell here).
        again = _figures(project, "-p", "kill_kernel=true")
        out, err = again.communicate(timeout=300)
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the first run's kernel, if it outlived its runner
    assert again.returncode == 1, err
    assert "Traceback" not in err and "DeadKernelError" not in err
    assert err.splitlines() == [err.strip()], err  # one line
    assert err.startswith(
        "error: 00_figs.ipynb: the kernel died in cell 4 (\"if getattr(P, 'fail', False):\"), "
        "killed by SIGKILL; most likely the machine ran out of memory"
    ), err
    assert (project / "build" / "executed" / "ci" / "00_figs.failed.ipynb").is_file()
    assert not runtime.exists() and _not_outputs(project) == []  # the killed run's sockets were swept
