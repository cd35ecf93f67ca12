"""Training SAEs with the recipe of Rajamanoharan et al. 2024 (arXiv:2404.16014, App. D): baseline and Gated SAEs,
and beside them their successors (JumpReLU, TopK, BatchTopK; :mod:`companion.sae.successors`) on the same recipe.

* Adam with β1 = 0, β2 = 0.999 (lr 3e-4 in the paper), linear learning-rate warm-up from 0.
* Decoder columns at exactly unit norm: the gradient component parallel to each column is removed before the
  step and the columns are renormalised after it (paper §2).
* Optional dead-latent resampling (the paper uses it; the procedure is that of Bricken et al. 2023,
  "Towards Monosemanticity"): every ``resample_every`` steps, latents that did not fire since the last check
  are re-initialised towards inputs the SAE reconstructs badly (chosen with probability ∝ squared loss), their
  Adam state is reset, and the learning rate drops to 0.1× and re-warms with a cosine ramp over
  ``rewarmup_steps`` (paper App. D: "0.1× lr drop and cosine re-warm-up over 1000 steps").
* A λ sweep per architecture, at equal compute: the baseline gets ``baseline_width_factor`` (1.5) times the
  gated SAE's width, since a gated step costs ~1.5 baseline steps (paper §5.1).
* All SAEs of a sweep step on the same batch, taken from *one* pass over the activation stream.
* The successors get the same optimiser, schedule and unit-norm decoder (a project choice, so that only the
  architecture and its loss differ) but no resampling: their papers keep latents alive otherwise (TopK and
  BatchTopK with the AuxK term; JumpReLU's papers do not resample).  After each step an SAE updates its own
  training statistics (:meth:`~companion.sae.autoencoders.SparseAutoencoder.observe`: TopK's dead-latent counts,
  BatchTopK's inference threshold).

What is minimised is each architecture's ``loss`` method (:mod:`companion.sae.autoencoders`), the one definition.
By default the step is the hand-derived one of :mod:`companion.sae.step` (the same losses and gradients, faster);
:func:`train_sweep` first checks it against ``loss`` for every architecture it trains
(:func:`~companion.sae.step.fast_step_disagreement`) and, where they disagree (an edited loss, say), warns and trains
that architecture with autograd on ``loss``.  ``SAETrainConfig.fast_step = False`` always uses autograd.
Deterministic for a seed: initialisation, resampling draws and the data order are all seeded, and no
parallel reduction with an unspecified order is used.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from pydantic import model_validator
from torch import Tensor

from companion.backbone.config import Config
from companion.models.numerics import Adam
from companion.sae.architectures import ARCHITECTURES, make_sae
from companion.sae.autoencoders import SAELoss, SparseAutoencoder
from companion.sae.checkpoint import Checkpointing
from companion.sae.step import Workspace, fast_step_disagreement, fast_step_of, loss_and_grads
from companion.sae.sweeps import SAESpec


class SAETrainConfig(Config):
    """Optimiser and schedule settings shared by every SAE of a sweep."""

    lr: float = 3e-4
    """Peak Adam learning rate (paper App. D: 3e-4)."""
    beta1: float = 0.0
    """Adam β1 (paper: 0)."""
    beta2: float = 0.999
    """Adam β2 (paper: 0.999)."""
    eps: float = 1e-8
    """Adam ε."""
    warmup_steps: int = 1000
    """Linear learning-rate warm-up from 0 over this many steps."""
    resample_every: int = 0
    """Resample dead latents every this many steps (0: never)."""
    resample_until: int = 0
    """No resampling at or after this step (0: no limit). Bricken et al. resample 4 times early in training."""
    resample_lr_factor: float = 0.1
    """Learning-rate multiplier right after a resampling (paper: 0.1)."""
    rewarmup_steps: int = 1000
    """Cosine re-warm-up length after a resampling (paper: 1000)."""
    resample_inputs: int = 8192
    """How many recent training inputs the resampling draws replacement directions from."""
    resample_encoder_scale: float = 0.2
    """Resampled encoder rows get this times the mean norm of the living rows (Bricken et al.: 0.2)."""
    init_b_dec: Literal["mean", "zero"] = "mean"
    """Initialise b_dec to the mean of the first batch ("mean") or leave it at 0."""
    fast_step: bool = True
    """Use the hand-derived step of companion.sae.step (same maths); False: autograd."""
    log_every: int = 10
    """Record the loss components every this many steps."""

    @model_validator(mode="after")
    def _check(self) -> SAETrainConfig:
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise ValueError(
                f"invalid optimiser settings: lr={self.lr}, betas=({self.beta1}, {self.beta2}), eps={self.eps}"
            )
        if min(self.warmup_steps, self.resample_every, self.resample_until, self.rewarmup_steps) < 0:
            raise ValueError("step counts must be >= 0")
        if not 0 < self.resample_lr_factor <= 1:
            raise ValueError(f"resample_lr_factor must be in (0, 1], got {self.resample_lr_factor}")
        if self.log_every < 1 or self.resample_inputs < 1:
            raise ValueError("log_every and resample_inputs must be >= 1")
        return self


@dataclasses.dataclass
class TrainLog:
    """What happened while training one SAE."""

    step: list[int] = dataclasses.field(default_factory=list)
    """Steps at which the components below were recorded."""
    total: list[float] = dataclasses.field(default_factory=list)
    """Training objective."""
    reconstruction: list[float] = dataclasses.field(default_factory=list)
    """E‖x − x̂‖² (in the normalised units the SAE sees)."""
    sparsity: list[float] = dataclasses.field(default_factory=list)
    """λ·L1 term."""
    auxiliary: list[float] = dataclasses.field(default_factory=list)
    """Auxiliary term: gated's frozen-decoder reconstruction, TopK's and BatchTopK's AuxK (0 for the others)."""
    l0: list[float] = dataclasses.field(default_factory=list)
    """Training-batch L0."""
    lr: list[float] = dataclasses.field(default_factory=list)
    """Learning rate used at that step."""
    resampled: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """(step, number of latents resampled) for each resampling."""
    steps: int = 0
    """Optimiser steps taken."""
    tokens: int = 0
    """Training tokens seen."""
    seconds: float = 0.0
    """Wall-clock seconds spent in this SAE's steps (loss, gradients, optimiser): its step cost, not deterministic."""


class _Member:
    """The per-SAE training state: module, optimiser, schedule, dead-latent counters, log."""

    def __init__(
        self,
        spec: SAESpec,
        d_in: int,
        cfg: SAETrainConfig,
        seed: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        input_rms: float | None = None,
    ):
        self.spec = spec
        self.cfg = cfg
        options = dict(spec.options)
        if input_rms is not None and "input_rms" in inspect.signature(ARCHITECTURES[spec.architecture]).parameters:
            options.setdefault("input_rms", input_rms)  # scale-relative settings (JumpReLU's ε) meet the data's scale
        # Initialised on the CPU (seeded CPU generator), then moved: the same seed gives the same start anywhere.
        self.sae = make_sae(spec.architecture, d_in, spec.n_latents, seed=seed, dtype=dtype, **options).to(device)
        self.opt = Adam(self.sae.parameters(), lr=0.0, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        self.gen = torch.Generator().manual_seed(seed + 7919)
        self.fired = torch.zeros(spec.n_latents, dtype=torch.float64, device=device)
        self.log = TrainLog()
        # The hand-derived step or autograd on the loss; train_sweep turns it off where the check fails.
        self.fast_step = cfg.fast_step and fast_step_of(type(self.sae)) is not None

    def lr_at(self, step: int) -> float:
        c = self.cfg
        lr = c.lr * min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else c.lr
        if self.log.resampled and c.rewarmup_steps:
            t = step - self.log.resampled[-1][0]
            if 0 <= t < c.rewarmup_steps:
                # Cosine ramp from resample_lr_factor·lr back up to lr.
                ramp = 0.5 * (1 - math.cos(math.pi * t / c.rewarmup_steps))
                lr *= c.resample_lr_factor + (1 - c.resample_lr_factor) * ramp
        return lr

    def step(self, x: Tensor, step: int, ws: Workspace) -> SAELoss:
        sae = self.sae
        t0 = time.perf_counter()
        fired = torch.zeros(sae.n_latents, dtype=torch.float64, device=self.fired.device)
        if self.fast_step:
            out = loss_and_grads(sae, x, self.spec.lam, workspace=ws, fire_counts=fired)
        else:
            sae.zero_grad(set_to_none=False)
            out = sae.loss(x, self.spec.lam)
            out.total.backward()
            with torch.no_grad():
                fired = (sae.train_code(x) > 0).sum(0, dtype=torch.float64)
        sae.remove_parallel_decoder_grad_()
        lr = self.lr_at(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        sae.normalize_decoder_()
        sae.observe(fired, x.shape[0], out)
        self.fired += fired
        self.log.seconds += time.perf_counter() - t0
        if step % self.cfg.log_every == 0:
            L = self.log
            L.step.append(step)
            L.total.append(float(out.total.detach()))
            L.reconstruction.append(float(out.reconstruction.detach()))
            L.sparsity.append(float(out.sparsity.detach()))
            L.auxiliary.append(float(out.auxiliary.detach()))
            L.l0.append(float(out.l0.detach()))
            L.lr.append(lr)
        self.log.steps += 1
        self.log.tokens += x.shape[0]
        return out

    @torch.no_grad()
    def resample(self, step: int, recent: Tensor) -> int:
        """Bricken et al. 2023 resampling of latents that have not fired since the last check (baseline and gated)."""
        if not self.sae.resample_dead:
            return 0
        dead = torch.nonzero(self.fired == 0).squeeze(1)
        self.fired.zero_()
        n_dead = int(dead.numel())
        if n_dead == 0:
            self.log.resampled.append((step, 0))
            return 0
        sae = self.sae
        x_hat = sae(recent)
        loss = (recent - x_hat).pow(2).sum(-1)
        probs = loss.pow(2).double().cpu()  # drawn with the member's seeded CPU generator
        if float(probs.sum()) <= 0:
            probs = torch.ones_like(probs)
        pick = torch.multinomial(probs, n_dead, replacement=n_dead > recent.shape[0], generator=self.gen)
        pick = pick.to(recent.device)
        v = recent[pick] - sae.b_dec  # as the encoder sees the input
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        enc_name = "W_gate" if sae.architecture == "gated" else "W_enc"
        W = getattr(sae, enc_name)
        alive = torch.ones(sae.n_latents, dtype=torch.bool, device=W.device)
        alive[dead] = False
        scale = W[alive].norm(dim=1).mean() if bool(alive.any()) else W.new_tensor(1.0)
        sae.W_dec[:, dead] = v.T
        W[dead] = v * self.cfg.resample_encoder_scale * scale
        zeroed = ["b_gate", "r_mag", "b_mag"] if sae.architecture == "gated" else ["b_enc"]
        for name in zeroed:
            getattr(sae, name)[dead] = 0.0
        # Reset Adam's moments for every entry we overwrote (Bricken et al.).
        for p, idx in [(sae.W_dec, (slice(None), dead)), (W, dead), *[(getattr(sae, n), dead) for n in zeroed]]:
            st = self.opt.state.get(p)
            if st:
                for k in ("exp_avg", "exp_avg_sq"):
                    if k in st:
                        st[k][idx] = 0.0
        self.log.resampled.append((step, n_dead))
        return n_dead


@dataclasses.dataclass
class TrainedSAE:
    """One trained SAE and how it was made."""

    spec: SAESpec
    """Architecture, width and λ."""
    sae: SparseAutoencoder
    """The trained module (eval mode)."""
    input_scale: float
    """The SAE sees ``x · input_scale`` (a constant making E‖x‖² = d on the first batch); reconstruct raw
    activations with :meth:`reconstruct`."""
    log: TrainLog
    """Training history."""

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """x̂ for raw activations ``x [..., d]`` (scales in and out)."""
        return self.sae(x * self.input_scale) / self.input_scale

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes for raw activations ``x [..., d]``."""
        return self.sae.encode(x * self.input_scale)


def train_sweep(
    batches: Iterable[Tensor],
    specs: Sequence[SAESpec],
    cfg: SAETrainConfig,
    *,
    seed: int = 0,
    normalize: bool = True,
    max_steps: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "SAE sweep",
    checkpoint: Checkpointing | None = None,
) -> list[TrainedSAE]:
    """Train every SAE in ``specs`` on one pass over ``batches`` (each ``[B, d]``): every batch steps every SAE.

    ``normalize`` multiplies all inputs by one constant, chosen on the first batch so that E‖x‖² = d, which
    makes λ ranges transferable between sites; it changes no reported metric (L0, loss recovered and γ are
    scale-free or measured in the model's own units).  SAE i is initialised with seed ``seed + i``.  Batches
    may live on the CPU; they are moved to ``device``, where the SAEs are trained.  With ``checkpoint`` the state is
    saved every ``checkpoint.every`` steps and a run finding a checkpoint resumes from it, replaying the batches
    before it without training on them (:mod:`companion.sae.checkpoint`): the result is the uninterrupted one.
    """
    from tqdm.auto import tqdm

    if not specs:
        raise ValueError("no SAEs to train")
    it = iter(batches)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("the activation stream is empty") from None
    if first.ndim != 2:
        raise ValueError(f"batches must be [B, d], got {tuple(first.shape)}")
    d = first.shape[1]
    scale = 1.0
    if normalize:
        ms = float(first.double().pow(2).sum(1).mean())
        if ms <= 0:
            raise ValueError("the first batch is all zeros: cannot normalise")
        scale = math.sqrt(d / ms)
    rms = math.sqrt(float((first.double() * scale).pow(2).sum(1).mean()))
    members = [
        _Member(s, d, cfg, seed + i, dtype=first.dtype, device=device, input_rms=rms) for i, s in enumerate(specs)
    ]
    if cfg.fast_step:
        fast = {cls: checked_fast_step(cls) for cls in dict.fromkeys(type(m.sae) for m in members)}
        for m in members:
            m.fast_step = fast[type(m.sae)]
    if cfg.init_b_dec == "mean":
        mean = first.to(device).mean(0) * scale
        for m in members:
            with torch.no_grad():
                m.sae.b_dec.copy_(mean)
    resume = checkpoint.restore(members, scale, log_from_dict) if checkpoint is not None else 0
    ws = Workspace()
    recent: list[Tensor] = []
    n_recent = 0
    bar = tqdm(total=max_steps, initial=resume, desc=desc, unit="step", disable=not progress)
    if resume:
        assert checkpoint is not None  # a nonzero resume step only comes from a checkpoint
        bar.write(f"{desc}: resuming from the checkpoint at step {resume} ({checkpoint.folder})")
    step = 0

    def stream():
        yield first
        yield from it

    for x in stream():
        if max_steps is not None and step >= max_steps:
            break
        x = x.to(device)
        x = (x * scale) if scale != 1.0 else x
        if cfg.resample_every:
            recent.append(x)
            n_recent += x.shape[0]
            while recent and n_recent - recent[0].shape[0] >= cfg.resample_inputs:
                n_recent -= recent.pop(0).shape[0]
        if step < resume:  # trained on before the checkpoint: replayed only to reach the same stream position
            step += 1
            continue
        for m in members:
            m.step(x, step, ws)
        step += 1
        if (
            cfg.resample_every
            and step % cfg.resample_every == 0
            and (not cfg.resample_until or step < cfg.resample_until)
        ):
            pool = torch.cat(recent)[-cfg.resample_inputs :]
            for m in members:
                m.resample(step, pool)
        bar.update(1)
        if step % 20 == 0 and members:
            bar.set_postfix_str(
                "L0 "
                + " ".join(
                    f"{_SHORT.get(m.spec.architecture, m.spec.architecture)}{m.log.l0[-1]:.0f}"
                    for m in members
                    if m.log.l0
                )
            )
        if checkpoint is not None and checkpoint.due(step, max_steps):
            checkpoint.save(step, members, scale)
    bar.close()
    if step == 0:
        raise ValueError("no training steps were taken")
    out = []
    for m in members:
        m.sae.eval()
        m.sae.requires_grad_(False)
        out.append(TrainedSAE(spec=m.spec, sae=m.sae, input_scale=scale, log=m.log))
    return out


_SHORT = {"baseline": "b", "gated": "g", "jumprelu": "j", "topk": "t", "batchtopk": "bt"}
"""Architecture initials in the progress bar's L0 readout."""


def checked_fast_step(cls: type[SparseAutoencoder]) -> bool:
    """Whether ``cls`` can train with its hand-derived fast step: it has one and it agrees with ``cls.loss``.

    When it disagrees (``loss`` or ``encode`` was edited, or the fast step was), a warning says where, and training
    uses autograd on ``loss`` — the definition — instead.
    """
    if fast_step_of(cls) is None:
        return False
    problem = fast_step_disagreement(cls)
    if problem is None:
        return True
    warnings.warn(
        f"{problem}. Training {cls.__name__} with autograd on {cls.__name__}.loss instead (slower); "
        "update its fast step in companion.sae.step to match the loss to get the speed back.",
        stacklevel=3,
    )
    return False


def log_to_dict(log: TrainLog) -> dict[str, Any]:
    """A TrainLog as plain JSON."""
    return dataclasses.asdict(log)


def log_from_dict(d: dict[str, Any]) -> TrainLog:
    """Inverse of :func:`log_to_dict`."""
    d = dict(d)
    d["resampled"] = [tuple(r) for r in d.get("resampled", [])]
    return TrainLog(**d)
