"""Training organisms side by side: a process pool that trains the distinct specs of a run two at a time.

Each organism trains single-threaded (``train.threads``), so on a 2-core machine two train at full speed with the
same weights as a sequential run; the parent shows one progress bar per model. Workers stop within one logging
interval when the process that started them dies (a killed kernel), leaving no partial cache entry
(:class:`ParentGone`). What one organism is and how it is trained and cached: :mod:`companion.organism.build`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from companion.backbone.cache import default_cache
from companion.backbone.profiles import load_profile
from companion.organism.build import (
    OrganismSpec,
    build_organism,
    organism_cache_spec,
    organism_label,
    organism_names,
    organism_seeds,
    organism_spec,
)

_PROGRESS_QUEUE: Any = None
_PARENT_PID: int | None = None


class ParentGone(BaseException):
    """Raised inside a training worker whose parent process has died: training stops, nothing is cached.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it; the cache removes the partial
    entry on its way out (:meth:`companion.backbone.cache.Cache.get_or_build`).
    """


def _init_worker(queue: Any, parent_pid: int) -> None:
    global _PROGRESS_QUEUE, _PARENT_PID
    _PROGRESS_QUEUE = queue
    _PARENT_PID = parent_pid
    # The parent shows progress (one bar per model); the worker's own library bars would only be noise on stderr.
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()


def _check_parent() -> None:
    # An orphan is re-parented (to init or a subreaper), so its parent pid changes when the parent dies.
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        raise ParentGone(f"the process that started this training worker ({_PARENT_PID}) has exited")


def _train_in_worker(spec_dict: dict[str, Any], label: str) -> str:
    """Process-pool entry point: train one organism, reporting progress through the pool's queue.

    Every progress report first checks that the parent is alive: when the process that called
    :func:`prepare_organisms` dies (a killed kernel), its workers stop within one logging interval instead of
    training to the end.
    """
    spec = OrganismSpec.model_validate(spec_dict)
    q = _PROGRESS_QUEUE

    def cb(step: int, loss: float, tok_s: float) -> None:
        _check_parent()
        q.put((label, step, loss, tok_s))

    try:
        _check_parent()
        path, _ = build_organism(spec, desc=label, progress=False, callback=cb)
    except ParentGone:
        os._exit(3)  # nobody is listening: leave without touching the pool's queues
    q.put((label, None, None, None))
    return str(path)


def train_specs(
    specs: Mapping[str, OrganismSpec], *, jobs: int | None = None, progress: bool = True
) -> dict[str, Path]:
    """Train (or find in the cache) each labelled spec; returns label -> cache entry.

    Distinct specs that are not cached yet are trained ``jobs`` at a time in separate processes (default: one
    per CPU core, at most 2), longest first. Each trains single-threaded (``train.threads``), so on a 2-core
    machine two small models train side by side at full speed and the weights are the same as a sequential run.
    One progress bar per model shows its loss and tokens/s. Workers stop when this process dies.
    """
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor

    cache = default_cache()
    todo: dict[str, tuple[str, OrganismSpec]] = {}  # cache key -> (label, spec); the first label wins
    for label, sp in specs.items():
        cspec = organism_cache_spec(sp)
        key = cache.key("organism", cspec)
        if not cache.exists("organism", cspec) and key not in todo:
            todo[key] = (label, sp)
    if jobs is None:
        jobs = max(1, min(2, os.cpu_count() or 1))

    # Longest first (cost ~ steps x tokens x width^2): the shortest makespan for a greedy pool.
    def cost(sp: OrganismSpec) -> float:
        return sp.train.steps * sp.train.batch_size * sp.train.seq_len * sp.model.n_layer * sp.model.d_model**2

    order = sorted(todo.values(), key=lambda ls: -cost(ls[1]))
    if len(order) > 1 and jobs > 1:
        from tqdm.auto import tqdm

        ctx = mp.get_context("spawn")  # fork is unsafe with torch's thread pools
        queue = ctx.Queue()
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(queue, os.getpid())
        ) as pool:
            futures = [pool.submit(_train_in_worker, sp.to_dict(), label) for label, sp in order]
            bars = {
                label: tqdm(total=sp.train.steps, desc=label, position=i, disable=not progress, leave=True)
                for i, (label, sp) in enumerate(order)
            }
            try:
                while not all(f.done() for f in futures) or not queue.empty():
                    try:
                        label, step, loss, tok_s = queue.get(timeout=0.5)
                    except queue_mod.Empty:
                        continue
                    bar = bars[label]
                    if step is None:
                        bar.n = bar.total
                    else:
                        bar.n = step
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                    bar.refresh()
                for f in futures:
                    f.result()  # re-raise a worker's error here
            finally:
                for bar in bars.values():
                    bar.close()
    else:
        for label, sp in order:
            build_organism(sp, desc=label, progress=progress)
    return {label: build_organism(sp, progress=False)[0] for label, sp in specs.items()}


def prepare_organisms(
    names: Sequence[str] | None = None,
    profile: str | None = None,
    *,
    seeds: Sequence[int] | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[tuple[str, int], Path]:
    """Make sure the named organisms of ``profile`` (default: all) are trained at every seed; (name, seed) -> entry.

    ``seeds`` defaults to all of the profile's seeds (``organisms.settings.seeds``). Training runs through
    :func:`train_specs`: names sharing one spec at a seed are trained once, two models at a time.
    """
    prof = load_profile(profile).name
    names = list(names) if names is not None else organism_names(prof)
    seeds = list(seeds) if seeds is not None else list(organism_seeds(prof))
    specs = {(n, s): organism_spec(n, prof, s) for s in seeds for n in names}
    paths = train_specs(
        {f"{prof}/{organism_label(n, s)}": sp for (n, s), sp in specs.items()}, jobs=jobs, progress=progress
    )
    return {(n, s): paths[f"{prof}/{organism_label(n, s)}"] for (n, s) in specs}
