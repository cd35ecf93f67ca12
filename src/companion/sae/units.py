"""Notebooks 01 and 02 as work units (:mod:`companion.backbone.units`): per target, the training of its whole
sweep (:func:`companion.sae.experiment.site_sweep`: every λ of both architectures from one pass over the
activations) and then its evaluation (:func:`companion.sae.experiment.evaluate_site`); an organism target first
needs its organism.

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


def _seconds(params: ParetoParams, subject: str, site: str, profile: str) -> tuple[float, float]:
    """Rough (training, evaluation) seconds of one target: doctor's FLOP counts at its assumed throughput."""
    from companion.models.doctor import ASSUMED_TFLOPS, KNOWN_MODELS
    from companion.models.loading import resolve_name

    if subject.startswith(ORGANISM_PREFIX):
        from companion.organism.build import organism_spec

        spec = organism_spec(subject[len(ORGANISM_PREFIX):], profile)
        n = 12 * spec.model.n_layer * spec.model.d_model ** 2
        d = spec.model.d_model * (spec.model.d_mlp_ratio if "mlp.hook_post" in site else 1)
        rate = ORGANISM_SAE_FLOPS_PER_S
    else:
        n = KNOWN_MODELS.get(resolve_name(subject), (0.1, 0.0))[0] * 1e9
        d = 2048 if "mlp.hook_post" in site else 512
        rate = ASSUMED_TFLOPS["cuda" if params.device.startswith("cuda") else "cpu"] * 1e12
    widths = [params.gated_latents * 1.5] * len(params.lambdas_gated) + \
             [params.gated_latents * params.baseline_width_factor] * len(params.lambdas_baseline)
    train = 2 * n * params.train_tokens + params.train_tokens * sum(12 * d * m for m in widths)
    n_saes = len(widths)
    evaluate = 2 * n * (params.eval_tokens + params.eval_lm_tokens * (2 + n_saes)) + \
        params.eval_tokens * sum(4 * d * m for m in widths)
    return train / rate + 10.0, evaluate / rate + 10.0


def units(params: ParetoParams, profile: str) -> list[Unit]:
    """Per target: its organism's units (organism targets), the sweep's training, then its evaluation."""
    from companion.backbone.cache import default_cache
    from companion.sae.experiment import _train_spec, eval_spec
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
            org = organism_units([subject[len(ORGANISM_PREFIX):]], profile, organism_seeds(profile)[:1])
            out += org
            needs = (org[-1].id,)
        ident = subject_identity(subject, profile, P.text_datasets)
        train_key = eval_key = None
        if ident is not None:
            train_key = cache.key("sae", _train_spec(P, Subject(subject, ident[0], None, ident[1], None), site))
            eval_key = cache.key("sae-eval", eval_spec(P, train_key))
        t_train, t_eval = _seconds(P, subject, site, profile)
        args = {"params": values, "target": target}
        train = Unit(f"sae-train {target}", "sae", train_key, "companion.sae.units:train", args, needs,
                     "sae-train", t_train)
        out += [train, Unit(f"sae-eval {target}", "sae-eval", eval_key, "companion.sae.units:evaluate", args,
                            (train.id,), "sae-eval", t_eval)]
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
    from companion.sae.experiment import eval_spec, evaluate_site, site_sweep

    P = _start(params)
    sweep = site_sweep(P, target)
    evaluate_site(P, sweep)
    return default_cache().key("sae-eval", eval_spec(P, sweep.cache_key))
