"""Test-session settings: an isolated cache under build/, offline Hugging Face, a non-interactive backend."""

import os
from pathlib import Path

import companion  # noqa: F401  first import: pins the numeric code paths before any test imports torch

ROOT = Path(__file__).resolve().parents[1]

# The organisms the tests train are kept in build/cache so repeated local runs reuse them; CI starts clean.
os.environ.setdefault("COMPANION_CACHE", str(ROOT / "build" / "cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402

from ci_run import ci_run  # noqa: E402,F401  every notebook on the ci profile, once per session
from slurm_cluster import slurm  # noqa: E402,F401  the real single-node Slurm fixture (COMPANION_SLURM_TESTS)
from xdist_groups import (  # noqa: E402,F401  xdist groups (a module fixture built once), the longest first
    pytest_collection_modifyitems,
    pytest_configure,
)


@pytest.fixture
def one_torch_thread():
    """Run a test single-threaded: on tiny tensors a second intra-op thread only adds barrier waits (very slow
    on a shared 2-core machine). Restores the previous setting."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_finish(session):
    """Start the emulated-CPU trainings early when a selected test needs them (see tests/_emulated_cpus.py).

    Not under pytest-xdist: every worker collects every test, and only the one that runs them should start them
    (their fixture does, when first used).

    First, the objects collection made (every imported library: ~650 000 of them with torch, TransformerLens and
    SAELens) go to the garbage collector's permanent generation: they live as long as the session anyway, and each
    full collection (``gc.collect()`` after releasing a model, before each benchmark step, or the collector's own
    oldest generation) would otherwise walk them all, ~0.3-0.5 s a time. Objects the tests make are collected as usual."""
    import gc

    import _emulated_cpus

    gc.collect()
    gc.freeze()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Parallel workers (make test, make test-fast) share the cores: one torch intra-op thread each, or their threads
        # spin-wait on one another.  Tests that pin threads themselves still do.
        import torch

        torch.set_num_threads(1)
        return
    if any(_emulated_cpus.FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        _emulated_cpus.start()


def pytest_sessionfinish(session, exitstatus):
    import _emulated_cpus

    _emulated_cpus.stop()
