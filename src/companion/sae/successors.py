"""The gated SAE's successors: JumpReLU, TopK and BatchTopK SAEs, each trained with the loss its paper states.

Same interface, shapes and conventions as :mod:`companion.sae.autoencoders` (``W_enc [M, d]``, ``W_dec [d, M]`` with
unit-norm columns, losses summed over the ``d`` dimensions and averaged over tokens, inputs scaled to E‖x‖² = d by
the trainer).  docs/references.md ("SAE successors") states the equations and where each comes from.

JumpReLU (Rajamanoharan, Lieberum, Sonnerat, Conmy, Varma, Kramár, Nanda 2024, "Jumping Ahead", arXiv:2407.14435,
§3 architecture and loss, §4 training)::

    z = W_enc x + b_enc                     (no input centring: the paper's encoder)
    f(x) = JumpReLU_θ(z) = z ⊙ H(z − θ),     θ = exp(log θ) > 0 per latent, H the Heaviside step
    L = ‖x − x̂(f(x))‖² + λ ‖f(x)‖₀,          ‖f(x)‖₀ = Σ_i H(z_i − θ_i)

H has no useful derivative, so training uses the paper's straight-through pseudo-derivatives with the rectangle
kernel K(u) = 1[−½ < u < ½] and bandwidth ε:  ð/ðθ JumpReLU_θ(z) := −(θ/ε) K((z − θ)/ε),
ð/ðθ H(z − θ) := −(1/ε) K((z − θ)/ε); with respect to z, JumpReLU passes H(z − θ) and the step passes nothing.
The paper trains log θ (its gradient is θ times θ's) and sets ε = 0.001 and θ₀ = 0.001 for inputs normalised to
E‖x‖² = 1; both are given here in those units, relative to the input's RMS norm (√d after the trainer's scaling).

TopK (Gao, Dupré la Tour, Tillman, Goh, Troll, Radford, Sutskever, Leike, Wu 2024, arXiv:2406.04093, §2.3 TopK,
§2.4 and App. A.2 the AuxK loss)::

    z = W_enc (x − b_dec) + b_enc,   f = ReLU(TopK_k(z))   (the k largest entries of each token, others 0)
    L = ‖x − x̂(f)‖² + α ‖e − ê‖²,    e = sg(x − x̂),  ê = W_dec ReLU(TopK_{k_aux}(z restricted to dead latents))

L0 = k is chosen, not trained.  A latent is dead when it has not fired for ``dead_tokens`` training tokens (the paper:
10M); ê has no bias (the residual already carries b_dec).  α = 1/32 and k_aux = d/2 (a power of two near d/2 in the
paper) by default.  The encoder bias and the ReLU on the kept values are those of the paper's released code (and of
dictionary_learning and SAELens).

BatchTopK (Bussmann, Leask, Nanda 2024, arXiv:2412.06410, §3): in training the k·B largest entries of ReLU(z) over the
whole batch of B tokens are kept (a token's L0 varies, the batch mean is at most k), with the TopK loss and AuxK
term.  At inference one threshold θ = E_batches[min{f_bj : f_bj > 0}] replaces the batch-level selection:
f = ReLU(z) ⊙ H(ReLU(z) − θ), a per-token JumpReLU with one θ for every latent.  θ is estimated during training as an
exponential moving average of each batch's smallest kept value, with momentum ``threshold_momentum`` = 0.9 by default:
the last ~10 batches, so that θ is the final model's even in a run of a few hundred steps, where the kept values still
drift (dictionary_learning averages with 0.999 from step 1000, SAELens with 0.99; with a lagging θ the inference L0
misses k).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from companion.models.numerics import linear
from companion.sae.autoencoders import SAELoss, SparseAutoencoder, check_input, check_lam


def _encoder_product(x: Tensor, W_enc: Tensor) -> Tensor:
    """x W_encᵀ for x ``[..., d]`` through :func:`companion.models.numerics.linear`, the product the fast steps use:
    the code's support (z > θ, the top k) is decided on the same bits by the loss and by the fast step."""
    return linear(x.reshape(-1, x.shape[-1]), W_enc).reshape(*x.shape[:-1], W_enc.shape[0])


PAPER_BANDWIDTH = 1e-3
"""JumpReLU's ε (and initial θ) in the paper's units, inputs normalised to E‖x‖² = 1."""


def rectangle(u: Tensor) -> Tensor:
    """The rectangle kernel K(u) = 1[−½ < u < ½] (JumpReLU paper §4)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _sum_to(g: Tensor, shape: torch.Size) -> Tensor:
    """Sum a broadcast gradient ``[..., M]`` back to the parameter's shape ``[M]``."""
    return g.reshape(-1, g.shape[-1]).sum(0).reshape(shape)


class JumpReLUFunction(torch.autograd.Function):
    """JumpReLU_θ(z) = z ⊙ H(z − θ) with the paper's pseudo-derivatives: ∂/∂z = H(z − θ), ð/ðθ = −(θ/ε) K((z − θ)/ε)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        d_theta = -(theta / eps) * rectangle((z - theta) / eps) * g
        return g * (z > theta).to(g.dtype), _sum_to(d_theta, theta.shape), None


class StepFunction(torch.autograd.Function):
    """H(z − θ) with the paper's pseudo-derivatives: nothing to z, ð/ðθ = −(1/ε) K((z − θ)/ε)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        d_theta = -(1.0 / eps) * rectangle((z - theta) / eps) * g
        return None, _sum_to(d_theta, theta.shape), None


class JumpReLUSAE(SparseAutoencoder):
    """JumpReLU SAE (arXiv:2407.14435): f = z ⊙ H(z − θ), z = W_enc x + b_enc, trained on ‖x − x̂‖² + λ‖f‖₀."""

    architecture: ClassVar[str] = "jumprelu"
    resample_dead: ClassVar[bool] = False
    check_options: ClassVar[dict[str, Any]] = {"bandwidth": 0.2, "init_threshold": 0.2}

    def __init__(
        self,
        d_in: int,
        n_latents: int,
        *,
        bandwidth: float = PAPER_BANDWIDTH,
        init_threshold: float = PAPER_BANDWIDTH,
        input_rms: float | None = None,
        **base: Any,
    ):
        """``bandwidth`` (ε) and ``init_threshold`` (θ₀) are in the paper's units, fractions of the input's RMS norm
        √E‖x‖² (the paper normalises it to 1); ``input_rms`` is that norm, by default √d_in (the trainer scales
        activations to E‖x‖² = d).  ``base``: :class:`SparseAutoencoder`'s ``seed`` and ``dtype``."""
        rms = float(input_rms) if input_rms is not None else math.sqrt(max(int(d_in), 1))
        if not (bandwidth > 0 and init_threshold > 0 and rms > 0):
            raise ValueError(
                f"bandwidth, init_threshold and input_rms must be > 0, got {bandwidth}, {init_threshold}, {input_rms}"
            )
        self.bandwidth = float(bandwidth) * rms
        """Bandwidth ε of the rectangle kernel, in the units of the SAE's input."""
        self._init_threshold = float(init_threshold) * rms
        super().__init__(d_in, n_latents, **base)

    def init_encoder(self, dtype: torch.dtype) -> None:
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())
        """Encoder ``[M, d]`` (initialised to the decoder's transpose)."""
        self.b_enc = nn.Parameter(torch.zeros(self.n_latents, dtype=dtype))
        """Encoder bias ``[M]``."""
        self.log_threshold = nn.Parameter(torch.ones(self.n_latents, dtype=dtype) * math.log(self._init_threshold))
        """log θ ``[M]``: the paper trains the threshold through its logarithm, which keeps θ > 0."""

    @property
    def threshold(self) -> Tensor:
        """θ = exp(log θ) ``[M]``."""
        return torch.exp(self.log_threshold)

    def pre_activation(self, x: Tensor) -> Tensor:
        """z = W_enc x + b_enc, ``[..., M]``."""
        check_input(x, self.d_in)
        return _encoder_product(x, self.W_enc) + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        z = self.pre_activation(x)
        return z * (z > self.threshold).to(z.dtype)

    def loss(self, x: Tensor, lam: float) -> SAELoss:
        """L = E‖x − x̂(f(x))‖² + λ E Σ_i H(z_i − θ_i) with the straight-through pseudo-derivatives (arXiv:2407.14435)."""
        lam = check_lam(lam)
        check_input(x, self.d_in)
        z = self.pre_activation(x)
        theta = self.threshold
        f = JumpReLUFunction.apply(z, theta, self.bandwidth)
        rec = (x - self.decode(f)).pow(2).sum(-1).mean()
        l0 = StepFunction.apply(z, theta, self.bandwidth).sum(-1).mean()
        sparsity = lam * l0
        zero = rec.new_zeros(())
        return SAELoss(
            total=rec + sparsity, reconstruction=rec, sparsity=sparsity, auxiliary=zero, l1=l0.detach(), l0=l0.detach()
        )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "bandwidth": self.bandwidth}


class TopKSAE(SparseAutoencoder):
    """TopK SAE (arXiv:2406.04093): f = ReLU(TopK_k(W_enc(x − b_dec) + b_enc)), trained on MSE + α·AuxK."""

    architecture: ClassVar[str] = "topk"
    sparsity_setting: ClassVar[str] = "k"
    resample_dead: ClassVar[bool] = False
    check_options: ClassVar[dict[str, Any]] = {"k": 5, "aux_k": 6, "dead_tokens": 100}
    tokens_since_fired: Tensor  # a buffer (register_buffer in init_encoder), which the type checker cannot see

    def __init__(
        self,
        d_in: int,
        n_latents: int,
        *,
        k: int = 32,
        aux_k: int | None = None,
        aux_alpha: float = 1 / 32,
        dead_tokens: int = 10_000_000,
        **base: Any,
    ):
        """``base``: :class:`SparseAutoencoder`'s ``seed`` and ``dtype``."""
        if not 1 <= int(k) <= int(n_latents):
            raise ValueError(f"k must be in [1, n_latents = {n_latents}], got {k}")
        self.k = int(k)
        """Latents kept per token (TopK) or on average per token of a batch (BatchTopK)."""
        self.aux_k = int(aux_k) if aux_k is not None else max(int(d_in) // 2, 1)
        """k_aux: dead latents that reconstruct the error in the AuxK term (paper: a power of two near d/2)."""
        self.aux_alpha = float(aux_alpha)
        """α, the AuxK term's coefficient (paper: 1/32)."""
        self.dead_tokens = int(dead_tokens)
        """A latent that has not fired for this many training tokens is dead (paper: 10M)."""
        if self.aux_k < 1 or self.aux_alpha < 0 or self.dead_tokens < 1:
            raise ValueError(
                f"need aux_k >= 1, aux_alpha >= 0, dead_tokens >= 1; got {aux_k}, {aux_alpha}, {dead_tokens}"
            )
        super().__init__(d_in, n_latents, **base)

    def init_encoder(self, dtype: torch.dtype) -> None:
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())
        """Encoder ``[M, d]`` (initialised to the decoder's transpose)."""
        self.b_enc = nn.Parameter(torch.zeros(self.n_latents, dtype=dtype))
        """Encoder bias ``[M]``."""
        self.register_buffer("tokens_since_fired", torch.zeros(self.n_latents, dtype=torch.int64), persistent=False)

    def pre_activation(self, x: Tensor) -> Tensor:
        """z = W_enc (x − b_dec) + b_enc, ``[..., M]``."""
        check_input(x, self.d_in)
        return _encoder_product(x - self.b_dec, self.W_enc) + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        return self.code_of(self.pre_activation(x))

    def code_of(self, z: Tensor) -> Tensor:
        """The training code of pre-activations ``z [B, M]``: here ReLU of each token's k largest, 0 elsewhere."""
        vals, idx = z.topk(self.k, dim=-1)
        return torch.zeros_like(z).scatter(-1, idx, torch.relu(vals))

    def train_code(self, x: Tensor) -> Tensor:
        return self.code_of(self.pre_activation(x))

    def dead(self) -> Tensor:
        """Latents ``[M]`` (bool) that have not fired in the last ``dead_tokens`` training tokens."""
        return self.tokens_since_fired >= self.dead_tokens

    def aux_code(self, z: Tensor, dead: Tensor) -> Tensor:
        """ReLU of each token's k_aux largest pre-activations among the dead latents, 0 elsewhere (AuxK)."""
        n = min(self.aux_k, int(dead.sum()))
        vals, idx = torch.where(dead, z, z.new_tensor(-math.inf)).topk(n, dim=-1)
        return torch.zeros_like(z).scatter(-1, idx, torch.relu(vals))

    def loss(self, x: Tensor, lam: float = 0.0) -> SAELoss:
        """L = E‖x − x̂(f)‖² + α E‖e − ê‖², e = sg(x − x̂), ê = W_dec f_aux (arXiv:2406.04093 §2.3, App. A.2).

        ``lam`` must be 0: the sparsity is k, a constructor argument.
        """
        if check_lam(lam) != 0:
            raise ValueError(
                f"{type(self).__name__} has no sparsity penalty (its sparsity is k = {self.k}); got λ = {lam}"
            )
        check_input(x, self.d_in)
        z = self.pre_activation(x)
        f = self.code_of(z)
        err = x - self.decode(f)
        rec = err.pow(2).sum(-1).mean()
        aux = rec.new_zeros(())
        dead = self.dead()
        if self.aux_alpha > 0 and bool(dead.any()):
            e_hat = self.aux_code(z, dead) @ self.W_dec.T  # no bias: the residual e already carries b_dec
            aux = self.aux_alpha * (err.detach() - e_hat).pow(2).sum(-1).mean()
        positive = f[f > 0]
        return SAELoss(
            total=rec + aux,
            reconstruction=rec,
            sparsity=rec.new_zeros(()),
            auxiliary=aux,
            l1=f.sum(-1).mean().detach(),
            l0=(f > 0).sum(-1).to(x.dtype).mean(),
            batch_threshold=self._batch_threshold(positive),
        )

    def _batch_threshold(self, positive: Tensor) -> Tensor | None:
        return None

    @torch.no_grad()
    def observe(self, fired: Tensor, n_tokens: int, out: SAELoss) -> None:
        """Count the tokens since each latent last fired (the AuxK term's dead latents)."""
        t = self.tokens_since_fired
        t.add_(int(n_tokens)).masked_fill_(fired.to(t.device) > 0, 0)

    @torch.no_grad()
    def randomize_training_state_(self, generator: torch.Generator) -> None:
        """About half the latents dead."""
        dead = torch.rand(self.n_latents, generator=generator) < 0.5
        self.tokens_since_fired.copy_(torch.where(dead, self.dead_tokens, 0))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k}


class BatchTopKSAE(TopKSAE):
    """BatchTopK SAE (arXiv:2412.06410): batch-level top k·B in training, one global threshold θ at inference."""

    architecture: ClassVar[str] = "batchtopk"
    threshold: Tensor  # a buffer (register_buffer in init_encoder), which the type checker cannot see

    def __init__(self, d_in: int, n_latents: int, *, threshold_momentum: float = 0.9, **topk: Any):
        """``topk``: :class:`TopKSAE`'s arguments (``k``, ``aux_k``, ``aux_alpha``, ``dead_tokens``, ``seed``,
        ``dtype``), checked there."""
        if not 0 <= threshold_momentum < 1:
            raise ValueError(f"threshold_momentum must be in [0, 1), got {threshold_momentum}")
        self.threshold_momentum = float(threshold_momentum)
        """Momentum of the moving average that estimates the inference threshold θ."""
        super().__init__(d_in, n_latents, **topk)

    def init_encoder(self, dtype: torch.dtype) -> None:
        super().init_encoder(dtype)
        self.register_buffer("threshold", torch.tensor(-1.0, dtype=dtype))
        """The inference threshold θ (scalar); −1 until a training step has estimated it."""

    def code_of(self, z: Tensor) -> Tensor:
        """ReLU(z) at the k·B largest entries of the whole batch ``z [B, M]``, 0 elsewhere."""
        a = torch.relu(z)
        flat = a.reshape(-1)
        vals, idx = flat.topk(min(self.k * a.shape[0], flat.numel()))
        return torch.zeros_like(flat).scatter(0, idx, vals).view_as(a)

    def encode(self, x: Tensor) -> Tensor:
        """Inference: f = ReLU(z) ⊙ H(ReLU(z) − θ) with the single estimated threshold θ (a per-token map)."""
        if float(self.threshold) < 0:
            raise ValueError(
                "this BatchTopK SAE has no inference threshold yet (it estimates one while training); "
                "train it first, or use train_code(x) for the batch-level code"
            )
        a = torch.relu(self.pre_activation(x))
        return a * (a > self.threshold).to(a.dtype)

    def _batch_threshold(self, positive: Tensor) -> Tensor | None:
        return positive.min().detach() if positive.numel() else None

    @torch.no_grad()
    def observe(self, fired: Tensor, n_tokens: int, out: SAELoss) -> None:
        """Dead-latent counts (as TopK) and θ ← m·θ + (1 − m)·(this batch's smallest kept value)."""
        super().observe(fired, n_tokens, out)
        v = out.batch_threshold
        if v is None:
            return
        if float(self.threshold) < 0:
            self.threshold.copy_(v)
        else:
            self.threshold.mul_(self.threshold_momentum).add_(
                (1 - self.threshold_momentum) * v.to(self.threshold.dtype)
            )
