"""Notebooks 01 and 02 as work units (:mod:`companion.backbone.units`): per target, the training of its sweep
(:func:`companion.sae.experiment.site_sweep`: every λ of both architectures from one pass over the activations;
or, with ``members_per_unit``, a few SAEs per unit, :mod:`companion.sae.parts`) and then its evaluation
(:func:`companion.sae.evaluation.evaluate_site`, which assembles the parts); an organism target first needs its
organism.

Both notebooks derive the same units from the same sweep settings (notebook 02 inherits notebook 01's), so each is
built once.  Keys are computed without loading a model (:func:`companion.sae.subjects.subject_identity`).
"""

from __future__ import annotations

from typing import Any

from companion.backbone.units import Unit
from companion.sae.params import ORGANISM_PREFIX, ParetoParams, parse_target

ORGANISM_SAE_FLOPS_PER_S = 2e10
"""Throughput of SAE training and organism forward passes on one CPU thread (the offline profiles)."""


def sweep_params(params: ParetoParams) -> ParetoParams:
    """The sweep settings alone (notebook 02's parameters less its toys): what the units are derived from."""
    return ParetoParams.from_dict({f: getattr(params, f) for f in ParetoParams.model_fields})


def _costs(params: ParetoParams, subject: str, site: str, profile: str) -> tuple[float, list[float], float]:
    """Rough seconds of one target: the pass over the training activations, each member's training, and the
    evaluation (:mod:`companion.models.needs`' FLOP counts at its assumed throughput)."""
    from companion.models.loading import resolve_name
    from companion.models.needs import ASSUMED_TFLOPS, KNOWN_MODELS
    from companion.sae.experiment import sweep_specs

    if subject.startswith(ORGANISM_PREFIX):
        from companion.organism.build import organism_spec

        spec = organism_spec(subject[len(ORGANISM_PREFIX) :], profile)
        n: float = 12 * spec.model.n_layer * spec.model.d_model**2
        d = spec.model.d_model * (spec.model.d_mlp_ratio if "mlp.hook_post" in site else 1)
        rate = ORGANISM_SAE_FLOPS_PER_S
    else:
        n = KNOWN_MODELS.get(resolve_name(subject), (0.1, 0.0))[0] * 1e9
        d = 2048 if "mlp.hook_post" in site else 512
        rate = ASSUMED_TFLOPS["cuda" if params.device.startswith("cuda") else "cpu"] * 1e12
    # The widths of companion.models.needs: 1.5 M for the gated SAEs (a gated step costs ~1.5 baseline steps), factor x M
    widths = [
        params.gated_latents * (1.5 if s.architecture == "gated" else params.baseline_width_factor)
        for s in sweep_specs(params)
    ]
    forward = 2 * n * params.train_tokens / rate
    members = [params.train_tokens * 12 * d * m / rate for m in widths]
    evaluate = (
        2 * n * (params.eval_tokens + params.eval_lm_tokens * (2 + len(widths)))
        + params.eval_tokens * sum(4 * d * m for m in widths)
    ) / rate
    return forward, members, evaluate + 10.0


def units(params: ParetoParams, profile: str) -> list[Unit]:
    """Per target: its organism's units (organism targets), the sweep's training — in one unit, or in parts of
    ``members_per_unit`` SAEs (:mod:`companion.sae.parts`) — then its evaluation."""
    from companion.backbone.cache import default_cache
    from companion.sae.evaluation import eval_spec
    from companion.sae.experiment import _train_spec, sweep_specs
    from companion.sae.parts import PART_KIND, part_ranges, part_spec
    from companion.sae.subjects import Subject, subject_identity

    P = sweep_params(params)
    values = P.to_dict()
    cache = default_cache()
    out: list[Unit] = []
    for target in P.targets:
        subject, site = parse_target(target)
        needs: tuple[str, ...] = ()
        if subject.startswith(ORGANISM_PREFIX):
            from companion.organism.build import organism_seeds
            from companion.organism.units import organism_units

            # At the profile's first seed: the one load_subject loads.
            org = organism_units([subject[len(ORGANISM_PREFIX) :]], profile, organism_seeds(profile)[:1])
            out += org
            needs = (org[-1].id,)
        ident = subject_identity(subject, profile, P.text_datasets)
        train_spec = eval_key = None
        if ident is not None:
            spec_only = Subject(subject, ident[0], None, ident[1], None)  # type: ignore[arg-type]  # no model/text: _train_spec reads key, exclude ids
            train_spec = _train_spec(P, spec_only, site)
            eval_key = cache.key("sae-eval", eval_spec(P, cache.key("sae", train_spec)))
        forward, members, t_eval = _costs(P, subject, site, profile)
        ranges = part_ranges(len(sweep_specs(P)), P.members_per_unit)
        if len(ranges) == 1 or (train_spec is not None and cache.exists("sae", train_spec)):
            ranges = [(0, len(members))]
        train_units = []
        for lo, hi in ranges:
            whole = (lo, hi) == (0, len(members))
            kind, spec = ("sae", train_spec) if whole else (PART_KIND, train_spec and part_spec(train_spec, lo, hi))
            train_units.append(
                Unit(
                    f"sae-train {target}" + ("" if whole else f" SAEs {lo}-{hi - 1}"),
                    kind,
                    None if spec is None else cache.key(kind, spec),
                    "companion.sae.units:train" if whole else "companion.sae.units:train_part",
                    {"params": values, "target": target}
                    if whole
                    else {"params": values, "target": target, "lo": lo, "hi": hi},
                    needs,
                    "sae-train",
                    forward + sum(members[lo:hi]) + 10.0,
                )
            )
        out += train_units
        out.append(
            Unit(
                f"sae-eval {target}",
                "sae-eval",
                eval_key,
                "companion.sae.units:evaluate",
                {"params": values, "target": target},
                tuple(u.id for u in train_units),
                "sae-eval",
                t_eval,
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ job entries
def _start(params: dict[str, Any]) -> ParetoParams:
    """The notebook's own start: the same validated parameters, seeds, threads and profile environment."""
    from companion.backbone.runtime import start
    from companion.sae.params import configure_torch

    P = start(ParetoParams, None, params)
    configure_torch(P)
    return P


def train(params: dict[str, Any], target: str) -> str:
    """Job entry: train (or find) one target's sweep, resuming from its checkpoint; returns the "sae" key."""
    from companion.sae.experiment import site_sweep

    return site_sweep(_start(params), target).cache_key


def evaluate(params: dict[str, Any], target: str) -> str:
    """Job entry: evaluate (or find the evaluation of) one target's sweep; returns the "sae-eval" key."""
    from companion.backbone.cache import default_cache
    from companion.sae.evaluation import eval_spec, evaluate_site
    from companion.sae.experiment import site_sweep

    P = _start(params)
    sweep = site_sweep(P, target)
    evaluate_site(P, sweep)
    return default_cache().key("sae-eval", eval_spec(P, sweep.cache_key))


def train_part(params: dict[str, Any], target: str, lo: int, hi: int) -> str:
    """Job entry: train (or find) members ``lo``..``hi - 1`` of one target's sweep; returns the "sae-part" key."""
    from companion.sae.experiment import train_part as train

    return train(_start(params), target, lo, hi)
