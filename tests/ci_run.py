"""The ``ci_run`` session fixture: every notebook on the ``ci`` profile, run once per test session through the
runner ``make figures`` uses, shared by the notebook tests and the Slurm tests that compare against it.

The executed copies and figures go to a temporary folder, so the run always executes (it never trusts a stamp of
an earlier session); the organisms come from the test cache (build/cache), trained on first use.  The kernels get the
inline backend, as under ``make figures``.  Under pytest-xdist each worker that needs it runs it: the tests that do
are grouped on one worker (``xdist_group("ci_run")``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def figures_in(figs: Path) -> Iterator[None]:
    """Figures of runs inside go to ``figs`` (the runner reads $COMPANION_FIGURES_DIR), with the inline backend
    (the tests' Agg would hide the executed copies' images)."""
    saved = {k: os.environ.get(k) for k in ("COMPANION_FIGURES_DIR", "MPLBACKEND")}
    os.environ["COMPANION_FIGURES_DIR"] = str(figs)
    os.environ.pop("MPLBACKEND", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclasses.dataclass
class CiRun:
    """The session's ci run."""

    results: list[Any]
    """What happened to each notebook."""
    out: Path
    """Its folder: ``executed/`` (copies and stamps) and ``figures/``."""
    figs: Path
    """Where its figures went."""
    seconds: float
    """Its wall time."""
    git_before: dict[str, Any]
    """The git state read just before it."""

    def again(self, **kw: Any) -> list[Any]:
        """Run the runner again on the same folders (everything should be up to date)."""
        from companion.backbone import runner

        with figures_in(self.figs):
            return runner.run_notebooks("ci", root=ROOT, build_dir=self.out / "executed", **kw)


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory) -> CiRun:
    from companion.backbone import runner
    from companion.backbone.gitstate import read_git_state

    out = tmp_path_factory.mktemp("ci-run")
    figs = out / "figures"
    git_before = read_git_state(ROOT)
    t0 = time.time()
    with figures_in(figs):
        results = runner.run_notebooks("ci", root=ROOT, build_dir=out / "executed")
    return CiRun(results, out, figs, time.time() - t0, git_before)
