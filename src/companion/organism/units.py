"""The organisms as work units (:mod:`companion.backbone.units`): one tokenizer unit per tokenizer recipe and one
training unit per distinct organism (names sharing one spec at a seed are one trained model, so one unit).

Notebook 00 needs its ``organisms`` at its ``seeds``; the other result packages ask :func:`organism_units` for the
organisms they read.  Keys are computed without building anything (:func:`companion.organism.build.organism_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from companion.backbone.units import Unit
from companion.organism.build import (
    OrganismSpec,
    build_organism,
    build_tokenizer,
    organism_key,
    organism_label,
    organism_seeds,
    organism_spec,
    tokenizer_key,
)
from companion.organism.tokenizer import TokenizerConfig

ORGANISM_FLOPS_PER_S = 2e10
"""Training throughput of one organism on one CPU thread (measured 15-24 GFLOP/s on the development machines)."""


def organism_seconds(spec: OrganismSpec) -> float:
    """Rough training seconds: 6·N FLOPs per token (forward and backward) at :data:`ORGANISM_FLOPS_PER_S`."""
    m, t = spec.model, spec.train
    n_params = 12 * m.n_layer * m.d_model**2 + (spec.tokenizer.vocab_size + m.n_ctx) * m.d_model
    return 6 * n_params * t.steps * t.batch_size * t.seq_len / ORGANISM_FLOPS_PER_S + 5.0


def tokenizer_unit(cfg: TokenizerConfig) -> Unit:
    """The unit that trains the tokenizer ``cfg`` describes."""
    return Unit(
        name=f"tokenizer {cfg.vocab_size} tokens",
        kind="tokenizer",
        key=tokenizer_key(cfg),
        entry="companion.organism.units:make_tokenizer",
        args={"config": cfg.to_dict()},
        resources="tokenizer",
        estimate_s=10.0 + cfg.n_docs / 1000,
    )


def organism_unit(spec: OrganismSpec, label: str) -> list[Unit]:
    """The units that train one organism: its tokenizer's, then its own (``label`` names it in progress lines; the
    unit's identity is the spec alone, so every name of one trained model is one unit)."""
    tok = tokenizer_unit(spec.tokenizer)
    return [
        tok,
        Unit(
            name=f"organism {label}",
            kind="organism",
            key=organism_key(spec),
            entry="companion.organism.units:train_organism",
            args={"spec": spec.to_dict()},
            needs=(tok.id,),
            resources="organism",
            estimate_s=organism_seconds(spec),
        ),
    ]


def organism_units(names: Sequence[str], profile: str, seeds: Sequence[int] = ()) -> list[Unit]:
    """The units that train ``names`` of ``profile`` at ``seeds`` (default: the profile's seeds); each trained
    model once, under the first label that asked for it."""
    out: dict[str, Unit] = {}
    keys: set[str] = set()
    for s in seeds or organism_seeds(profile):
        for n in names:
            spec = organism_spec(n, profile, s)
            if organism_key(spec) in keys:
                continue
            keys.add(organism_key(spec))
            for u in organism_unit(spec, f"{profile}/{organism_label(n, s)}"):
                out.setdefault(u.id, u)
    return list(out.values())


def organism_unit_id(name: str, profile: str, seed: int | None = None) -> str:
    """The id of the unit that trains organism ``name`` of ``profile`` at ``seed`` (for other units' ``needs``)."""
    return organism_unit(organism_spec(name, profile, seed), name)[-1].id


def units(params: Any, profile: str) -> list[Unit]:
    """Notebook 00's units: every organism it verifies, at every seed it verifies them."""
    return organism_units(params.organisms, profile, params.seeds)


# ------------------------------------------------------------------------------------------------ job entries
def make_tokenizer(config: dict[str, Any]) -> str:
    """Job entry: train (or find) a tokenizer; returns its cache key."""
    return build_tokenizer(TokenizerConfig.model_validate(config)).name


def train_organism(spec: dict[str, Any]) -> str:
    """Job entry: train (or find) an organism; returns its cache key."""
    sp = OrganismSpec.model_validate(spec)
    return build_organism(sp, desc=f"organism {organism_key(sp)[:10]} (seed {sp.seed})", progress=True)[0].name
