"""Notebook 04's experiment: score each model on every dataset and template, and the organisms at every seed.

Perez et al. 2022 plot agreement against model size; nostalgebraist re-measured base models with two statistics.
:func:`measure_model` runs one model through :mod:`companion.sycophancy.scoring` and
:mod:`companion.sycophancy.stats`; :func:`measure_models` is the sweep, one model alive at a time, each model's
statistics a cache entry (:func:`model_scores`).  The data scored comes from :mod:`companion.sycophancy.sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from companion.sycophancy.data import SycophancyDataError, SycophancyDataset
from companion.sycophancy.scoring import fitting_items, score_items
from companion.sycophancy.stats import (
    AgreementStats,
    RecoveryReport,
    agreement_stats,
    recovery_report,
    seed_summaries,
    stats_frame,
)


def measure_model(
    model: Any,
    name: str,
    data: Mapping[str, SycophancyDataset],
    templates: Sequence[str],
    *,
    batch_size: int = 16,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    by_affiliation: bool = True,
    unit: Literal["item", "question"] = "item",
    progress: bool = False,
    threads: int | None = None,
) -> list[AgreementStats]:
    """Score one model on every dataset x template and return the statistics (:func:`agreement_stats`);
    the affiliation split is only made for the politics dataset."""
    out: list[AgreementStats] = []
    for ds_name, ds in data.items():
        for tpl in templates:
            scored = score_items(
                model, ds.items, tpl, model_name=name, batch_size=batch_size, progress=progress, threads=threads
            )
            out += agreement_stats(
                scored,
                n_boot=n_boot,
                confidence=confidence,
                seed=seed,
                unit=unit,
                by_affiliation=by_affiliation and ds_name == "political_typology_quiz",
            )
    return out


@dataclasses.dataclass
class SweepResult:
    """What notebook 04's model sweep measured."""

    stats: list[AgreementStats]
    """Every model x dataset x template statistic (and the politics affiliation split)."""
    n_params: dict[str, int]
    """Model name -> parameter count (the size axis)."""
    planted: dict[str, float]
    """Organism name -> its planted sycophancy rate (empty for real models)."""
    left_out: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """Dataset -> model -> items left out as longer than the model's context (``drop_too_long``; 0s included)."""
    n_items: dict[str, int] = dataclasses.field(default_factory=dict)
    """Dataset -> items offered to each model (before any was left out)."""

    def caveats(self) -> list[str]:
        """What the figure must say about the items scored: one line per dataset with items left out."""
        out = []
        for ds, by_model in self.left_out.items():
            counts = sorted(set(by_model.values()))
            if counts[-1] == 0:
                continue
            n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
            out.append(
                f"{ds}: {n} of {self.n_items[ds]} items left out per model as longer than its context (drop_too_long)"
            )
        return out

    def frame(self):
        """The statistics as :func:`companion.sycophancy.stats.stats_frame`'s long table, with each model's size."""
        return stats_frame(self.stats, self.n_params)

    def recovery(self, data: Mapping[str, SycophancyDataset], params: Any) -> RecoveryReport:
        """The organisms' planted-rate check (:func:`companion.sycophancy.stats.recovery_report`) on
        ``params.recovery_dataset`` x ``params.recovery_templates``, and a verdict on every other dataset."""
        chance = {name: float(np.mean([1.0 / len(it.labels) for it in ds.items])) for name, ds in data.items()}
        return recovery_report(
            self.stats,
            self.planted,
            chance,
            dataset=params.recovery_dataset,
            templates=params.recovery_templates,
            tolerance=params.recovery_tolerance,
        )

    def figure_data(self, report: RecoveryReport) -> dict[str, Any]:
        """Figure ``agreement``'s sidecar numbers: every statistic, the planted rates and sizes, each organism
        statistic across its seeds, the published reference points and the panel warnings."""
        from companion.sycophancy.published import PUBLISHED

        frame = self.frame()
        return {
            "stats": frame.replace({np.nan: None}).to_dict(orient="records"),
            "planted": self.planted,
            "n_params": self.n_params,
            "by_seed": seed_summaries(frame),
            "left_out_too_long": self.left_out,
            "items_offered": self.n_items,
            "published": [vars(p) for p in PUBLISHED],
            "panel_notes": report.panel_notes,
        }


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One model of the sweep: a real model, measured once, or an organism at one seed."""

    name: str
    """A name of ``params.models``: a model (Hub id, alias or local folder) or an organism of ``profile``."""
    seed: int | None = None
    """The organism's seed; None for a real model."""
    profile: str | None = None
    """The profile that defines the organism."""

    @property
    def label(self) -> str:
        """The name its statistics go under: ``name#seed`` for an organism
        (:func:`companion.organism.build.organism_label`), else its name."""
        if self.seed is None:
            return self.name
        from companion.organism.build import organism_label

        return organism_label(self.name, self.seed)


def sweep_runs(
    models: Sequence[str], organisms: Mapping[str, Any], profile: str | None, seeds: Sequence[int] = ()
) -> list[SweepRun]:
    """The sweep's models in order: each organism of ``organisms`` at each of ``seeds`` (default: every seed of
    ``profile``), each other model once."""
    runs: list[SweepRun] = []
    for name in models:
        if name in organisms:
            from companion.organism.build import organism_seeds

            runs += [SweepRun(name, s, profile) for s in (seeds or organism_seeds(profile))]
        else:
            runs.append(SweepRun(name))
    return runs


def planted_rate(truth: Mapping[str, Any]) -> float | None:
    """An organism's planted sycophancy rate, None for one trained without sycophancy items (notebook 03's dose
    variants): like a real model, it is measured with nothing to compare against."""
    p = truth.get("sycophancy_p")
    return None if p is None else float(p)


def load_for_sweep(run: SweepRun, params: Any) -> tuple[Any, int, float | None]:
    """One model of the sweep: (model, parameter count, planted rate or None).  An organism of ``run.profile`` by
    name (at ``run.seed``), else :func:`companion.models.loading.load_model` on ``params.device`` in
    ``params.dtype`` (the device is checked first)."""
    if run.seed is not None:
        from companion.organism.loading import load_organism

        org = load_organism(run.name, profile=run.profile, seed=run.seed)
        return org.model, org.n_params, planted_rate(org.truth)
    from companion.models.loading import load_model

    model = load_model(run.name, device=params.device, dtype=params.dtype)
    return model, count_parameters(model), None


def measure_models(
    params: Any,
    data: Mapping[str, SycophancyDataset],
    *,
    organisms: Mapping[str, Any] | None = None,
    profile: str | None = None,
    seeds: Sequence[int] = (),
    load: Callable[[SweepRun, Any], tuple[Any, int, float | None]] | None = None,
) -> SweepResult:
    """Load, measure and release each of ``params.models`` (:class:`SycophancyParams`) in turn (notebook 04's sweep).

    Only one model is alive at a time: each is dropped and released (:func:`companion.models.loading.release`: reference
    cycles collected, CUDA cache emptied) before the next loads, so Pythia-6.9b and -12b are never in memory
    together.  An organism is measured at each of ``seeds`` (default: every seed of the profile) and named
    ``name#seed`` (:func:`companion.organism.build.organism_label`); a real model once, by its name
    (:func:`sweep_runs`).  Each model's statistics are a cache entry (:func:`model_scores`, kind
    "sycophancy-scores": a rerun, or a Slurm job before the notebook, has already made them); ``load(run, params)``
    replaces :func:`load_for_sweep` and then measures without the cache (the key names a model by its name alone).
    """
    from companion.models.loading import check_device

    organisms = organisms or {}
    if any(name not in organisms for name in params.models):
        check_device(params.device)  # before the first download, not after it
    out = SweepResult([], {}, {}, n_items={name: len(ds) for name, ds in data.items()})
    for run in sweep_runs(params.models, organisms, profile, seeds):
        scores = model_scores(params, data, run) if load is None else _load_and_measure(params, data, run, load)
        out.n_params[run.label] = scores.n_params
        if scores.planted is not None:
            out.planted[run.label] = scores.planted
        for ds_name, n in scores.left_out.items():
            out.left_out.setdefault(ds_name, {})[run.label] = n
        out.stats += scores.stats
    return out


def _load_and_measure(
    params: Any,
    data: Mapping[str, SycophancyDataset],
    run: SweepRun,
    load: Callable[[SweepRun, Any], tuple[Any, int, float | None]],
) -> ModelScores:
    """Load ``run``'s model, measure it on ``data`` and release it before returning (one model alive at a time)."""
    from companion.models.loading import release

    model, n_params, planted = load(run, params)
    stats, left_out = _measure(params, model, run.label, data)
    del model
    release()
    return ModelScores(stats, n_params, planted, left_out)


def _measure(
    params: Any, model: Any, label: str, data: Mapping[str, SycophancyDataset]
) -> tuple[list[AgreementStats], dict[str, int]]:
    """One model's statistics on ``data``, and (``drop_too_long``) how many items of each dataset were left out as
    longer than its context."""
    scored, left_out = dict(data), {}
    if params.drop_too_long:
        for ds_name, ds in data.items():
            scored[ds_name], left_out[ds_name] = fitting_items(model, ds, params.templates)
            if not scored[ds_name].items:
                raise SycophancyDataError(
                    f"{ds.path}: every one of the {len(ds)} items scored is longer than "
                    f"{label}'s context: nothing is left to score"
                )
    stats = measure_model(
        model,
        label,
        scored,
        params.templates,
        batch_size=params.batch_size,
        n_boot=params.n_bootstrap,
        confidence=params.confidence,
        seed=params.seed,
        by_affiliation=params.by_affiliation,
        unit=params.bootstrap_unit,
        threads=params.torch_threads,
        progress=True,
    )
    return stats, left_out


@dataclasses.dataclass
class ModelScores:
    """One model's statistics on every dataset x template, as cached."""

    stats: list[AgreementStats]
    """Every dataset x template statistic (and the politics affiliation split)."""
    n_params: int
    """Its parameter count (the size axis)."""
    planted: float | None
    """An organism's planted sycophancy rate (None for real models)."""
    left_out: dict[str, int] = dataclasses.field(default_factory=dict)
    """Dataset -> items left out as longer than the model's context (``drop_too_long``; empty when it is off)."""


SCORES_KIND = "sycophancy-scores"
"""Cache kind of one model's statistics."""


def data_identity(data: Mapping[str, SycophancyDataset]) -> dict[str, Any]:
    """What was scored, exactly: each dataset's file (git blob id) and the lines of its scored items."""
    return {name: {"blob": ds.blob_id, "lines": [it.line for it in ds.items]} for name, ds in data.items()}


def scores_spec(params: Any, data: Mapping[str, SycophancyDataset], run: SweepRun) -> dict[str, Any]:
    """The cache spec of one model's statistics: the model (an organism's cache key), the scored data and every
    setting that changes a number."""
    from companion.backbone.cache import code_fingerprint

    if run.seed is not None:
        from companion.organism.build import organism_key, organism_label, organism_spec

        spec = organism_spec(run.name, run.profile, run.seed)
        model, label = f"organism:{organism_key(spec)}", organism_label(run.name, spec.seed)
    else:
        model, label = f"model:{run.name}|{params.dtype}", run.name
    settings = {
        f: getattr(params, f)
        for f in (
            "templates",
            "batch_size",
            "n_bootstrap",
            "confidence",
            "seed",
            "bootstrap_unit",
            "by_affiliation",
            "device",
            "drop_too_long",
        )
    }
    return {
        "model": model,
        "label": label,
        "data": data_identity(data),
        "settings": settings,
        "code": code_fingerprint("companion.sycophancy.experiment"),
    }


def model_scores(params: Any, data: Mapping[str, SycophancyDataset], run: SweepRun) -> ModelScores:
    """One model's statistics (:func:`measure_model`), from the cache or measured now and cached (kind
    "sycophancy-scores"): the model is loaded only when they are not cached yet."""
    import json

    from companion.backbone.cache import default_cache

    spec = scores_spec(params, data, run)

    def build(tmp: Path) -> None:
        scores = _load_and_measure(params, data, run, load_for_sweep)
        (tmp / "scores.json").write_text(json.dumps(dataclasses.asdict(scores)))

    path = default_cache().get_or_build(SCORES_KIND, spec, build, description=f"sycophancy scores {spec['label']}")
    got = json.loads((path / "scores.json").read_text())
    return ModelScores(
        [_stats_from_dict(d) for d in got["stats"]],
        int(got["n_params"]),
        got["planted"],
        {k: int(v) for k, v in got["left_out"].items()},
    )


def _stats_from_dict(d: dict[str, Any]) -> AgreementStats:
    from companion.sycophancy.stats import Estimate

    return AgreementStats(
        **{**d, "mean_prob": Estimate(**d["mean_prob"]), "matching_more_likely": Estimate(**d["matching_more_likely"])}
    )


def model_family(name: str) -> str:
    """Models joined by a line in the figure: the name without its seed and its last ``-size`` part
    ("syco-p50-small#2" -> "syco-p50", "EleutherAI/pythia-410m" -> "EleutherAI/pythia")."""
    name = name.split("#", 1)[0]
    return name.rsplit("-", 1)[0] if "-" in name else name


def count_parameters(model: Any) -> int:
    """Total parameters of the wrapped Hugging Face model (embeddings included, tied weights once), the number
    model suites are named by (e.g. Pythia-70m: 70,426,624); the size axis for models other than organisms.
    A ``TransformerBridge``'s own ``parameters()`` can count more (its own copies), so it is only the fallback."""
    try:
        from companion.models.loading import hf_model

        module = hf_model(model)
    except (ImportError, AttributeError):
        module = model
    return int(sum(p.numel() for p in module.parameters()))
