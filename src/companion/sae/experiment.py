"""Notebooks 01 and 02: Gated vs baseline SAEs on real models or organisms (Rajamanoharan et al. 2024,
arXiv:2404.16014, Figs. 1/5 (Pareto), 2 (shrinkage toy) and 6 (γ against L0); γ is the corrected Eq. 10).

The notebooks make one call, :func:`run_sweeps`, which goes through the targets one by one.  Per target,
:func:`site_sweep` trains the whole λ sweep of both architectures at equal compute from one pass over the
activation stream and caches the SAEs (``companion.backbone.cache`` kind "sae", each SAE in SAELens' safetensors
layout, :mod:`companion.sae.saelens`); :func:`evaluate_site` evaluates them on held-out tokens and caches the numbers
(kind "sae-eval").  Notebook 02 makes the same call with the same sweep settings, so it finds notebook 01's SAEs in
the cache instead of retraining.

A *target* is ``"<subject>@<hook site>"``: the subject is ``organism:<name>`` (an offline organism of the
profile in force, trained on its own corpus) or a real model name for :func:`companion.models.loading.load_model`
(``gelu-1l``, ``pythia-70m-deduped``), whose text comes from the Hugging Face dataset named in
``text_datasets`` (:mod:`companion.sae.subjects`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from companion.sae.params import EVAL_FIELDS, TRAIN_FIELDS, ParetoParams, parse_target
from companion.sae.subjects import Subject, load_subject

_PRODUCER = "companion.sae.experiment"
"""The module whose code (with everything it imports) trains and evaluates the sweeps: in their cache keys."""


# ------------------------------------------------------------------------------------------ training
@dataclasses.dataclass
class SiteSweep:
    """The trained SAEs of one target, as loaded from the cache."""

    target: str
    """"subject@site"."""
    site: str
    """The hook site."""
    d_in: int
    """Activation dimension at the site."""
    saes: list[Any]
    """``TrainedSAE`` per member, baselines first then gated (the order of ``equal_compute_sweep``)."""
    cache_key: str
    """Key of the "sae" cache entry."""
    from_cache: bool
    """True when the entry already existed (nothing was trained by this call)."""


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


def train_config(params: ParetoParams):
    """The SAETrainConfig of a ParetoParams."""
    from companion.sae.training import SAETrainConfig

    return SAETrainConfig(lr=params.lr, warmup_steps=params.warmup_steps, resample_every=params.resample_every,
                          resample_until=params.resample_until, rewarmup_steps=params.rewarmup_steps,
                          resample_inputs=min(params.buffer_tokens, 8 * params.batch_size), log_every=5)


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
    from companion.sae.training import SAESpec

    saes = []
    for m in meta["members"]:
        saes.append(TrainedSAE(spec=SAESpec(**m["spec"]), sae=load_sae(path / m["folder"]).sae.to(params.device),
                               input_scale=float(m["input_scale"]), log=log_from_dict(m["log"])))
    return SiteSweep(target=target, site=site, d_in=int(meta["d_in"]), saes=saes, cache_key=path.name,
                     from_cache=existed)


def sweep_specs(params: ParetoParams) -> list[Any]:
    """The members of every target's sweep, in order (baselines, then gated)."""
    from companion.sae.training import equal_compute_sweep

    return equal_compute_sweep(params.gated_latents, params.lambdas_gated, params.lambdas_baseline,
                               params.baseline_width_factor)


def train_part(params: ParetoParams, target: str, lo: int, hi: int) -> str:
    """Train (or find) members ``lo``..``hi - 1`` of one target's sweep, exactly as the whole sweep trains them
    (same stream, same seeds), as a cache entry of kind "sae-part"; returns its key."""
    from companion.backbone.cache import default_cache
    from companion.sae.parts import PART_KIND, part_spec

    subject_name, site = parse_target(target)
    subject = load_subject(subject_name, text_datasets=params.text_datasets, device=params.device)
    spec = part_spec(_train_spec(params, subject, site), lo, hi)
    path = default_cache().get_or_build(
        PART_KIND, spec, lambda tmp: _train_members(params, subject, target, spec, PART_KIND, lo, hi, tmp),
        description=f"SAEs {lo}-{hi - 1} of the sweep {target}")
    return path.name


def _train_members(params: ParetoParams, subject: Subject, target: str, spec: dict[str, Any], kind: str, lo: int,
                   hi: int, tmp: Path) -> None:
    """Train members ``lo``..``hi - 1`` of the sweep from one activation pass, saving them (and ``sweep.json``)
    into ``tmp``; member i is seeded ``seed + i`` whichever part it is trained in.  The training state is
    checkpointed beside the entry (named by its key), so a rerun of an interrupted build resumes."""
    from companion.backbone.cache import code_fingerprint, default_cache
    from companion.sae.activations import ActivationStore, cached_activation_shards, model_chunks, shard_chunks
    from companion.sae.checkpoint import Checkpointing
    from companion.sae.saelens import save_sae
    from companion.sae.training import log_to_dict, train_sweep

    site = parse_target(target)[1]
    cache = default_cache()
    checkpoint = Checkpointing(cache.path(kind, spec).parent / f".ckpt-{cache.key(kind, spec)}",
                               params.checkpoint_every)

    def token_stream() -> Iterator[Tensor]:
        # Special-token positions are dropped from the stream, so ask for a margin; the store stops at train_tokens.
        n = int(params.train_tokens * 1.15) + params.seq_len * params.model_batch_size
        return subject.token_batches(n, params.seq_len, params.model_batch_size, "train", params.seed)

    if params.cache_activations:
        shards = {"subject": subject.key, "seq_len": params.seq_len, "model_batch_size": params.model_batch_size,
                  "seed": params.seed, "device": params.device, "producer": code_fingerprint(_PRODUCER)}
        shard_dir = cached_activation_shards(
            subject.model, token_stream, [site], shards, max_rows=params.train_tokens,
            exclude_token_ids=subject.exclude_token_ids, progress=params.progress)
        chunks = shard_chunks(shard_dir, [site])
    else:
        chunks = model_chunks(subject.model, token_stream(), [site], subject.exclude_token_ids)
    store = ActivationStore(chunks, batch_size=params.batch_size, buffer_size=params.buffer_tokens,
                            seed=params.seed, max_rows=params.train_tokens)
    d = site_dim(subject, site)
    trained = train_sweep((b[site] for b in store), sweep_specs(params)[lo:hi], train_config(params),
                          seed=params.seed + lo, normalize=params.normalize_activations,
                          max_steps=params.train_tokens // params.batch_size, progress=params.progress,
                          desc=f"SAEs {target}", device=params.device, checkpoint=checkpoint)
    meta = {"target": target, "site": site, "d_in": d, "members": []}
    for i, t in enumerate(trained, start=lo):
        folder = f"sae_{i:02d}"
        save_sae(t.sae, tmp / folder, input_scale=t.input_scale, model_name=subject.name, hook_name=site,
                 context_size=params.seq_len, prepend_bos=True,
                 exclude_special_tokens=list(subject.exclude_token_ids),
                 dataset_path=params.text_datasets.get(subject.name),
                 companion={"lam": t.spec.lam, "subject_key": subject.key})
        # The scale is folded into the saved weights, so the stored SAE takes raw activations (scale 1).
        meta["members"].append({"folder": folder, "spec": dataclasses.asdict(t.spec), "input_scale": 1.0,
                                "trained_input_scale": t.input_scale, "log": log_to_dict(t.log)})
    (tmp / "sweep.json").write_text(json.dumps(meta))
    checkpoint.remove()


def site_dim(subject: Subject, site: str) -> int:
    """The site's (flattened) activation dimension, from one tiny forward pass."""
    from companion.sae.activations import site_activations

    tokens = next(subject.token_batches(8, 8, 1, "train", 0))
    return int(site_activations(subject.model, tokens, [site])[site].shape[-1])


# ------------------------------------------------------------------------------------------ evaluation
@dataclasses.dataclass(frozen=True)
class SAEEval:
    """Held-out metrics of one trained SAE (see companion.sae.metrics for every definition)."""

    target: str
    """"subject@site"."""
    architecture: str
    """"baseline" or "gated"."""
    n_latents: int
    """Dictionary size."""
    lam: float
    """Sparsity coefficient it was trained with."""
    l0: float
    """E‖f̃‖₀ on held-out activations."""
    loss_recovered: float
    """1 − (CE_spliced − CE_clean)/(CE_zero − CE_clean)."""
    delta_lm_loss: float
    """CE_spliced − CE_clean (nats/token)."""
    fvu: float
    """Σ‖x − x̂‖² / Σ‖x − x̄‖²."""
    gamma: float
    """Corrected relative reconstruction bias E‖x̂‖²/E[x·x̂] (Eq. 10)."""
    gamma_first_version: float
    """First-version γ₁ = E[x·x̂]/E‖x‖²."""
    rescaling: float
    """Best rescaling of x̂, E[x·x̂]/E‖x̂‖² (= 1/γ)."""
    dead_fraction: float
    """Latents never firing on the held-out activations."""
    dense_fraction: float
    """Latents firing on more than dense_threshold of them."""
    ce_clean: float
    """Clean CE (same for every SAE of a target)."""
    ce_zero: float
    """Zero-ablated CE."""
    ce_spliced: float
    """CE with this SAE spliced in."""


def eval_spec(params: ParetoParams, sae_key: str) -> dict[str, Any]:
    """The "sae-eval" cache spec of the evaluation of the "sae" entry ``sae_key``."""
    from companion.backbone.cache import code_fingerprint

    return {"sae": sae_key, "eval": {f: getattr(params, f) for f in EVAL_FIELDS}, "seed": params.seed,
            "code": code_fingerprint(_PRODUCER)}


def evaluate_site(params: ParetoParams, sweep: SiteSweep) -> list[SAEEval]:
    """Held-out metrics for every SAE of a sweep (cached as kind "sae-eval")."""
    from companion.backbone.cache import default_cache

    subject_name, site = parse_target(sweep.target)
    subject = load_subject(subject_name, text_datasets=params.text_datasets, device=params.device)
    spec = eval_spec(params, sweep.cache_key)

    def build(tmp: Path) -> None:
        rows = _evaluate(params, subject, sweep)
        (tmp / "eval.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))

    path = default_cache().get_or_build("sae-eval", spec, build, description=f"SAE eval {sweep.target}")
    return [SAEEval(**r) for r in json.loads((path / "eval.json").read_text())]


def heldout_batches(params: ParetoParams, subject: Subject) -> tuple[Iterator[Tensor], list[Tensor]]:
    """The evaluation's token batches: an iterator for the held-out activations (L0, FVU, γ) and the list for the
    LM loss (loss recovered), read from the subject's two held-out parts, which share no document."""
    held_seed = params.seed + 1_000
    n_eval = int(params.eval_tokens * 1.15) + params.eval_seq_len * params.model_batch_size  # margin: dropped positions
    acts = subject.token_batches(n_eval, params.eval_seq_len, params.model_batch_size, "heldout", held_seed)
    lm = list(subject.token_batches(params.eval_lm_tokens, params.eval_seq_len, params.model_batch_size, "heldout_lm",
                                    held_seed))
    return acts, lm


@torch.no_grad()
def _evaluate(params: ParetoParams, subject: Subject, sweep: SiteSweep) -> list[SAEEval]:
    from tqdm.auto import tqdm

    from companion.sae.activations import collect, model_chunks
    from companion.sae import metrics as sm

    site = sweep.site
    act_batches, lm_batches = heldout_batches(params, subject)
    x = collect(model_chunks(subject.model, act_batches, [site], subject.exclude_token_ids), params.eval_tokens)[site]
    names = [f"{i}" for i in range(len(sweep.saes))]
    recon = {n: t.reconstruct for n, t in zip(names, sweep.saes)}
    lm = sm.lm_losses(subject.model, tqdm(lm_batches, desc=f"eval {sweep.target}", disable=not params.progress),
                      site, recon, subject.exclude_token_ids)
    rows = []
    for n, t in zip(names, sweep.saes):
        stats = sm.ReconstructionStats()
        for i in range(0, x.shape[0], 8192):
            xb = x[i:i + 8192].to(params.device)
            f = t.encode(xb)
            stats.update(xb, t.sae.decode(f) / t.input_scale, f)
        s = stats.summary()
        rows.append(SAEEval(
            target=sweep.target, architecture=t.spec.architecture, n_latents=t.spec.n_latents, lam=t.spec.lam,
            l0=s.l0, loss_recovered=lm.loss_recovered(n), delta_lm_loss=lm.delta_lm_loss(n), fvu=s.fvu,
            gamma=s.gamma, gamma_first_version=s.gamma_first_version, rescaling=s.rescaling,
            dead_fraction=sm.dead_fraction(s.frequencies),
            dense_fraction=sm.dense_fraction(s.frequencies, params.dense_threshold),
            ce_clean=lm.ce_clean, ce_zero=lm.ce_zero, ce_spliced=lm.ce_spliced[n]))
    return rows


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
        log(f"{target}: d = {sweep.d_in}, {len(sweep.saes)} SAEs {how} in {time.perf_counter() - t0:.1f} s "
            f"(key {sweep.cache_key})")
        rows.extend(evaluate_site(params, sweep))
    log(f"{len(rows)} SAEs at {len(params.targets)} targets, trained or loaded and evaluated in "
        f"{time.perf_counter() - t_start:.1f} s")
    return rows


def results_frame(rows: Sequence[SAEEval]):
    """The evaluation rows as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(r) for r in rows])


# ------------------------------------------------------------------------------------------ analysis
def pareto_frontier(l0: Sequence[float], score: Sequence[float]) -> list[int]:
    """Indices of the points not dominated by another (lower-or-equal L0 and higher-or-equal score), by L0.

    "Better" is lower L0 and higher loss recovered, as in the paper's Pareto plots.
    """
    pts = sorted(range(len(l0)), key=lambda i: (l0[i], -score[i]))
    out, best = [], -math.inf
    for i in pts:
        if score[i] > best:
            out.append(i)
            best = score[i]
    return out


def interpolate_at_l0(l0: Sequence[float], score: Sequence[float], at: float) -> float:
    """The Pareto frontier's score at ``at`` by linear interpolation in log L0; NaN outside its range."""
    idx = pareto_frontier(l0, score)
    xs = np.log([l0[i] for i in idx])
    ys = np.array([score[i] for i in idx])
    if len(xs) == 0 or at <= 0 or not (xs[0] <= math.log(at) <= xs[-1]):
        return float("nan")
    return float(np.interp(math.log(at), xs, ys))


def matched_l0_table(rows: Sequence[SAEEval]):
    """The paper's table layout: per target, each gated SAE next to the baseline SAE of closest L0 (in log L0).

    Columns: target, "gated: L0 → loss recovered (γ)" and the same for the baseline, plus the baseline
    frontier interpolated at the gated L0 (NaN when the gated L0 is outside the baseline sweep's range).
    """
    import pandas as pd

    out = []
    for target in dict.fromkeys(r.target for r in rows):
        g = [r for r in rows if r.target == target and r.architecture == "gated"]
        b = [r for r in rows if r.target == target and r.architecture == "baseline"]
        if not g or not b:
            continue
        for rg in sorted(g, key=lambda r: r.l0):
            if rg.l0 <= 0:
                continue
            rb = min(b, key=lambda r: abs(math.log(max(r.l0, 1e-9)) - math.log(rg.l0)))
            interp = interpolate_at_l0([r.l0 for r in b], [r.loss_recovered for r in b], rg.l0)
            out.append({
                "target": target,
                "gated λ": rg.lam, "gated L0": rg.l0, "gated loss rec.": rg.loss_recovered, "gated γ": rg.gamma,
                "baseline λ": rb.lam, "baseline L0": rb.l0, "baseline loss rec.": rb.loss_recovered,
                "baseline γ": rb.gamma, "baseline frontier at gated L0": interp,
            })
    return pd.DataFrame(out)


def paper_reference_table():
    """The paper's own matched-L0 numbers (Rajamanoharan et al. 2024 tables), for reference only."""
    import pandas as pd

    nan = float("nan")
    rows = [
        ("Gemma-7B L20 attention", 18.7, 0.8655, 1.016, 18.7, 0.7838, 0.759),
        ("Gemma-7B L20 MLP", 24.4, 0.8781, nan, 24.5, 0.8267, 0.869),
        ("Pythia-2.8B L16 residual", 18.9, 0.9655, nan, 17.1, 0.9016, 0.932),
        ("Pythia-2.8B L20 MLP", 22.1, 0.9253, 1.000, 20.6, 0.9128, 0.971),
    ]
    return pd.DataFrame(rows, columns=["model, site", "gated L0", "gated loss rec.", "gated γ", "baseline L0",
                                       "baseline loss rec.", "baseline γ"])


def pareto_plot_data(rows: Sequence[SAEEval], x: str = "l0", y: str = "loss_recovered") -> dict[str, Any]:
    """{target: {architecture: {"x": [...], "y": [...], "lam": [...], "frontier": [indices]}}} for the plots."""
    data: dict[str, Any] = {}
    for r in rows:
        d = data.setdefault(r.target, {}).setdefault(r.architecture, {"x": [], "y": [], "lam": []})
        d["x"].append(getattr(r, x))
        d["y"].append(getattr(r, y))
        d["lam"].append(r.lam)
    for target in data.values():
        for d in target.values():
            # Loss recovered: higher is better; Δ LM loss / FVU: lower is better (negate for the frontier).
            sign = 1.0 if y == "loss_recovered" else -1.0
            d["frontier"] = pareto_frontier(d["x"], [sign * v for v in d["y"]])
    return data
