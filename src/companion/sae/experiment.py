"""Notebooks 01 and 02: Gated vs baseline SAEs on real models or organisms (Rajamanoharan et al. 2024,
arXiv:2404.16014, Figs. 1/5 (Pareto), 2 (shrinkage toy) and 6 (γ against L0); γ is the corrected Eq. 10), with their
successors beside them (JumpReLU arXiv:2407.14435, TopK arXiv:2406.04093, BatchTopK arXiv:2412.06410).

The notebooks make one call, :func:`run_sweeps`, which goes through the targets one by one.  Per target,
:func:`site_sweep` trains the whole sweep — the λ sweeps of baseline and gated at the paper's equal compute, and the
successors' λ or k sweeps at their width — from one pass over the activation stream and caches the SAEs (``companion.backbone.cache`` kind "sae", each SAE in SAELens' safetensors
layout, :mod:`companion.sae.saelens`); :func:`evaluate_site` evaluates them on held-out tokens and caches the numbers
(kind "sae-eval").  Notebook 02 makes the same call with the same sweep settings, so it finds notebook 01's SAEs in
the cache instead of retraining.

A *target* is ``"<subject>@<hook site>"``: the subject is ``organism:<name>`` (an offline organism of the
profile in force, trained on its own corpus) or a real model name for :func:`companion.models.loading.load_model`
(``gelu-1l``, ``pythia-70m-deduped``), whose text comes from the Hugging Face dataset named in
``text_datasets`` (:mod:`companion.sae.subjects`).  SAEs trained elsewhere (``external_saes``: SAELens or
dictionary_learning folders, SAELens releases; :mod:`companion.sae.formats`) are evaluated the same way at their own
target (:func:`external_sweeps`).  The tables and figure data are made from the rows by :mod:`companion.sae.analysis`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from companion.sae.evaluation import SAEEval, SiteSweep, evaluate_site, site_dim
from companion.sae.params import TRAIN_FIELDS, ParetoParams, parse_target
from companion.sae.subjects import Subject, load_subject

_PRODUCER = "companion.sae.experiment"
"""The module whose code (with everything it imports) trains and evaluates the sweeps: in their cache keys."""


# ------------------------------------------------------------------------------------------ training
def _train_spec(params: ParetoParams, subject: Subject, site: str) -> dict[str, Any]:
    from companion.backbone.cache import code_fingerprint

    return {
        "subject": subject.key,
        "site": site,
        "exclude_token_ids": list(subject.exclude_token_ids),
        "train": {f: getattr(params, f) for f in TRAIN_FIELDS},
        "device": params.device,  # CUDA kernels round differently from the CPU's: a different SAE
        "code": code_fingerprint(_PRODUCER),
    }


def sweep_specs(params: ParetoParams) -> list:
    """The SAEs of one target: the paper's equal-compute λ sweeps (baseline at ``baseline_width_factor`` × the gated
    width) and the successors at ``successor_width_factor`` × the gated width."""
    from companion.sae.sweeps import equal_compute_sweep, successor_sweep

    topk = {
        "aux_k": params.auxk_latents or None,
        "aux_alpha": params.auxk_alpha,
        "dead_tokens": params.dead_after_tokens,
    }
    return equal_compute_sweep(
        params.gated_latents, params.lambdas_gated, params.lambdas_baseline, params.baseline_width_factor
    ) + successor_sweep(
        round(params.gated_latents * params.successor_width_factor),
        lambdas_jumprelu=params.lambdas_jumprelu,
        topk_ks=params.topk_ks,
        batchtopk_ks=params.batchtopk_ks,
        jumprelu={"bandwidth": params.jumprelu_bandwidth, "init_threshold": params.jumprelu_init_threshold},
        topk=topk,
        batchtopk=topk,
    )


def train_config(params: ParetoParams):
    """The SAETrainConfig of a ParetoParams."""
    from companion.sae.training import SAETrainConfig

    return SAETrainConfig(
        lr=params.lr,
        warmup_steps=params.warmup_steps,
        resample_every=params.resample_every,
        resample_until=params.resample_until,
        rewarmup_steps=params.rewarmup_steps,
        resample_inputs=min(params.buffer_tokens, 8 * params.batch_size),
        log_every=5,
    )


def site_sweep(params: ParetoParams, target: str) -> SiteSweep:
    """Train (or load from the cache) both architectures' λ sweeps at one target, from one activation pass.

    When every part of the sweep is already in the cache (:func:`train_part`: Slurm jobs each trained some of its
    SAEs), the sweep's entry is assembled from them instead: the same files, so the same key and numbers.
    """
    from companion.backbone.cache import default_cache
    from companion.sae.parts import assemble_parts
    from companion.sae.saelens import load_sae
    from companion.sae.training import TrainedSAE, log_from_dict

    subject_name, site = parse_target(target)
    subject = load_subject(subject_name, text_datasets=params.text_datasets, device=params.device)
    spec = _train_spec(params, subject, site)
    cache = default_cache()
    existed = cache.exists("sae", spec)

    def build(tmp: Path) -> None:
        if not assemble_parts(params, spec, len(sweep_specs(params)), tmp):
            _train_members(params, subject, target, spec, "sae", 0, len(sweep_specs(params)), tmp)

    path = cache.get_or_build("sae", spec, build, description=f"SAE sweep {target}")
    meta = json.loads((path / "sweep.json").read_text())
    from companion.sae.sweeps import SAESpec

    saes = []
    for m in meta["members"]:
        saes.append(
            TrainedSAE(
                spec=SAESpec(**m["spec"]),
                sae=load_sae(path / m["folder"]).sae.to(params.device),
                input_scale=float(m["input_scale"]),
                log=log_from_dict(m["log"]),
            )
        )
    return SiteSweep(
        target=target, site=site, d_in=int(meta["d_in"]), saes=saes, cache_key=path.name, from_cache=existed
    )


def train_part(params: ParetoParams, target: str, lo: int, hi: int) -> str:
    """Train (or find) members ``lo``..``hi - 1`` of one target's sweep, exactly as the whole sweep trains them
    (same stream, same seeds), as a cache entry of kind "sae-part"; returns its key."""
    from companion.backbone.cache import default_cache
    from companion.sae.parts import PART_KIND, part_spec

    subject_name, site = parse_target(target)
    subject = load_subject(subject_name, text_datasets=params.text_datasets, device=params.device)
    spec = part_spec(_train_spec(params, subject, site), lo, hi)
    path = default_cache().get_or_build(
        PART_KIND,
        spec,
        lambda tmp: _train_members(params, subject, target, spec, PART_KIND, lo, hi, tmp),
        description=f"SAEs {lo}-{hi - 1} of the sweep {target}",
    )
    return path.name


def _train_members(
    params: ParetoParams, subject: Subject, target: str, spec: dict[str, Any], kind: str, lo: int, hi: int, tmp: Path
) -> None:
    """Train members ``lo``..``hi - 1`` of the sweep from one activation pass, saving them (and ``sweep.json``)
    into ``tmp``; member i is seeded ``sae_seed + i`` whichever part it is trained in.  The training state is
    checkpointed beside the entry (named by its key), so a rerun of an interrupted build resumes."""
    from companion.backbone.cache import code_fingerprint, default_cache
    from companion.sae.activations import ActivationStore, cached_activation_shards, model_chunks, shard_chunks
    from companion.sae.checkpoint import Checkpointing
    from companion.sae.saelens import save_sae
    from companion.sae.training import log_to_dict, train_sweep

    site = parse_target(target)[1]
    cache = default_cache()
    checkpoint = Checkpointing(
        cache.path(kind, spec).parent / f".ckpt-{cache.key(kind, spec)}", params.checkpoint_every
    )

    def token_stream() -> Iterator[Tensor]:
        # Special-token positions are dropped from the stream, so ask for a margin; the store stops at train_tokens.
        n = int(params.train_tokens * 1.15) + params.seq_len * params.model_batch_size
        return subject.token_batches(n, params.seq_len, params.model_batch_size, "train", params.seed)

    if params.cache_activations:
        shards = {
            "subject": subject.key,
            "seq_len": params.seq_len,
            "model_batch_size": params.model_batch_size,
            "seed": params.seed,
            "device": params.device,
            "producer": code_fingerprint(_PRODUCER),
        }
        shard_dir = cached_activation_shards(
            subject.model,
            token_stream,
            [site],
            shards,
            max_rows=params.train_tokens,
            exclude_token_ids=subject.exclude_token_ids,
            progress=params.progress,
        )
        chunks = shard_chunks(shard_dir, [site])
    else:
        chunks = model_chunks(subject.model, token_stream(), [site], subject.exclude_token_ids)
    store = ActivationStore(
        chunks,
        batch_size=params.batch_size,
        buffer_size=params.buffer_tokens,
        seed=params.seed,
        max_rows=params.train_tokens,
    )
    d = site_dim(subject, site)
    trained = train_sweep(
        (b[site] for b in store),
        sweep_specs(params)[lo:hi],
        train_config(params),
        seed=params.sae_seed + lo,
        normalize=params.normalize_activations,
        max_steps=params.train_tokens // params.batch_size,
        progress=params.progress,
        desc=f"SAEs {target}",
        device=params.device,
        checkpoint=checkpoint,
    )
    meta: dict[str, Any] = {"target": target, "site": site, "d_in": d, "members": []}
    for i, t in enumerate(trained, start=lo):
        folder = f"sae_{i:02d}"
        save_sae(
            t.sae,
            tmp / folder,
            input_scale=t.input_scale,
            model_name=subject.name,
            hook_name=site,
            context_size=params.seq_len,
            prepend_bos=True,
            exclude_special_tokens=list(subject.exclude_token_ids),
            dataset_path=params.text_datasets.get(subject.name),
            companion={"lam": t.spec.lam, "setting": t.spec.setting, "subject_key": subject.key},
        )
        # The scale is folded into the saved weights, so the stored SAE takes raw activations (scale 1).
        meta["members"].append(
            {
                "folder": folder,
                "spec": dataclasses.asdict(t.spec),
                "input_scale": 1.0,
                "trained_input_scale": t.input_scale,
                "log": log_to_dict(t.log),
            }
        )
    (tmp / "sweep.json").write_text(json.dumps(meta))
    checkpoint.remove()


def run_sweeps(params: ParetoParams, *, log: Callable[[str], Any] = print) -> list[SAEEval]:
    """Train (or load from the cache) and evaluate every target's sweep, target by target; one row per SAE.

    ``log`` gets a line per target as soon as its SAEs are ready — the site's dimension, how many SAEs, whether they
    came from the cache or were trained now, the seconds it took and the cache key — and a last line with the total
    time.  Progress bars (training, evaluation) follow ``params.progress``.
    """
    rows: list[SAEEval] = []
    t_start = time.perf_counter()
    for target in params.targets:
        t0 = time.perf_counter()
        sweep = site_sweep(params, target)
        how = "from the cache" if sweep.from_cache else "trained now"
        log(
            f"{target}: d = {sweep.d_in}, {len(sweep.saes)} SAEs {how} in {time.perf_counter() - t0:.1f} s "
            f"(key {sweep.cache_key})"
        )
        rows.extend(evaluate_site(params, sweep))
    for sweep in external_sweeps(params):
        log(f"{sweep.target}: {len(sweep.saes)} SAE(s) trained elsewhere ({', '.join(sweep.sources)})")
        rows.extend(evaluate_site(params, sweep))
    log(
        f"{len(rows)} SAEs at {len(params.targets)} targets, trained or loaded and evaluated in "
        f"{time.perf_counter() - t_start:.1f} s"
    )
    return rows


def external_sweeps(params: ParetoParams) -> list[SiteSweep]:
    """The ``external_saes``, read (:func:`companion.sae.formats.read_sae`) and grouped by the target each is evaluated
    at: the one given after " -> ", else "<model name>@<hook name>" from its metadata."""
    import hashlib

    from companion.sae.formats import read_sae
    from companion.sae.sweeps import SAESpec
    from companion.sae.training import TrainedSAE, TrainLog

    groups: dict[str, SiteSweep] = {}
    for ref in params.external_saes:
        where, _, target = ref.partition(" -> ")
        stored = read_sae(where.strip())
        if not target:
            if not (stored.model_name and stored.hook_name):
                raise ValueError(
                    f"external SAE {where!r} names no model or hook: give its target as '{where} -> <subject>@<site>'"
                )
            target = f"{stored.model_name}@{stored.hook_name}"
        _, site = parse_target(target)
        sae = stored.sae.to(params.device)
        options = {"k": sae.k} if hasattr(sae, "k") else {}
        member = TrainedSAE(
            spec=SAESpec(sae.architecture, sae.n_latents, 0.0, options), sae=sae, input_scale=1.0, log=TrainLog()
        )
        sweep = groups.setdefault(
            target, SiteSweep(target=target, site=site, d_in=sae.d_in, saes=[], cache_key="", from_cache=True)
        )
        sweep.saes.append(member)
        sweep.sources.append(ref)
    for sweep in groups.values():  # the evaluation's cache key: what the SAEs compute, byte for byte
        h = hashlib.sha256()
        for t in sweep.saes:
            for name, p in sorted(t.sae.state_dict().items()):
                h.update(name.encode())
                h.update(p.detach().cpu().contiguous().numpy().tobytes())
            h.update(repr((t.sae.architecture, sorted(t.spec.options.items()))).encode())
        h.update(repr(sweep.sources).encode())
        sweep.cache_key = "external-" + h.hexdigest()[:24]
    return list(groups.values())


def results_frame(rows: Sequence[SAEEval]):
    """The evaluation rows as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(r) for r in rows])
