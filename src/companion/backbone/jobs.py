"""What a job runs: one work unit (:mod:`companion.backbone.units`), in a fresh process on some node.

:func:`run_unit` imports companion first (which pins the numeric code paths, as in a notebook kernel), applies the
profile's environment and the shared cache, and calls the unit's entry, which builds the unit's cache entry and
returns its key.  Results travel through the cache, never through pickles, so an entry's key and contents are the
same whichever executor built it.  :class:`UnitJob` is the callable submitted: it implements submitit's
``checkpoint()`` protocol, so a preempted or timed-out job is requeued and its unit resumes from the checkpoints it
keeps (SAE training, :mod:`companion.sae.checkpoint`).  SIGTERM (``scancel``) stops a unit at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any


def run_unit(unit: Any, profile: str, cache_root: str, root: str | None = None) -> dict[str, Any]:
    """Build one unit's cache entry in this process (what a job runs); returns its key and the seconds it took.

    The profile's environment and the shared cache are applied first, as for a notebook kernel, then the unit's
    entry (``module:function``) is called with its arguments; it returns the key of the entry it built (or found).
    Raises when that is not the key the submitting process computed, or the entry is not in the cache.
    """
    import importlib

    import companion  # noqa: F401  first: pins the numeric code paths before the entry imports torch
    from companion.backbone.cache import default_cache
    from companion.backbone.profiles import load_profile
    from companion.backbone.quiet import quiet_libraries

    os.environ["COMPANION_CACHE"] = str(cache_root)
    os.environ["COMPANION_PROFILE"] = profile
    if root:
        os.environ["COMPANION_ROOT"] = str(root)
    load_profile(profile).apply_env()
    # A job writes to a log file: progress as a few whole lines, as in an executed notebook, not a bar redrawn with
    # carriage returns; no per-model chatter from transformers.
    quiet_libraries(text_bars=True)
    module, _, name = unit.entry.partition(":")
    fn = getattr(importlib.import_module(module), name)
    t0 = time.time()
    print(f"unit {unit.name} ({unit.kind}), profile {profile!r}, cache {cache_root}", flush=True)
    with _stop_on_sigterm():
        key = fn(**dict(unit.args))
    if unit.key is not None and key != unit.key:
        raise RuntimeError(
            f"unit {unit.name} built {unit.kind} entry {key}, not the expected {unit.key}: the code "
            "or the environment of the job differs from the submitting process's"
        )
    if not (isinstance(key, str) and default_cache().has(unit.kind, key)):
        raise RuntimeError(f"unit {unit.name} finished but its {unit.kind} entry {key} is not in {cache_root}")
    print(f"unit {unit.name}: {unit.kind} entry {key} ready in {time.time() - t0:.1f} s", flush=True)
    return {"unit": unit.id, "key": key, "seconds": round(time.time() - t0, 2)}


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Stop at once on SIGTERM (``scancel``, a preemption, the end of the time limit), like Ctrl-C in a notebook: the
    entry being built is removed and its lock released; an SAE sweep resumes from its last checkpoint next time.
    (submitit ignores SIGTERM, waiting for its own USR2; the job would otherwise work on until Slurm kills it.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name} (scancel, preemption or the time limit)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class UnitJob:
    """The callable a job runs: :func:`run_unit` on one unit.  submitit calls :meth:`checkpoint` when the job is
    preempted or reaches its time limit, and requeues what it returns: this same call, since a unit keeps its own
    checkpoints in the cache and resumes from them."""

    def __init__(self, unit: Any, profile: str, cache_root: str, root: str | None = None):
        self.unit, self.profile, self.cache_root, self.root = unit, profile, cache_root, root

    def __call__(self) -> dict[str, Any]:
        return run_unit(self.unit, self.profile, self.cache_root, self.root)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        print(f"unit {self.unit.name}: interrupted; requeued, it resumes from its last checkpoint", flush=True)
        return submitit.helpers.DelayedSubmission(self)
