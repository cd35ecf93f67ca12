"""Running the rehearsal: the loopback Hub populated with the paper profile's stand-ins, an environment that points
the real clients at it (and nowhere else), and the network guard's log."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.rehearsal import netguard
from tests.rehearsal.hub import LoopbackHub
from tests.rehearsal.world import ACCEPTED_TOKEN, PaperIds, populate

GUARD_DIR = Path(__file__).resolve().parent / "guard"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def rehearsal_environment(
    tmp: Path, *, token: str | None = ACCEPTED_TOKEN
) -> Iterator[tuple[LoopbackHub, PaperIds, Path]]:
    """A running, populated loopback Hub and the environment of a rehearsal run (restored afterwards).

    Sets ``COMPANION_REHEARSAL_HUB`` (the rehearsal profile's endpoint), ``HF_TOKEN`` (the gated control), a fresh
    ``HF_HOME`` (so everything is downloaded), and the network guard for this process and every kernel
    (``PYTHONPATH`` -> ``tests/rehearsal/guard/sitecustomize.py``); clears the offline switches the test session
    sets.  Yields the hub, the ids it serves and the guard's log file.
    """
    hub = LoopbackHub().start()
    saved = dict(os.environ)
    guard_log = tmp / "netguard.log"
    try:
        ids = populate(hub)
        for v in OFFLINE_VARIABLES:
            os.environ.pop(v, None)
        os.environ.update(
            {
                "COMPANION_REHEARSAL_HUB": hub.endpoint,
                "HF_HOME": str(tmp / "hf-home"),
                netguard.LOG_ENV: str(guard_log),
                "PYTHONPATH": os.pathsep.join(p for p in (str(GUARD_DIR), saved.get("PYTHONPATH")) if p),
            }
        )
        if token is not None:
            os.environ["HF_TOKEN"] = token
        else:
            os.environ.pop("HF_TOKEN", None)
        netguard.install()
        yield hub, ids, guard_log
    finally:
        hub.stop()
        os.environ.clear()
        os.environ.update(saved)
