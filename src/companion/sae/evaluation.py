"""Notebooks 01 and 02's evaluation of trained SAEs on held-out tokens (Rajamanoharan et al. 2024, arXiv:2404.16014,
§5: L0, loss recovered, FVU, Δ LM loss; γ, the corrected Eq. 10): a sweep of one target as loaded from the cache
(:class:`SiteSweep`) and its metrics (:class:`SAEEval`), cached as kind "sae-eval".  Training is
:mod:`companion.sae.experiment`, which imports this module (its code is in the SAE cache keys through it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from companion.sae.params import EVAL_FIELDS, ParetoParams, parse_target
from companion.sae.subjects import Subject, load_subject

_PRODUCER = "companion.sae.experiment"
"""The module whose code (with everything it imports, this one included) trains and evaluates the sweeps."""


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
    """``TrainedSAE`` per member: baselines, gated, then JumpReLU, TopK, BatchTopK (the order of :func:`sweep_specs`)."""
    cache_key: str
    """Key of the "sae" cache entry."""
    from_cache: bool
    """True when the entry already existed (nothing was trained by this call)."""
    sources: list[str] = dataclasses.field(default_factory=list)
    """Per SAE, where it came from when it was trained elsewhere (``external_saes``); empty for a trained sweep."""


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
    """"baseline", "gated", "jumprelu", "topk" or "batchtopk"."""
    n_latents: int
    """Dictionary size."""
    lam: float
    """Sparsity coefficient it was trained with (0 for TopK and BatchTopK, whose sparsity is k)."""
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
    k: int = 0
    """k of a TopK or BatchTopK SAE (latents per token, on average over a batch for BatchTopK); 0 for the others."""
    step_ms: float = float("nan")
    """Milliseconds per training step of this SAE, measured while it trained (its share of the sweep's steps:
    loss, gradients, optimiser); NaN for an SAE trained elsewhere."""
    source: str = ""
    """Where an SAE trained elsewhere came from (an ``external_saes`` entry); "" for the SAEs trained here."""

    @property
    def series(self) -> str:
        """The line it belongs to in the figures: its architecture, or its source for an SAE trained elsewhere."""
        return self.architecture if not self.source else f"{self.architecture}: {self.source.split(' -> ')[0]}"


def eval_spec(params: ParetoParams, sae_key: str) -> dict[str, Any]:
    """The "sae-eval" cache spec of the evaluation of the "sae" entry ``sae_key``."""
    from companion.backbone.cache import code_fingerprint

    return {
        "sae": sae_key,
        "eval": {f: getattr(params, f) for f in EVAL_FIELDS},
        "seed": params.seed,
        "code": code_fingerprint(_PRODUCER),
    }


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
    lm = list(
        subject.token_batches(
            params.eval_lm_tokens, params.eval_seq_len, params.model_batch_size, "heldout_lm", held_seed
        )
    )
    return acts, lm


@torch.no_grad()
def _evaluate(params: ParetoParams, subject: Subject, sweep: SiteSweep) -> list[SAEEval]:
    from tqdm.auto import tqdm

    from companion.sae import metrics as sm
    from companion.sae.activations import collect, model_chunks

    site = sweep.site
    act_batches, lm_batches = heldout_batches(params, subject)
    x = collect(model_chunks(subject.model, act_batches, [site], subject.exclude_token_ids), params.eval_tokens)[site]
    names = [f"{i}" for i in range(len(sweep.saes))]
    recon = {n: t.reconstruct for n, t in zip(names, sweep.saes, strict=True)}
    lm = sm.lm_losses(
        subject.model,
        tqdm(lm_batches, desc=f"eval {sweep.target}", disable=not params.progress),
        site,
        recon,
        subject.exclude_token_ids,
    )
    rows = []
    sources = sweep.sources or [""] * len(sweep.saes)
    for n, t, source in zip(names, sweep.saes, sources, strict=True):
        stats = sm.ReconstructionStats()
        for i in range(0, x.shape[0], 8192):
            xb = x[i : i + 8192].to(params.device)
            f = t.encode(xb)
            stats.update(xb, t.sae.decode(f) / t.input_scale, f)
        s = stats.summary()
        rows.append(
            SAEEval(
                target=sweep.target,
                architecture=t.spec.architecture,
                n_latents=t.spec.n_latents,
                lam=t.spec.lam,
                l0=s.l0,
                loss_recovered=lm.loss_recovered(n),
                delta_lm_loss=lm.delta_lm_loss(n),
                fvu=s.fvu,
                gamma=s.gamma,
                gamma_first_version=s.gamma_first_version,
                rescaling=s.rescaling,
                dead_fraction=sm.dead_fraction(s.frequencies),
                dense_fraction=sm.dense_fraction(s.frequencies, params.dense_threshold),
                ce_clean=lm.ce_clean,
                ce_zero=lm.ce_zero,
                ce_spliced=lm.ce_spliced[n],
                k=int(t.spec.options.get("k", 0)),
                step_ms=1e3 * t.log.seconds / t.log.steps if t.log.steps else float("nan"),
                source=source,
            )
        )
    return rows
