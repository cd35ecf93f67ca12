"""Work units: the cache entries a run's notebooks will need, derived from their validated parameters before any
notebook runs, so that they can be built elsewhere (as Slurm jobs) and in parallel.

A :class:`Unit` builds one cache entry (an organism at one seed, one site's SAE sweep, its evaluation, one model's
sycophancy scores) by calling ``entry`` (``"module:function"``) with JSON-able ``args``; ``needs`` names the units
whose entries it reads.  Each result package derives its units cheaply — no model is loaded, nothing is built — in
``<package>.units.units(params, profile)``, found by convention from a notebook's parameter class
(``companion.sae.params:ParetoParams`` -> ``companion.sae.units``); a package without that module has none.  A unit's
``key`` is its entry's cache key when it can be computed now (None while it depends on an entry not built yet: such
a unit is missing by definition).

:func:`plan_schedule` simulates running the missing units on ``parallelism`` slots, longest remaining path first
along their dependencies (the critical path), from each unit's estimated seconds: the wall time ``--dry-run``
reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import importlib
import importlib.util
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Unit:
    """One piece of work a notebook needs: it builds one cache entry, on its own, from JSON-able arguments."""

    name: str
    """What a person calls it: "organism backdoor#0", "sae-train organism:backdoor@blocks.1.hook_mlp_out"."""
    kind: str
    """The cache kind of the entry it builds ("tokenizer", "organism", "sae", "sae-eval", "sycophancy-scores")."""
    key: str | None
    """That entry's cache key, or None while it depends on an entry that is not built yet."""
    entry: str
    """``"module:function"`` called with ``args`` to build the entry; it returns the entry's key."""
    args: Mapping[str, Any]
    """Keyword arguments of ``entry``: plain JSON data (they travel to the job)."""
    needs: tuple[str, ...] = ()
    """Ids of the units whose entries this one reads."""
    resources: str = "default"
    """Resource class (the profile's ``executor.resources``): what its job asks for."""
    estimate_s: float = 0.0
    """Rough seconds it takes on the resources of its class (the throughput :mod:`companion.models.needs` assumes)."""

    @property
    def id(self) -> str:
        """Stable identity of the work: its kind and a hash of its entry and arguments (names sharing one spec
        share one unit)."""
        text = json.dumps({"entry": self.entry, "args": self.args}, sort_keys=True, default=str)
        return f"{self.kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def unit_provider(params_cls_path: str) -> Callable[..., list[Unit]] | None:
    """``<package>.units:units`` for a parameter class ``<package>.<module>:<Class>``; None when there is none."""
    module = params_cls_path.partition(":")[0]
    package = module.rpartition(".")[0]
    if not package:
        return None
    name = f"{package}.units"
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return getattr(importlib.import_module(name), "units", None)


def units_for(notebooks: Iterable[tuple[str, Any]], profile: str) -> dict[str, list[Unit]]:
    """Notebook name -> the units it needs, each list closed under ``needs`` (a unit's dependencies come first).

    ``notebooks`` gives (notebook name, validated parameters) pairs.
    """
    out = {}
    for nb, params in notebooks:
        provider = unit_provider(f"{type(params).__module__}:{type(params).__name__}")
        out[nb] = _ordered(provider(params, profile)) if provider else []
    return out


def _ordered(units: Sequence[Unit]) -> list[Unit]:
    """Deduplicated by id, dependencies before dependants (the providers list them so; checked here)."""
    seen: dict[str, Unit] = {}
    for u in units:
        missing = [n for n in u.needs if n not in seen]
        if missing:
            raise ValueError(f"unit {u.name} needs {missing}, which are not listed before it")
        seen.setdefault(u.id, u)
    return list(seen.values())


def merge(per_notebook: Mapping[str, Sequence[Unit]]) -> list[Unit]:
    """Every unit of every notebook once, in dependency order."""
    out: dict[str, Unit] = {}
    for units in per_notebook.values():
        for u in units:
            out.setdefault(u.id, u)
    return list(out.values())


def is_built(unit: Unit, cache: Any = None) -> bool:
    """Whether the unit's entry is already in the cache (a unit whose key is not known yet is not)."""
    if unit.key is None:
        return False
    if cache is None:
        from companion.backbone.cache import default_cache

        cache = default_cache()
    return cache.has(unit.kind, unit.key)


def missing(units: Sequence[Unit], cache: Any = None) -> list[Unit]:
    """The units whose entries are not in the cache, in dependency order."""
    return [u for u in units if not is_built(u, cache)]


# ------------------------------------------------------------------------------------------------ scheduling
@dataclasses.dataclass(frozen=True)
class Schedule:
    """What running units on a number of slots is expected to take."""

    wall_s: float
    """Expected wall time (the simulated makespan)."""
    serial_s: float
    """The sum of every unit's estimate: the wall time on one slot."""
    critical_path_s: float
    """The longest chain of dependent units: no parallelism beats it."""
    critical_path: tuple[str, ...]
    """The names of the units on that chain, first to last."""
    parallelism: int
    """Slots the simulation used."""
    start_s: dict[str, float]
    """Unit id -> when it starts in the simulation."""


def plan_schedule(units: Sequence[Unit], parallelism: int) -> Schedule:
    """Simulate ``units`` (dependency-ordered; needs outside the list are taken as built) on ``parallelism`` slots:
    whenever a slot is free, the ready unit with the longest remaining path to the end starts."""
    if parallelism < 1:
        raise ValueError("parallelism must be >= 1")
    by_id = {u.id: u for u in units}
    needs = {u.id: [n for n in u.needs if n in by_id] for u in units}
    users: dict[str, list[str]] = {u.id: [] for u in units}
    for uid, ns in needs.items():
        for n in ns:
            users[n].append(uid)
    tail: dict[str, float] = {}  # longest path from the start of a unit to the end of everything after it
    after: dict[str, str | None] = {}
    for u in reversed(list(units)):
        nxt = max(users[u.id], key=lambda v: tail[v], default=None)
        tail[u.id] = u.estimate_s + (tail[nxt] if nxt else 0.0)
        after[u.id] = nxt
    first = max(tail, key=tail.__getitem__, default=None)
    chain, cur = [], first
    while cur is not None:
        chain.append(by_id[cur].name)
        cur = after[cur]
    waiting = {uid: len(ns) for uid, ns in needs.items()}
    ready = [(-tail[uid], i, uid) for i, uid in enumerate(by_id) if waiting[uid] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    start: dict[str, float] = {}
    now, end = 0.0, 0.0
    while ready or running:
        while ready and len(running) < parallelism:
            _, _, uid = heapq.heappop(ready)
            start[uid] = now
            heapq.heappush(running, (now + by_id[uid].estimate_s, uid))
        now, done = heapq.heappop(running)
        end = max(end, now)
        for v in users[done]:
            waiting[v] -= 1
            if waiting[v] == 0:
                heapq.heappush(ready, (-tail[v], len(start) + len(ready), v))
    return Schedule(
        wall_s=end,
        serial_s=sum(u.estimate_s for u in units),
        critical_path_s=tail[first] if first else 0.0,
        critical_path=tuple(chain),
        parallelism=parallelism,
        start_s=start,
    )


def duration(seconds: float) -> str:
    """``3725`` -> "1 h 02 min"; ``95`` -> "1.6 min"; ``12`` -> "12 s"."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def unit_table(
    units: Sequence[Unit], states: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> list[str]:
    """One line per unit: its state (``states`` by id, else built/missing from the cache), estimate, name and key."""
    lines = []
    width = max((len(u.name) for u in units), default=0)
    for u in units:
        state = (states or {}).get(u.id) or ("built" if is_built(u) else "missing")
        more = (extra or {}).get(u.id, "")
        lines.append(
            f"  {state:9s} {duration(u.estimate_s):>10s}  {u.name:{width}s}  {u.kind}"
            f"{'/' + u.key[:12] if u.key else ''}{'  ' + more if more else ''}"
        )
    return lines
