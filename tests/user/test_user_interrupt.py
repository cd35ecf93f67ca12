"""Interrupting `companion figures` in the middle of `save_figure` (Ctrl-C, or a SIGTERM from `kill`).

A real run of the command on a smoke notebook whose figure takes seconds to render is interrupted while the image
is being written.  Afterwards: no temporary file anywhere, the figure on disk is still the previous run's complete
set (PNG, PDF and sidecar from one run), the partial notebook is kept as `.failed.ipynb`, and the next run redoes
exactly that notebook and completes the figure.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.backbone.atomic import is_temporary
from companion.backbone.figures import figure_is_complete
from nbfixtures import write_smoke_notebook

FIXTURES = Path(__file__).parents[1] / "fixtures"
pytestmark = pytest.mark.slow  # runs notebooks


@pytest.fixture
def project(tmp_path):
    write_smoke_notebook(tmp_path / "notebooks" / "00_figs.ipynb", save_fig=True, pyplot=True)
    write_smoke_notebook(tmp_path / "notebooks" / "01_plain.ipynb", save_fig=False)
    return tmp_path


def _figures(project, *args, background=False):
    env = {**os.environ, "COMPANION_ROOT": str(project), "PYTHONPATH": str(FIXTURES)}
    cmd = [sys.executable, "-m", "companion.cli", "figures", "--profile", "ci", *args]
    if background:  # its own process group, as a shell job is: the signal reaches the command, not pytest
        # SIGINT back to its default: a pytest-xdist worker ignores it, and a child would inherit that, where a
        # shell job never does.
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return subprocess.run(cmd, env=env, cwd=project, capture_output=True, text=True)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.is_dir() else {}


def _debris(project) -> list[str]:
    return [str(p) for p in project.rglob("*") if is_temporary(p) or p.name.endswith(".running.ipynb")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_an_interrupted_save_leaves_no_debris_and_the_next_run_completes_it(project, sig):
    figs, executed = project / "build" / "figures" / "ci", project / "build" / "executed" / "ci"
    first = _figures(project, "-p", "slope=3")
    assert first.returncode == 0, first.stderr
    before = _files(figs)
    assert set(before) == {"00_line.png", "00_line.pdf", "00_line.json"}

    # A figure that takes a minute to render (so 00 must run again): interrupt it mid-write.
    proc = _figures(project, "-p", "slope=3", "-p", "save_delay=30", background=True)
    deadline = time.monotonic() + 120
    while not any(is_temporary(p) for p in figs.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "save_figure never started"
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, sig)  # what Ctrl-C in a terminal (SIGINT to the job) or `kill -- -PGID` does
    out, err = proc.communicate(timeout=180)  # a notebook run on a loaded 2-core machine
    assert proc.returncode == 128 + sig, (out, err)
    assert "interrupted" in err and "Traceback" not in err, err
    assert "00_figs.ipynb: interrupted" in out

    assert _debris(project) == []
    assert _files(figs) == before and figure_is_complete(figs / "00_line.json")  # the previous set, whole
    assert (executed / "00_figs.failed.ipynb").is_file() and not (executed / "00_figs.stamp.json").exists()
    partial = json.loads((executed / "00_figs.failed.ipynb").read_text())
    assert partial["metadata"]["papermill"]["parameters"]["overrides"]["save_delay"] == 30.0

    if sig != signal.SIGINT:  # the clean-up is the same code for both signals; the re-run is checked once
        return
    again = _figures(project, "-p", "slope=3")
    assert again.returncode == 0, again.stderr
    assert "00_figs.ipynb: running (its last run did not finish)" in again.stdout
    assert "01_plain.ipynb: up to date, skipped" in again.stdout  # only the incomplete notebook re-ran
    side = json.loads((figs / "00_line.json").read_text())
    assert side["run"] != json.loads(before["00_line.json"])["run"] and figure_is_complete(figs / "00_line.json")
    assert not (executed / "00_figs.failed.ipynb").exists() and _debris(project) == []


def test_ctrl_c_stops_notebooks_running_at_the_same_time_and_keeps_both_partial_copies(project):
    figs, executed = project / "build" / "figures" / "ci", project / "build" / "executed" / "ci"
    write_smoke_notebook(project / "notebooks" / "02_figs.ipynb", save_fig=True)
    proc = _figures(project, "--executor", "processes", "-p", "save_delay=30", background=True)
    deadline = time.monotonic() + 120
    while sum(is_temporary(p) for p in figs.iterdir()) < 2 if figs.is_dir() else True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the two notebooks never were in save_figure at once"
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGINT, (out, err)
    assert "Traceback" not in err, err
    assert "00_figs.ipynb: interrupted" in out and "02_figs.ipynb: interrupted" in out, out
    assert _debris(project) == []
    for name in ("00_figs", "02_figs"):
        assert (executed / f"{name}.failed.ipynb").is_file() and not (executed / f"{name}.stamp.json").exists()
