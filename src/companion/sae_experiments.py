"""Notebooks 01 and 02: Gated vs baseline SAEs on real models or organisms (Rajamanoharan et al. 2024,
arXiv:2404.16014, Figs. 1/5 (Pareto), 2 (shrinkage toy) and 6 (γ against L0); γ is the corrected Eq. 10).

One library call per site — :func:`site_sweep` — trains the whole λ sweep of both architectures at equal
compute from one pass over the activation stream and caches the SAEs (``companion.cache`` kind "sae"); a
second call evaluates them on held-out tokens and caches the numbers (kind "sae-eval").  Notebook 02 calls the
same functions with the same sweep settings (its parameter class inherits them, and the profiles share one
YAML anchor), so it finds notebook 01's SAEs in the cache instead of retraining.

A *target* is ``"<subject>@<hook site>"``: the subject is ``organism:<name>`` (an offline organism of the
profile in force, trained on its own corpus) or a real model name for :func:`companion.models.load_model`
(``gelu-1l``, ``pythia-70m-deduped``), whose text comes from the Hugging Face dataset named in
``text_datasets``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from companion.params import NotebookParams

ORGANISM_PREFIX = "organism:"

#: Fields of ParetoParams that determine the trained SAEs (the "sae" cache key); evaluation fields are not here.
TRAIN_FIELDS = (
    "train_tokens", "seq_len", "model_batch_size", "batch_size", "buffer_tokens", "gated_latents",
    "baseline_width_factor", "lambdas_gated", "lambdas_baseline", "lr", "warmup_steps", "resample_every",
    "resample_until", "rewarmup_steps", "normalize_activations", "cache_activations", "seed",
)
#: Fields that additionally determine the evaluation (the "sae-eval" cache key).
EVAL_FIELDS = ("eval_tokens", "eval_lm_tokens", "eval_seq_len", "dense_threshold")


@dataclasses.dataclass
class ParetoParams(NotebookParams):
    """Parameters of notebooks/01_gated_vs_l1_pareto.ipynb (and the sweep settings notebook 02 reuses)."""

    targets: tuple[str, ...] = ("organism:backdoor@blocks.0.mlp.hook_post", "organism:backdoor@blocks.1.hook_resid_pre")
    """What to train on, each "<subject>@<hook site>"; subject "organism:<name>" or a model name for load_model."""
    text_datasets: dict[str, str] = dataclasses.field(default_factory=dict)
    """Hugging Face text dataset per real-model subject (e.g. {"gelu-1l": "NeelNanda/c4-code-20k"}); organisms use their corpus."""
    train_tokens: int = 2_000_000
    """Activation vectors (tokens) each SAE is trained on (paper: ~1.2B; scaled down)."""
    seq_len: int = 128
    """Context length of the token batches fed to the model."""
    model_batch_size: int = 32
    """Sequences per model forward pass while streaming activations."""
    batch_size: int = 4096
    """SAE training batch size in tokens (paper App. D: 4096)."""
    buffer_tokens: int = 262_144
    """Rows held in the shuffled activation buffer (paper: ~10^6)."""
    gated_latents: int = 768
    """Gated SAE width M at every site (the paper fixes the width per model, not per site)."""
    baseline_width_factor: float = 1.5
    """Baseline width relative to the gated SAE (paper's equal-compute comparison: 1.5)."""
    lambdas_gated: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    """λ sweep of the gated SAEs (our L2 is summed over dims and activations are normalised to E‖x‖² = d)."""
    lambdas_baseline: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    """λ sweep of the baseline SAEs."""
    lr: float = 3e-4
    """Adam learning rate (paper App. D: 3e-4; β1 = 0, β2 = 0.999 are fixed)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up steps."""
    resample_every: int = 0
    """Resample dead latents every this many steps (0: off)."""
    resample_until: int = 0
    """Stop resampling at this step (0: no limit)."""
    rewarmup_steps: int = 100
    """Cosine re-warm-up after a resampling, starting from 0.1× lr (paper: 1000 steps at full scale)."""
    normalize_activations: bool = True
    """Scale each site's activations by one constant so E‖x‖² = d (makes λ transferable across sites)."""
    cache_activations: bool = False
    """Write the training activations to the disk cache first and stream from there."""
    eval_tokens: int = 65_536
    """Held-out activation vectors for L0, FVU, γ and dead/dense fractions."""
    eval_lm_tokens: int = 32_768
    """Held-out tokens for loss recovered and Δ LM loss (spliced forward passes)."""
    eval_seq_len: int = 128
    """Context length of the evaluation sequences."""
    dense_threshold: float = 0.1
    """A latent firing on more than this fraction of tokens counts as dense."""
    progress: bool = True
    """Show tqdm progress bars."""
    device: str = "cpu"
    """Where the model runs and the SAEs train ("cpu", "cuda"); not part of the cache key (same maths)."""
    torch_threads: int = 0
    """Intra-op threads for torch in this notebook (0: torch's default). 1 avoids thread-barrier stalls on a shared machine."""

    def __post_init__(self) -> None:
        if self.torch_threads < 0:
            raise ValueError("torch_threads must be >= 0")
        if not self.targets:
            raise ValueError("targets must name at least one '<subject>@<site>'")
        for t in self.targets:
            subject, site = parse_target(t)
            if not subject.startswith(ORGANISM_PREFIX) and subject not in self.text_datasets:
                raise ValueError(f"target {t!r}: real-model subject {subject!r} needs a text dataset in text_datasets")
        for f in ("train_tokens", "seq_len", "model_batch_size", "batch_size", "buffer_tokens", "eval_tokens",
                  "eval_lm_tokens", "eval_seq_len"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if self.seq_len < 2 or self.eval_seq_len < 2:
            raise ValueError("seq_len and eval_seq_len must be >= 2")
        if self.buffer_tokens < 2 * self.batch_size:
            raise ValueError(f"buffer_tokens ({self.buffer_tokens}) must be >= 2 * batch_size ({self.batch_size})")
        if self.train_tokens < self.batch_size:
            raise ValueError("train_tokens must cover at least one batch")
        if self.gated_latents < 1 or self.baseline_width_factor <= 0:
            raise ValueError("gated_latents must be >= 1 and baseline_width_factor > 0")
        for f in ("lambdas_gated", "lambdas_baseline"):
            v = getattr(self, f)
            if not v or any(not (l >= 0 and math.isfinite(l)) for l in v):
                raise ValueError(f"{f} must be a non-empty list of finite λ >= 0, got {v}")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        for f in ("warmup_steps", "resample_every", "resample_until", "rewarmup_steps"):
            if getattr(self, f) < 0:
                raise ValueError(f"{f} must be >= 0")
        if not 0 < self.dense_threshold < 1:
            raise ValueError("dense_threshold must be in (0, 1)")


@dataclasses.dataclass
class ShrinkageParams(ParetoParams):
    """Parameters of notebooks/02_shrinkage_gamma.ipynb: notebook 01's sweep settings plus the toys."""

    toy_lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    """λ values of the one-feature shrinkage toy (paper Fig. 2)."""
    toy_steps: int = 1500
    """Adam steps per toy SAE."""
    perpendicular_parallel: float = 0.05
    """Parallel component of the near-perpendicular example x̂ = a·x + (orthogonal part)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.toy_lambdas or any(l < 0 for l in self.toy_lambdas):
            raise ValueError("toy_lambdas must be a non-empty list of λ >= 0")
        if self.toy_steps < 1:
            raise ValueError("toy_steps must be >= 1")
        if not 0 < self.perpendicular_parallel < 1:
            raise ValueError("perpendicular_parallel must be in (0, 1)")


def configure_torch(P: ParetoParams) -> int:
    """Apply ``P.torch_threads`` (if set) to this process; returns the thread count in force."""
    if P.torch_threads:
        torch.set_num_threads(P.torch_threads)
    return torch.get_num_threads()


def parse_target(target: str) -> tuple[str, str]:
    """``"subject@site"`` -> (subject, site)."""
    if target.count("@") != 1:
        raise ValueError(f"target {target!r} must look like '<subject>@<hook site>', "
                         "e.g. 'organism:backdoor@blocks.0.mlp.hook_post'")
    subject, site = target.split("@")
    if not subject or not site:
        raise ValueError(f"target {target!r} has an empty subject or site")
    return subject, site


# ------------------------------------------------------------------------------------------ subjects
@dataclasses.dataclass
class Subject:
    """A model and its text source."""

    name: str
    """As written in the target."""
    key: str
    """What identifies the model's weights in cache specs (organism cache key, or the model name)."""
    model: Any
    """The TransformerBridge."""
    exclude_token_ids: tuple[int, ...]
    """Special tokens (BOS / end-of-text / padding) whose positions are not trained on or spliced."""
    token_batches: Callable[[int, int, int, str, int], Iterator[Tensor]]
    """(n_tokens, seq_len, batch_size, split "train"|"heldout", seed) -> iterator of [batch, seq] LongTensors."""


_SUBJECTS: dict[tuple[str, str], Subject] = {}


def load_subject(name: str, profile: str | None = None, text_datasets: dict[str, str] | None = None,
                 device: str = "cpu") -> Subject:
    """Load (once per process) an organism or real model with its token source."""
    from companion.runtime import context

    profile = profile or context().profile.name
    memo = (name, profile, device)
    if memo in _SUBJECTS:
        return _SUBJECTS[memo]
    if name.startswith(ORGANISM_PREFIX):
        from companion.organism import load_organism

        org = load_organism(name[len(ORGANISM_PREFIX):], profile)
        eot = int(org.tokenizer.convert_tokens_to_ids("<|endoftext|>"))

        def batches(n_tokens: int, seq_len: int, batch_size: int, split: str, seed: int) -> Iterator[Tensor]:
            return org.token_batches(n_tokens, seq_len, batch_size, split=split, seed=seed)

        subj = Subject(name, f"organism:{org.path.name}", org.model.to(device), (eot,), batches)
    else:
        from companion.models import load_model

        ds = (text_datasets or {}).get(name)
        if ds is None:
            raise ValueError(f"no text dataset configured for {name!r} (ParetoParams.text_datasets)")
        model = load_model(name, device=device)
        tok = model.tokenizer
        special = tuple(sorted({int(t) for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
                                if t is not None}))

        def batches(n_tokens: int, seq_len: int, batch_size: int, split: str, seed: int) -> Iterator[Tensor]:
            return hf_text_batches(ds, tok, n_tokens, seq_len, batch_size, split=split, seed=seed)

        subj = Subject(name, f"model:{name}|data:{ds}", model, special, batches)
    _SUBJECTS[memo] = subj
    return subj


def hf_text_batches(dataset: str, tokenizer: Any, n_tokens: int, seq_len: int, batch_size: int, *,
                    split: str = "train", seed: int = 0, text_column: str = "text") -> Iterator[Tensor]:
    """Token batches ``[batch_size, seq_len]`` from a streamed Hugging Face text dataset (paper profile).

    Documents are concatenated with the EOS token between them and cut into rows that each start with BOS,
    like TransformerLens' ``tokenize_and_concatenate``.  Every 10th document of the (seeded, shuffled) stream is
    held out: "heldout" reads only those, "train" only the others, so the two never overlap even for datasets
    with a single split; the shuffle is fixed (seed 0) so that partition never moves, and ``seed`` only offsets
    where in its part a stream starts (by ``seed`` documents).  ``dataset`` may name a configuration as
    ``"allenai/c4:en"``.  Needs the ``datasets`` package and network access to the Hub.
    """
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - only on the paper profile
        raise ImportError("the paper profile streams text with the `datasets` package; install it "
                          "(`pip install datasets`) or use an offline profile") from e
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    name, _, config = dataset.partition(":")
    ds = datasets.load_dataset(name, config or None, split="train", streaming=True).shuffle(seed=0, buffer_size=10_000)
    want_heldout = split == "heldout"
    skip = int(seed) % 1000
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    n_batches = -(-n_tokens // (batch_size * seq_len))
    buf: list[int] = []
    rows: list[list[int]] = []
    made = 0
    for i, doc in enumerate(ds):
        if (i % 10 == 0) != want_heldout:
            continue
        if skip:
            skip -= 1
            continue
        buf.extend(tokenizer(doc[text_column])["input_ids"] + [eos])
        while len(buf) >= seq_len - 1 and made < n_batches:
            rows.append([bos] + buf[: seq_len - 1])
            del buf[: seq_len - 1]
            if len(rows) == batch_size:
                yield torch.tensor(rows, dtype=torch.long)
                rows = []
                made += 1
        if made >= n_batches:
            return


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


def _train_spec(P: ParetoParams, subject: Subject, site: str) -> dict[str, Any]:
    from companion.cache import code_fingerprint

    return {
        "subject": subject.key,
        "site": site,
        "exclude_token_ids": list(subject.exclude_token_ids),
        "train": {f: getattr(P, f) for f in TRAIN_FIELDS},
        "code": code_fingerprint("companion.sae", "companion.sae_step", "companion.sae_training",
                                 "companion.activations"),
    }


def train_config(P: ParetoParams):
    """The TrainConfig of a ParetoParams."""
    from companion.sae_training import TrainConfig

    return TrainConfig(lr=P.lr, warmup_steps=P.warmup_steps, resample_every=P.resample_every,
                       resample_until=P.resample_until, rewarmup_steps=P.rewarmup_steps,
                       resample_inputs=min(P.buffer_tokens, 8 * P.batch_size), log_every=5)


def site_sweep(P: ParetoParams, target: str) -> SiteSweep:
    """Train (or load from the cache) both architectures' λ sweeps at one target, from one activation pass."""
    from companion.activations import ActivationStore, cached_activation_shards, model_chunks, shard_chunks
    from companion.cache import default_cache
    from companion.sae import load_sae
    from companion.sae_training import (TrainedSAE, equal_compute_sweep, log_from_dict, log_to_dict,
                                        train_sweep)

    subject_name, site = parse_target(target)
    subject = load_subject(subject_name, text_datasets=P.text_datasets, device=P.device)
    spec = _train_spec(P, subject, site)
    cache = default_cache()
    existed = cache.exists("sae", spec)

    def token_stream() -> Iterator[Tensor]:
        # Special-token positions are dropped from the stream, so ask for a margin; the store stops at train_tokens.
        n = int(P.train_tokens * 1.15) + P.seq_len * P.model_batch_size
        return subject.token_batches(n, P.seq_len, P.model_batch_size, "train", P.seed)

    def build(tmp: Path) -> None:
        if P.cache_activations:
            shard_dir = cached_activation_shards(
                subject.model, token_stream, [site], {"subject": subject.key, "seq_len": P.seq_len,
                                                      "model_batch_size": P.model_batch_size, "seed": P.seed},
                max_rows=P.train_tokens, exclude_token_ids=subject.exclude_token_ids, progress=P.progress)
            chunks = shard_chunks(shard_dir, [site])
        else:
            chunks = model_chunks(subject.model, token_stream(), [site], subject.exclude_token_ids)
        store = ActivationStore(chunks, batch_size=P.batch_size, buffer_size=P.buffer_tokens, seed=P.seed,
                                max_rows=P.train_tokens)
        d = site_dim(subject, site)
        specs = equal_compute_sweep(P.gated_latents, P.lambdas_gated, P.lambdas_baseline, P.baseline_width_factor)
        trained = train_sweep((b[site] for b in store), specs, train_config(P), seed=P.seed,
                              normalize=P.normalize_activations, max_steps=P.train_tokens // P.batch_size,
                              progress=P.progress, desc=f"SAEs {target}", device=P.device)
        from companion.sae import save_sae

        meta = {"target": target, "site": site, "d_in": d, "members": []}
        for i, t in enumerate(trained):
            save_sae(t.sae, tmp / f"sae_{i:02d}.pt")
            meta["members"].append({"file": f"sae_{i:02d}.pt", "spec": dataclasses.asdict(t.spec),
                                    "input_scale": t.input_scale, "log": log_to_dict(t.log)})
        (tmp / "sweep.json").write_text(json.dumps(meta))

    path = cache.get_or_build("sae", spec, build, description=f"SAE sweep {target}")
    meta = json.loads((path / "sweep.json").read_text())
    from companion.sae_training import SAESpec

    saes = []
    for m in meta["members"]:
        saes.append(TrainedSAE(spec=SAESpec(**m["spec"]), sae=load_sae(path / m["file"]).eval().to(P.device),
                               input_scale=float(m["input_scale"]), log=log_from_dict(m["log"])))
    return SiteSweep(target=target, site=site, d_in=int(meta["d_in"]), saes=saes, cache_key=path.name,
                     from_cache=existed)


def site_dim(subject: Subject, site: str) -> int:
    """The site's (flattened) activation dimension, from one tiny forward pass."""
    from companion.activations import site_activations

    tokens = next(subject.token_batches(8, 8, 1, "train", 0))
    return int(site_activations(subject.model, tokens, [site])[site].shape[-1])


# ------------------------------------------------------------------------------------------ evaluation
@dataclasses.dataclass(frozen=True)
class SAEEval:
    """Held-out metrics of one trained SAE (see companion.sae_metrics for every definition)."""

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


def evaluate_site(P: ParetoParams, sweep: SiteSweep) -> list[SAEEval]:
    """Held-out metrics for every SAE of a sweep (cached as kind "sae-eval")."""
    from companion.cache import code_fingerprint, default_cache

    subject_name, site = parse_target(sweep.target)
    subject = load_subject(subject_name, text_datasets=P.text_datasets, device=P.device)
    spec = {"sae": sweep.cache_key, "eval": {f: getattr(P, f) for f in EVAL_FIELDS}, "seed": P.seed,
            "code": code_fingerprint("companion.sae_metrics", "companion.activations")}

    def build(tmp: Path) -> None:
        rows = _evaluate(P, subject, sweep)
        (tmp / "eval.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))

    path = default_cache().get_or_build("sae-eval", spec, build, description=f"SAE eval {sweep.target}")
    return [SAEEval(**r) for r in json.loads((path / "eval.json").read_text())]


@torch.no_grad()
def _evaluate(P: ParetoParams, subject: Subject, sweep: SiteSweep) -> list[SAEEval]:
    from tqdm.auto import tqdm

    from companion.activations import collect, model_chunks
    from companion import sae_metrics as sm

    site = sweep.site
    held_seed = P.seed + 1_000
    n_eval = int(P.eval_tokens * 1.15) + P.eval_seq_len * P.model_batch_size  # margin for dropped positions
    chunks = model_chunks(subject.model, subject.token_batches(n_eval, P.eval_seq_len, P.model_batch_size, "heldout",
                                                               held_seed), [site], subject.exclude_token_ids)
    x = collect(chunks, P.eval_tokens)[site]
    lm_batches = list(subject.token_batches(P.eval_lm_tokens, P.eval_seq_len, P.model_batch_size, "heldout",
                                            held_seed + 1))
    names = [f"{i}" for i in range(len(sweep.saes))]
    recon = {n: t.reconstruct for n, t in zip(names, sweep.saes)}
    lm = sm.lm_losses(subject.model, tqdm(lm_batches, desc=f"eval {sweep.target}", disable=not P.progress),
                      site, recon, subject.exclude_token_ids)
    rows = []
    for n, t in zip(names, sweep.saes):
        stats = sm.ReconstructionStats()
        for i in range(0, x.shape[0], 8192):
            xb = x[i:i + 8192].to(P.device)
            f = t.encode(xb)
            stats.update(xb, t.sae.decode(f) / t.input_scale, f)
        freq = stats.frequencies
        rows.append(SAEEval(
            target=sweep.target, architecture=t.spec.architecture, n_latents=t.spec.n_latents, lam=t.spec.lam,
            l0=stats.l0, loss_recovered=lm.loss_recovered(n), delta_lm_loss=lm.delta_lm_loss(n), fvu=stats.fvu,
            gamma=stats.gamma, gamma_first_version=stats.gamma_first_version, rescaling=stats.rescaling,
            dead_fraction=sm.dead_fraction(freq), dense_fraction=sm.dense_fraction(freq, P.dense_threshold),
            ce_clean=lm.ce_clean, ce_zero=lm.ce_zero, ce_spliced=lm.ce_spliced[n]))
    return rows


def run_sweeps(P: ParetoParams) -> list[SAEEval]:
    """Train (or load) and evaluate every target's sweep; one row per SAE."""
    rows: list[SAEEval] = []
    for target in P.targets:
        sweep = site_sweep(P, target)
        rows.extend(evaluate_site(P, sweep))
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
