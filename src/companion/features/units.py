"""Notebook 05 as work units (:mod:`companion.backbone.units`): notebook 01's sweeps (the very units notebook 01
derives, so each is built once) and, per reseed target and ``reseed_sae_seeds`` seed, the reseed sweep — notebook
01's sweep cut to the chosen SAE of each architecture (:func:`companion.features.experiment.reseed_params`) — trained
and evaluated as units of its own.  Scoring the SAEs stays in the notebook: it reads every sweep at once.
"""

from __future__ import annotations

import dataclasses

from companion.backbone.units import Unit
from companion.features.params import FeatureParams
from companion.sae import units as sae_units


def units(params: FeatureParams, profile: str) -> list[Unit]:
    """The sweeps' units, then each reseed sweep's (named "... (reseed sae_seed=S)")."""
    from companion.features.experiment import reseed_params

    out = sae_units.units(params, profile)
    for target in params.reseed_targets or params.targets:
        for s in params.reseed_sae_seeds:
            rp = reseed_params(params, s).replace(targets=[target])
            out += [
                u
                if u.kind in ("tokenizer", "organism")
                else dataclasses.replace(u, name=f"{u.name} (reseed sae_seed={s})")
                for u in sae_units.units(rp, profile)
            ]
    return out
