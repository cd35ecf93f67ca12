"""Notebook 04 as work units (:mod:`companion.backbone.units`): one unit per model of the sweep (an organism at each
seed, a real model once) that scores it on every dataset x template and caches its statistics
(:func:`companion.sycophancy.experiment.model_scores`); an organism first needs its organism.

A unit's key covers the scored data exactly (file blobs and item lines), so it is known once the data are: held-out
organism items already in the cache, Anthropic's files already downloaded or in ``data_dir``.  Before that (a first
run) the keys are unknown and the units are missing; the first job to need the data makes them, under the cache's
lock, exactly as the notebook would.
"""

from __future__ import annotations

from typing import Any

from companion.backbone.units import Unit

SCORING_FLOPS_PER_S = 2e10
"""Throughput of organism forward passes on one CPU thread."""


def _data(params: Any):
    """The scored datasets when they are available without building or downloading anything, else None."""
    from companion.backbone.cache import default_cache
    from companion.backbone.profiles import ProfileError
    from companion.sycophancy.data import SycophancyDataError
    from companion.sycophancy.sources import load_datasets, organism_eval_spec

    if params.data == "organism":
        if not default_cache().exists(
            "sycophancy-organism-eval", organism_eval_spec(params.organism_items_per_file, params.seed)
        ):
            return None
        return load_datasets(params)[1]
    try:
        return load_datasets(params, offline=True)[1]
    except (SycophancyDataError, ProfileError, OSError):  # not downloaded yet (or ${VAR} of its URL unset)
        return None


def _seconds(params: Any, name: str, organisms: dict, profile: str) -> float:
    from companion.models.loading import resolve_name
    from companion.models.needs import ASSUMED_TFLOPS, KNOWN_MODELS

    n_items = (params.n_per_dataset or 10_000) * len(params.datasets) * len(params.templates)
    if name in organisms:
        from companion.organism.build import organism_spec

        m = organism_spec(name, profile).model
        return 2 * 12 * m.n_layer * m.d_model**2 * n_items * 200 / SCORING_FLOPS_PER_S + 10.0
    n = KNOWN_MODELS.get(resolve_name(name), (0.1, 0.0))[0] * 1e9
    rate = ASSUMED_TFLOPS["cuda" if params.device.startswith("cuda") else "cpu"] * 1e12
    return 2 * n * n_items * 200 / rate + 30.0


def units(params: Any, profile: str) -> list[Unit]:
    """One scoring unit per model (and organism seed), after the organism it scores."""
    from companion.backbone.cache import default_cache
    from companion.backbone.profiles import load_profile
    from companion.sycophancy.experiment import SCORES_KIND, scores_spec, sweep_runs

    organisms = load_profile(profile).organisms
    data = _data(params)
    cache = default_cache()
    values = params.to_dict()
    out: list[Unit] = []
    for run in sweep_runs(params.models, organisms, profile, params.seeds):
        needs: tuple[str, ...] = ()
        if run.seed is not None:  # an organism, built first
            from companion.organism.units import organism_units

            org = organism_units([run.name], profile, (run.seed,))
            out += org
            needs = (org[-1].id,)
        key = None if data is None else cache.key(SCORES_KIND, scores_spec(params, data, run))
        out.append(
            Unit(
                f"sycophancy {run.label}",
                SCORES_KIND,
                key,
                "companion.sycophancy.units:score",
                {"params": values, "name": run.name, "seed": run.seed},
                needs,
                "sycophancy",
                _seconds(params, run.name, organisms, profile),
            )
        )
    return out


def score(params: dict[str, Any], name: str, seed: int | None) -> str:
    """Job entry: score one model (or find its scores); returns the "sycophancy-scores" key."""
    from companion.backbone.cache import default_cache
    from companion.backbone.runtime import context, start
    from companion.sycophancy.experiment import SCORES_KIND, SweepRun, model_scores, scores_spec
    from companion.sycophancy.params import SycophancyParams
    from companion.sycophancy.sources import load_datasets

    P = start(SycophancyParams, None, params)
    prof = context().profile
    data = load_datasets(P, offline=prof.offline)[1]
    run = SweepRun(name, seed, prof.name)
    model_scores(P, data, run)
    return default_cache().key(SCORES_KIND, scores_spec(P, data, run))
