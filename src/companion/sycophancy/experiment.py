"""Notebook 04's experiment: score each model on every dataset and template, and the organisms' held-out items.

Perez et al. 2022 plot agreement against model size; nostalgebraist re-measured base models with two statistics.
:func:`measure_model` runs one model through :mod:`companion.sycophancy.scoring` and
:mod:`companion.sycophancy.stats`; :func:`organism_eval_dir` writes held-out organism items in Anthropic's schema
so that organism and real data go through one loader.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from companion.sycophancy.data import SycophancyDataset
from companion.sycophancy.scoring import score_items
from companion.sycophancy.stats import AgreementStats, agreement_stats


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
            scored = score_items(model, ds.items, tpl, model_name=name, batch_size=batch_size, progress=progress,
                                 threads=threads)
            out += agreement_stats(scored, n_boot=n_boot, confidence=confidence, seed=seed, unit=unit,
                                   by_affiliation=by_affiliation and ds_name == "political_typology_quiz")
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


def load_for_sweep(name: str, P: Any, organisms: Mapping[str, Any], profile: str,
                   seed: int | None = None) -> tuple[Any, int, float | None]:
    """One model of the sweep: (model, parameter count, planted rate or None).  An organism of ``profile`` by name
    (at ``seed``), else :func:`companion.models.loading.load_model` on ``P.device`` in ``P.dtype`` (the device is
    checked first)."""
    if name in organisms:
        from companion.organism.loading import load_organism

        org = load_organism(name, profile=profile, seed=seed)
        return org.model, org.n_params, float(org.truth["sycophancy_p"])
    from companion.models.loading import load_model

    model = load_model(name, device=P.device, dtype=P.dtype)
    return model, count_parameters(model), None


def measure_models(P: Any, data: Mapping[str, SycophancyDataset], *, organisms: Mapping[str, Any] = (),
                   profile: str | None = None, seeds: Sequence[int] = (),
                   load: Callable[..., tuple[Any, int, float | None]] = load_for_sweep) -> SweepResult:
    """Load, measure and release each of ``P.models`` in turn (notebook 04's sweep).

    Only one model is alive at a time: each is dropped and released (:func:`companion.models.loading.release`: reference
    cycles collected, CUDA cache emptied) before the next loads, so Pythia-6.9b and -12b are never in memory
    together.  An organism is measured at each of ``seeds`` (default: every seed of the profile) and named
    ``name#seed`` (:func:`companion.organism.build.organism_label`); a real model once, by its name.
    ``load(name, P, organisms, profile, seed)`` is :func:`load_for_sweep`.
    """
    from companion.models.loading import check_device, release

    if any(name not in organisms for name in P.models):
        check_device(P.device)  # before the first download, not after it
    runs: list[tuple[str, str, int | None]] = []
    for name in P.models:
        if name in organisms:
            from companion.organism.build import organism_label, organism_seeds

            runs += [(name, organism_label(name, s), s) for s in (seeds or organism_seeds(profile))]
        else:
            runs.append((name, name, None))
    out = SweepResult([], {}, {})
    for name, label, seed in runs:
        model, out.n_params[label], planted = load(name, P, organisms, profile, seed)
        if planted is not None:
            out.planted[label] = planted
        out.stats += measure_model(model, label, data, P.templates, batch_size=P.batch_size, n_boot=P.n_bootstrap,
                                   confidence=P.confidence, seed=P.seed, by_affiliation=P.by_affiliation,
                                   unit=P.bootstrap_unit, threads=P.torch_threads, progress=True)
        del model
        release()
    return out


def organism_eval_dir(n_per_file: int, seed: int = 0, *, cache: Any = None) -> Path:
    """A cache entry holding held-out organism items in Anthropic's schema, under the three standard file
    names (:func:`companion.organism.build.write_sycophancy_eval`), so organism and real data share one loader."""
    from companion.backbone.cache import code_fingerprint, default_cache
    from companion.organism.sycophancy_items import write_sycophancy_eval

    cache = cache if cache is not None else default_cache()
    spec = {"n_per_file": n_per_file, "seed": seed, "code": code_fingerprint("companion.organism.corpus")}
    return cache.get_or_build(
        "sycophancy-organism-eval", spec, lambda tmp: write_sycophancy_eval(tmp, n_per_file, seed),
        description=f"organism sycophancy eval, {n_per_file} per file, seed {seed}",
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
