"""Parameters of notebooks 01 (Pareto) and 02 (shrinkage), Rajamanoharan et al. 2024 (arXiv:2404.16014), with the
gated SAE's successors beside it (JumpReLU arXiv:2407.14435, TopK arXiv:2406.04093, BatchTopK arXiv:2412.06410).

Notebook 02's :class:`ShrinkageParams` inherits notebook 01's sweep settings (and every profile gives both one YAML
anchor), so notebook 02 finds notebook 01's SAEs in the cache instead of retraining them.

Which :class:`ParetoParams` fields go into which cache key is declared on the field itself: a field marked
:data:`KeyPart.EVAL` keys the evaluation ("sae-eval"), one marked :data:`KeyPart.ELSEWHERE` neither, and every other
field keys the trained SAEs ("sae"), so a new field is in the training key unless it says otherwise.
"""

from __future__ import annotations

import enum
import math
from typing import Annotated

import torch
from pydantic import Field, model_validator

from companion.backbone.params import NotebookParams

ORGANISM_PREFIX = "organism:"
"""A target subject ``organism:<name>`` is an organism of the profile in force."""


class KeyPart(enum.Enum):
    """Which cache key a :class:`ParetoParams` field is part of (``Annotated[type, KeyPart.X]``; unmarked: TRAIN)."""

    TRAIN = "train"
    """It determines the trained SAEs: the "train" settings of the "sae" cache key."""
    EVAL = "eval"
    """It determines only the evaluation of trained SAEs: the "sae-eval" cache key."""
    ELSEWHERE = "elsewhere"
    """It is keyed on its own (subject, site, device) or changes no number (progress bars, threads)."""


class ParetoParams(NotebookParams):
    """Parameters of notebooks/01_gated_vs_l1_pareto.ipynb (and the sweep settings notebook 02 reuses)."""

    targets: Annotated[tuple[str, ...], KeyPart.ELSEWHERE] = (
        "organism:backdoor@blocks.0.mlp.hook_post",
        "organism:backdoor@blocks.1.hook_resid_pre",
    )
    """What to train on, each "<subject>@<hook site>"; subject "organism:<name>" or a model name for load_model."""
    text_datasets: Annotated[dict[str, str], KeyPart.ELSEWHERE] = Field(default_factory=dict)
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
    lambdas_jumprelu: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    """λ sweep of the JumpReLU SAEs (on their L0: λ·E‖f‖₀; empty: none trained)."""
    topk_ks: tuple[int, ...] = (8, 16, 32, 64)
    """k of the TopK SAEs: latents kept per token (empty: none trained)."""
    batchtopk_ks: tuple[int, ...] = (8, 16, 32, 64)
    """k of the BatchTopK SAEs: latents kept per token on average over a training batch (empty: none trained)."""
    successor_width_factor: float = 1.5
    """Width of the JumpReLU, TopK and BatchTopK SAEs relative to the gated SAE. A step of each costs about one baseline
    step (one encoder and one decoder product; notebook 01 shows the measured cost), so at equal compute they get the
    baseline's width, 1.5."""
    jumprelu_bandwidth: float = 0.001
    """JumpReLU's kernel bandwidth ε, relative to the RMS norm of the SAE's input (paper: 0.001 with E‖x‖² = 1)."""
    jumprelu_init_threshold: float = 0.001
    """JumpReLU's initial threshold θ₀, relative to the same norm (paper: 0.001)."""
    auxk_alpha: float = 1 / 32
    """α, the coefficient of the TopK and BatchTopK SAEs' AuxK term (paper: 1/32)."""
    auxk_latents: int = 0
    """k_aux, the dead latents the AuxK term uses per token (0: half the input dimension, the paper's heuristic)."""
    dead_after_tokens: int = 10_000_000
    """A TopK or BatchTopK latent that has not fired for this many training tokens is dead for AuxK (paper: 10M)."""
    sae_seed: int = 0
    """Seed of the SAEs' initialisation and resampling draws: SAE i of a target's sweep starts from sae_seed + i (the
    activation stream and its shuffling follow seed)."""
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
    eval_tokens: Annotated[int, KeyPart.EVAL] = 65_536
    """Held-out activation vectors for L0, FVU, γ and dead/dense fractions."""
    eval_lm_tokens: Annotated[int, KeyPart.EVAL] = 32_768
    """Held-out tokens for loss recovered and Δ LM loss (spliced forward passes)."""
    eval_seq_len: Annotated[int, KeyPart.EVAL] = 128
    """Context length of the evaluation sequences."""
    dense_threshold: Annotated[float, KeyPart.EVAL] = 0.1
    """A latent firing on more than this fraction of tokens counts as dense."""
    external_saes: Annotated[tuple[str, ...], KeyPart.ELSEWHERE] = ()
    """SAEs trained elsewhere, evaluated beside the sweeps: a folder in SAELens' layout or dictionary_learning's
    (ae.pt + config.json), or a SAELens release "<release>:<sae id>" (downloaded from the Hub; the paper profile).
    Each is evaluated at the target its metadata names ("<model>@<hook>"), or at "<subject>@<site>" given after
    " -> " ("path/to/sae -> organism:backdoor@blocks.1.hook_mlp_out")."""
    progress: Annotated[bool, KeyPart.ELSEWHERE] = True
    """Show tqdm progress bars."""
    device: Annotated[str, KeyPart.ELSEWHERE] = "cpu"
    """Where the model runs and the SAEs train ("cpu", "cuda"); part of the cache key (CUDA kernels round differently)."""
    torch_threads: Annotated[int, KeyPart.ELSEWHERE] = 0
    """Intra-op threads for torch in this notebook (0: torch's default). 1 avoids thread-barrier stalls on a shared machine."""
    checkpoint_every: Annotated[int, KeyPart.ELSEWHERE] = 1000
    """Save each sweep's training state every this many steps, so an interrupted sweep resumes (0: never)."""
    members_per_unit: Annotated[int, KeyPart.ELSEWHERE] = 0
    """SAEs of a sweep one Slurm job trains (0: the whole sweep from one activation pass; smaller: more parallel)."""

    def preflight(self, profile) -> list[str]:
        """The organisms the targets name, validated without training (:meth:`NotebookParams.preflight`)."""
        from companion.organism.build import check_organisms

        subjects = [parse_target(t)[0] for t in self.targets]
        return check_organisms([s[len(ORGANISM_PREFIX) :] for s in subjects if s.startswith(ORGANISM_PREFIX)], profile)

    @model_validator(mode="after")
    def _check_sweep(self) -> ParetoParams:
        if min(self.torch_threads, self.checkpoint_every, self.members_per_unit) < 0:
            raise ValueError("torch_threads, checkpoint_every and members_per_unit must be >= 0")
        if not self.targets:
            raise ValueError("targets must name at least one '<subject>@<site>'")
        for t in self.targets:
            subject, site = parse_target(t)
            if not subject.startswith(ORGANISM_PREFIX) and subject not in self.text_datasets:
                raise ValueError(f"target {t!r}: real-model subject {subject!r} needs a text dataset in text_datasets")
        for f in (
            "train_tokens",
            "seq_len",
            "model_batch_size",
            "batch_size",
            "buffer_tokens",
            "eval_tokens",
            "eval_lm_tokens",
            "eval_seq_len",
        ):
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
        if any(not (l >= 0 and math.isfinite(l)) for l in self.lambdas_jumprelu):
            raise ValueError(f"lambdas_jumprelu must be finite λ >= 0, got {self.lambdas_jumprelu}")
        width = round(self.gated_latents * self.successor_width_factor)
        for f in ("topk_ks", "batchtopk_ks"):
            if any(not 1 <= k <= width for k in getattr(self, f)):
                raise ValueError(f"{f} must lie in [1, {width}] (the successors' width), got {getattr(self, f)}")
        if not (
            self.successor_width_factor > 0
            and self.jumprelu_bandwidth > 0
            and self.jumprelu_init_threshold > 0
            and self.auxk_alpha >= 0
            and self.auxk_latents >= 0
            and self.dead_after_tokens >= 1
        ):
            raise ValueError(
                "need successor_width_factor, jumprelu_bandwidth, jumprelu_init_threshold > 0, "
                "auxk_alpha >= 0, auxk_latents >= 0, dead_after_tokens >= 1"
            )
        for ref in self.external_saes:
            _, _, target = ref.partition(" -> ")
            if target:
                parse_target(target)
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        for f in ("warmup_steps", "resample_every", "resample_until", "rewarmup_steps"):
            if getattr(self, f) < 0:
                raise ValueError(f"{f} must be >= 0")
        if not 0 < self.dense_threshold < 1:
            raise ValueError("dense_threshold must be in (0, 1)")
        return self


class ShrinkageParams(ParetoParams):
    """Parameters of notebooks/02_shrinkage_gamma.ipynb: notebook 01's sweep settings plus the toys."""

    toy_lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    """λ values of the one-feature shrinkage toy (paper Fig. 2)."""
    toy_steps: int = 1500
    """Adam steps per toy SAE."""
    perpendicular_parallel: float = 0.05
    """Parallel component of the near-perpendicular example x̂ = a·x + (orthogonal part)."""

    @model_validator(mode="after")
    def _check_toys(self) -> ShrinkageParams:
        if not self.toy_lambdas or any(l < 0 for l in self.toy_lambdas):
            raise ValueError("toy_lambdas must be a non-empty list of λ >= 0")
        if self.toy_steps < 1:
            raise ValueError("toy_steps must be >= 1")
        if not 0 < self.perpendicular_parallel < 1:
            raise ValueError("perpendicular_parallel must be in (0, 1)")
        return self


def key_fields(part: KeyPart, cls: type[ParetoParams] = ParetoParams) -> tuple[str, ...]:
    """The fields of ``cls`` marked ``part``; an unmarked field is TRAIN."""

    def part_of(name: str) -> KeyPart:
        return next((m for m in cls.model_fields[name].metadata if isinstance(m, KeyPart)), KeyPart.TRAIN)

    return tuple(name for name in cls.model_fields if part_of(name) is part)


TRAIN_FIELDS = key_fields(KeyPart.TRAIN)
"""Fields that determine the trained SAEs (the "train" settings of the "sae" cache key)."""
EVAL_FIELDS = key_fields(KeyPart.EVAL)
"""Fields that additionally determine the evaluation (the "sae-eval" cache key)."""


def configure_torch(params: ParetoParams) -> int:
    """Apply ``params.torch_threads`` (if set) to this process; returns the thread count in force."""
    if params.torch_threads:
        torch.set_num_threads(params.torch_threads)
    return torch.get_num_threads()


def parse_target(target: str) -> tuple[str, str]:
    """``"subject@site"`` -> (subject, site)."""
    if target.count("@") != 1:
        raise ValueError(
            f"target {target!r} must look like '<subject>@<hook site>', e.g. 'organism:backdoor@blocks.0.mlp.hook_post'"
        )
    subject, site = target.split("@")
    if not subject or not site:
        raise ValueError(f"target {target!r} has an empty subject or site")
    return subject, site
