"""Baseline (ReLU + L1) and Gated sparse autoencoders, as defined in Rajamanoharan et al. 2024.

Paper: S. Rajamanoharan, A. Conmy, L. Smith, T. Lieberum, V. Varma, J. Kramár, R. Shah, N. Nanda,
"Improving Dictionary Learning with Gated Sparse Autoencoders", Google DeepMind 2024, arXiv:2404.16014
(corrected version).  Shapes follow the paper: ``W_enc``/``W_gate`` are ``[M, d]`` (one row per latent),
``W_dec`` is ``[d, M]`` (one *column* per latent), ``x`` is ``[..., d]``, codes are ``[..., M]``.

Baseline SAE (paper §2)::

    f(x)  = ReLU(W_enc (x − b_dec) + b_enc)
    x̂(f)  = W_dec f + b_dec
    L     = ‖x − x̂(f(x))‖² + λ ‖f(x)‖₁

Gated SAE (paper §3.1 architecture, §3.2 loss)::

    π_gate(x) = W_gate (x − b_dec) + b_gate
    f̃(x)      = 1[π_gate(x) > 0] ⊙ ReLU(W_mag (x − b_dec) + b_mag),   W_mag[i,:] = exp(r_mag[i]) · W_gate[i,:]
    L_gated   = ‖x − x̂(f̃(x))‖² + λ ‖ReLU(π_gate(x))‖₁ + ‖x − x̂_frozen(ReLU(π_gate(x)))‖²

where ``x̂_frozen`` is the decoder with *both* ``W_dec`` and the output ``b_dec`` detached (the input centring
``x − b_dec`` stays differentiable).  The L1 goes on ``ReLU(π_gate)`` only, never on ``f̃`` and never through
the Heaviside step (which has no gradient).

Conventions (say them once, here):

* Norms are summed over the ``d`` feature dimensions and *averaged over tokens* (the batch).  The paper's
  App. D divides its L2 term by ``d``; with Adam (invariant to a constant rescaling of the loss) that is the
  same as our loss with ``λ_ours = d · λ_paper``, which is why λ sweeps are per architecture and per site.
* Decoder columns are kept at exactly unit norm (paper §2): :meth:`SparseAutoencoder.remove_parallel_decoder_grad_`
  before each optimiser step, :meth:`SparseAutoencoder.normalize_decoder_` after it.  No decoder-norm factor
  appears in the sparsity penalty (one popular library adds one; the paper does not).
* Initialisation (not fixed by the paper; our choice, identical for both architectures): decoder columns are
  random unit vectors, the encoder (``W_enc`` / ``W_gate``) starts as their transpose, all biases and ``r_mag``
  start at 0.  The trainer may set ``b_dec`` to the data mean before the first step.

Each architecture's loss is defined once, here, as a plain autograd formula (its ``loss`` method, with the
equation in the docstring): this is the definition that trains.  :mod:`companion.sae.step` holds hand-derived fast
steps (the same losses and gradients with less work); every training run first checks the fast step of each
architecture against its ``loss`` (:func:`companion.sae.step.fast_step_disagreement`) and, if they disagree — an
edited loss, say — trains with autograd on ``loss`` and warns.  A new architecture needs only ``encode`` and
``loss``; a fast step is optional.  The successors of the gated SAE (JumpReLU, TopK, BatchTopK) implement the same
interface in :mod:`companion.sae.successors`; :mod:`companion.sae.architectures` names them all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclasses.dataclass(frozen=True)
class SAELoss:
    """The loss of one batch and its components (all scalars, averaged over the batch's tokens)."""

    total: Tensor
    """The optimised objective: ``reconstruction + sparsity + auxiliary`` (differentiable)."""
    reconstruction: Tensor
    """E‖x − x̂‖² with the SAE's real code (f for baseline, f̃ for gated), summed over dims."""
    sparsity: Tensor
    """λ · E‖·‖₁ — of f for baseline, of ReLU(π_gate) for gated; λ · E‖f‖₀ for JumpReLU; 0 for TopK and
    BatchTopK, whose sparsity is k (differentiable, already weighted by λ)."""
    auxiliary: Tensor
    """Gated: E‖x − (W_dec.detach() ReLU(π_gate) + b_dec.detach())‖² (coefficient 1); TopK and BatchTopK: α times
    the dead latents' AuxK reconstruction of the error; 0 for baseline and JumpReLU."""
    l1: Tensor
    """The unweighted norm that ``sparsity`` is λ times (‖f‖₁, ‖ReLU(π_gate)‖₁, or JumpReLU's ‖f‖₀); E‖f‖₁ of the
    code for TopK and BatchTopK (detached; for logging)."""
    l0: Tensor
    """Mean number of non-zero latents of the final code per token (detached; for logging)."""
    batch_threshold: Tensor | None = None
    """BatchTopK only: the smallest non-zero value of the batch's code, which its inference threshold averages over
    training (detached); None for the other architectures."""


def check_input(x: Tensor, d_in: int) -> None:
    """Raise a clear error unless ``x`` is a floating-point tensor of shape ``[..., d_in]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape [..., {d_in}], got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != d_in:
        raise ValueError(f"expected input of shape [..., {d_in}], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point input, got {x.dtype}")


def check_lam(lam: float) -> float:
    """``lam`` as a float, or a clear error unless it is a finite number ≥ 0."""
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"sparsity coefficient λ must be a finite number ≥ 0, got {lam}")
    return lam


class SparseAutoencoder(nn.Module):
    """Shared interface of every architecture: encode / decode / forward / loss, unit-norm decoder columns.

    Subclasses set ``architecture`` and implement :meth:`init_encoder` (their parameters besides the decoder),
    :meth:`encode` and :meth:`loss` (the training objective, the one definition of it).
    """

    architecture: ClassVar[str] = ""
    sparsity_setting: ClassVar[str] = "lam"
    """What sets the sparsity: "lam" (a penalty weight λ passed to :meth:`loss`) or "k" (a constructor argument;
    :meth:`loss` then takes λ = 0 only)."""
    resample_dead: ClassVar[bool] = True
    """Whether the trainer's dead-latent resampling (Bricken et al. 2023, the gated paper's recipe) applies."""
    check_options: ClassVar[dict[str, Any]] = {}
    """Constructor arguments of the small SAE :func:`companion.sae.step.fast_step_disagreement` builds."""

    def __init__(self, d_in: int, n_latents: int, *, seed: int | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if int(d_in) < 1 or int(n_latents) < 1:
            raise ValueError(f"d_in and n_latents must be positive, got d_in={d_in}, n_latents={n_latents}")
        self.d_in = int(d_in)
        self.n_latents = int(n_latents)
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        w = torch.randn(self.d_in, self.n_latents, generator=gen, dtype=dtype)
        w /= w.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(w)
        """Decoder ``[d, M]``; column i is latent i's unit-norm dictionary direction."""
        self.b_dec = nn.Parameter(torch.zeros(self.d_in, dtype=dtype))
        """Decoder (output) bias ``[d]``, also subtracted from the input before encoding."""
        self.init_encoder(dtype)

    # ----------------------------------------------------------------- interface
    def init_encoder(self, dtype: torch.dtype) -> None:
        """Create the architecture's own parameters (called by ``__init__`` once the decoder exists)."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """The sparse code ``[..., M]`` of ``x [..., d]`` (f for baseline, f̃ for gated)."""
        raise NotImplementedError

    def train_code(self, x: Tensor) -> Tensor:
        """The code ``[B, M]`` the training loss uses for a batch ``x [B, d]`` (the same as :meth:`encode` unless the
        architecture trains with another code than it infers with, as BatchTopK does)."""
        return self.encode(x)

    def observe(self, fired: Tensor, n_tokens: int, out: SAELoss) -> None:
        """Update training statistics after an optimiser step on a batch of ``n_tokens`` on which latent i's training
        code was non-zero ``fired[i]`` times (``out``: that step's loss).  Nothing for baseline and gated."""

    def randomize_training_state_(self, generator: torch.Generator) -> None:
        """Put the training statistics :meth:`observe` keeps in a random state (for the fast-step check)."""

    def decode(self, f: Tensor) -> Tensor:
        """x̂(f) = W_dec f + b_dec: ``[..., M]`` -> ``[..., d]``."""
        if f.shape[-1] != self.n_latents:
            raise ValueError(f"expected a code of shape [..., {self.n_latents}], got {tuple(f.shape)}")
        return f @ self.W_dec.T + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction x̂(x) ``[..., d]``."""
        return self.decode(self.encode(x))

    def loss(self, x: Tensor, lam: float) -> SAELoss:
        """The paper's training loss of a batch ``x [B, d]`` with sparsity coefficient ``lam``.

        The one definition of the objective: training minimises this (through a fast step only where one exists
        and agrees with it, :mod:`companion.sae.step`).
        """
        raise NotImplementedError

    # ----------------------------------------------------------------- unit-norm decoder (paper §2)
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder column to exactly unit L2 norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Remove from ``W_dec.grad`` the component parallel to each (unit-norm) column (before each step).

        For unit columns w_i the projection is g_i ← g_i − (g_i · w_i) w_i, so a small step moves w_i
        tangentially to the unit sphere and the renormalisation after the step changes it only at second order.
        """
        g = self.W_dec.grad
        if g is None:
            return
        w = self.W_dec
        g.sub_(w * (g * w).sum(dim=0, keepdim=True))

    # ----------------------------------------------------------------- bookkeeping
    def config(self) -> dict[str, Any]:
        """What is needed to rebuild the module before loading a state dict."""
        return {"architecture": self.architecture, "d_in": self.d_in, "n_latents": self.n_latents}

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, n_latents={self.n_latents}"


class BaselineSAE(SparseAutoencoder):
    """ReLU SAE trained with an L1 penalty (paper §2): f = ReLU(W_enc(x − b_dec) + b_enc)."""

    architecture: ClassVar[str] = "baseline"

    def init_encoder(self, dtype: torch.dtype) -> None:
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())
        """Encoder ``[M, d]`` (initialised to the decoder's transpose)."""
        self.b_enc = nn.Parameter(torch.zeros(self.n_latents, dtype=dtype))
        """Encoder bias ``[M]``."""

    def pre_activation(self, x: Tensor) -> Tensor:
        """W_enc (x − b_dec) + b_enc, ``[..., M]``."""
        check_input(x, self.d_in)
        return (x - self.b_dec) @ self.W_enc.T + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(self.pre_activation(x))

    def loss(self, x: Tensor, lam: float) -> SAELoss:
        """L = E‖x − x̂(f(x))‖² + λ E‖f(x)‖₁ (paper §2), expectations over the batch's tokens."""
        lam = check_lam(lam)
        check_input(x, self.d_in)
        f = self.encode(x)
        x_hat = self.decode(f)
        rec = (x - x_hat).pow(2).sum(-1).mean()
        l1 = f.sum(-1).mean()  # f ≥ 0, so ‖f‖₁ = Σ f
        sparsity = lam * l1
        zero = rec.new_zeros(())
        return SAELoss(
            total=rec + sparsity,
            reconstruction=rec,
            sparsity=sparsity,
            auxiliary=zero,
            l1=l1.detach(),
            l0=(f > 0).sum(-1).to(x.dtype).mean().detach(),
        )


class GatedSAE(SparseAutoencoder):
    """Gated SAE with tied gate/magnitude encoders (paper §3): f̃ = 1[π_gate > 0] ⊙ ReLU(π_mag)."""

    architecture: ClassVar[str] = "gated"

    def init_encoder(self, dtype: torch.dtype) -> None:
        self.W_gate = nn.Parameter(self.W_dec.detach().T.clone())
        """Gate encoder ``[M, d]``; the magnitude encoder is tied to it through ``r_mag``."""
        self.b_gate = nn.Parameter(torch.zeros(self.n_latents, dtype=dtype))
        """Gate bias ``[M]`` (gets gradient only from the sparsity and auxiliary terms)."""
        self.r_mag = nn.Parameter(torch.zeros(self.n_latents, dtype=dtype))
        """Log-scale ``[M]`` of the tied magnitude encoder: W_mag[i,:] = exp(r_mag[i]) · W_gate[i,:]."""
        self.b_mag = nn.Parameter(torch.zeros(self.n_latents, dtype=dtype))
        """Magnitude bias ``[M]``, separate from ``b_gate``."""

    @property
    def W_mag(self) -> Tensor:
        """The tied magnitude encoder exp(r_mag) ⊙ W_gate, ``[M, d]``."""
        return torch.exp(self.r_mag)[:, None] * self.W_gate

    def gate_pre_activation(self, x: Tensor) -> Tensor:
        """π_gate(x) = W_gate (x − b_dec) + b_gate, ``[..., M]``."""
        check_input(x, self.d_in)
        return (x - self.b_dec) @ self.W_gate.T + self.b_gate

    def magnitude_pre_activation(self, x: Tensor) -> Tensor:
        """W_mag (x − b_dec) + b_mag, ``[..., M]``."""
        check_input(x, self.d_in)
        return (x - self.b_dec) @ self.W_mag.T + self.b_mag

    def encode(self, x: Tensor) -> Tensor:
        return self.gated_code(x, self.gate_pre_activation(x))

    def gated_code(self, x: Tensor, pi_gate: Tensor) -> Tensor:
        """f̃ = 1[π_gate > 0] ⊙ ReLU(W_mag (x − b_dec) + b_mag) ``[..., M]`` given π_gate(x): encode's and loss's."""
        # The Heaviside step is a comparison: no gradient reaches π_gate through f̃, as in the paper.
        return (pi_gate > 0).to(x.dtype) * torch.relu(self.magnitude_pre_activation(x))

    def jumprelu_threshold(self) -> Tensor:
        """θ = b_mag − exp(r_mag) ⊙ b_gate ``[M]``: with tied weights f̃_i = 1[π_mag,i > θ_i]·π_mag,i (App. E)."""
        return (self.b_mag - torch.exp(self.r_mag) * self.b_gate).detach()

    def loss(self, x: Tensor, lam: float) -> SAELoss:
        """L_gated = E‖x − x̂(f̃)‖² + λ E‖ReLU(π_gate)‖₁ + E‖x − x̂_frozen(ReLU(π_gate))‖² (paper §3.2)."""
        lam = check_lam(lam)
        check_input(x, self.d_in)
        pi_gate = self.gate_pre_activation(x)
        f_tilde = self.gated_code(x, pi_gate)
        x_hat = self.decode(f_tilde)
        rec = (x - x_hat).pow(2).sum(-1).mean()
        gate_act = torch.relu(pi_gate)
        l1 = gate_act.sum(-1).mean()
        sparsity = lam * l1
        # Stop-gradient on the decoder (W_dec and the output b_dec) in the auxiliary path only (paper §3.2;
        # unfreezing it is the Fig. 8 ablation that hurts).  x − b_dec inside π_gate stays differentiable.
        x_hat_frozen = gate_act @ self.W_dec.detach().T + self.b_dec.detach()
        aux = (x - x_hat_frozen).pow(2).sum(-1).mean()
        return SAELoss(
            total=rec + sparsity + aux,
            reconstruction=rec,
            sparsity=sparsity,
            auxiliary=aux,
            l1=l1.detach(),
            l0=(f_tilde > 0).sum(-1).to(x.dtype).mean().detach(),
        )
