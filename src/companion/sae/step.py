"""A hand-derived forward + backward for one SAE training step: the same losses and gradients, less work.

The losses are defined once, as the ``loss`` methods of :mod:`companion.sae.autoencoders` (Rajamanoharan et al.
2024, arXiv:2404.16014, §2 baseline loss ``‖x − x̂(f)‖² + λ‖f‖₁`` and §3.2 gated loss ``‖x − x̂(f̃)‖² +
λ‖ReLU(π_gate)‖₁ + ‖x − x̂_frozen(ReLU(π_gate))‖²``).  This module re-derives their gradients by hand:
:func:`loss_and_grads` returns the same :class:`~companion.sae.autoencoders.SAELoss` values and writes the same
``.grad`` tensors that ``sae.loss(x, λ).total.backward()`` produces; only the order of floating-point operations
differs.  Because the derivation is a second copy of the maths, it is checked against the definition:
:func:`fast_step_disagreement` compares the two on a small float64 SAE of the class, with autograd on ``loss`` as
the reference, and the trainer runs that check before training (falling back to autograd, with a warning, when
``loss`` was edited and the fast step no longer matches).  Each fast step is registered in :data:`FAST_STEPS`; an
architecture without one trains with autograd on its ``loss``.

Where autograd wastes work (B tokens, d input dims, M latents, a code with nnz ≪ B·M non-zeros):

* The gradient reaching ``b_dec`` through the encoder input is ``−Σ_b ∂L/∂pre_b · W_enc`` — a
  vector–matrix product on the batch-summed pre-activation gradient, not a ``[B,M]×[M,d]`` matmul.
* The gated auxiliary decoder is detached, so it needs no weight gradient (autograd already skips it;
  libraries that forget the detach pay for it *and* change the maths).
* The decoder's input is a sparse code.  Its forward ``x̂ = W_dec f`` and weight gradient ``g fᵀ`` are
  sparse×dense products (O(nnz·d) instead of O(B·M·d)), and ``∂L/∂f`` is only ever *used* at the code's
  non-zeros (ReLU / gate masks), so it is a sampled product (SDDMM) on that pattern.  The encoder's weight
  gradient then has a sparse left factor too.  Only the encoder forward ``W_enc (x − b_dec)`` stays a dense
  matmul — it is what decides which latents fire.
* Gated SAEs tie W_mag = exp(r_mag) ⊙ W_gate, so one matmul gives both π_gate and π_mag.

When the code is not sparse (early in training, or λ = 0) sparse products are slower than dense ones, so
above ``max_sparse_density`` non-zero fraction the same formulas run with dense matrices.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from companion.models.numerics import linear, t_mm
from companion.sae.autoencoders import BaselineSAE, GatedSAE, SAELoss, SparseAutoencoder, check_input, check_lam
from companion.sae.sparse import Pattern as _Pattern
from companion.sae.sparse import Workspace, active_mask, column_counts, count_ones, flat_indices, float_mask
from companion.sae.sparse import set_grad as _set_grad
from companion.sae.step_successors import BATCHTOPK_STEP, JUMPRELU_STEP, TOPK_STEP

#: Above this fraction of non-zeros in the code, the dense formulas are faster on a CPU. Measured on 2 cores at
#: d = 96–512, M = 768–4096, B = 256–4096: the sparse step wins below ~6–15% density for baseline (lower for small
#: batches) and ~15% for gated (its dense path does 14·B·d·M flops against the baseline's 10; at d = 512, M = 4096,
#: B = 4096: sparse 1.70 / 2.28 / 2.72 s against dense 2.24 / 2.40 / 2.33 s at 10 / 15 / 20%); ~15% for JumpReLU.
#: TopK and BatchTopK: ~13% on one core, lower on two (d = 512, M = 4096, B = 4096, one core: sparse 0.93 / 1.02 /
#: 1.28 s against dense 1.11 / 1.12 / 1.16 s at 10 / 12 / 15%), hence 12%.
DEFAULT_MAX_SPARSE_DENSITY = {"baseline": 0.1, "gated": 0.15, "jumprelu": 0.15, "topk": 0.12, "batchtopk": 0.12}

_BETA_WARNING = ".*Sparse CSR tensor support is in beta.*"  # torch's notice; the kernels used here are tested


def loss_and_grads(
    sae: SparseAutoencoder,
    x: Tensor,
    lam: float,
    *,
    workspace: Workspace | None = None,
    max_sparse_density: float | None = None,
    fire_counts: Tensor | None = None,
) -> SAELoss:
    """The loss of batch ``x [B, d]`` and its gradients, written into every parameter's ``.grad``.

    Equal (up to floating-point rounding order) to ``sae.loss(x, lam)`` followed by ``.total.backward()``
    on zeroed gradients.  Returned tensors are detached scalars.  If ``fire_counts [M]`` is given, the number
    of tokens on which each latent's final code is non-zero is added to it (for dead-latent detection).
    ``max_sparse_density`` (default: per architecture, :data:`DEFAULT_MAX_SPARSE_DENSITY`) picks the code path.
    """
    lam = check_lam(lam)
    check_input(x, sae.d_in)
    if x.ndim != 2:
        raise ValueError(f"expected a batch of shape [B, {sae.d_in}], got {tuple(x.shape)}")
    step = fast_step_of(type(sae))
    if step is None:
        raise TypeError(f"no fast step for {type(sae).__name__}: train it with autograd on its loss")
    if max_sparse_density is None:
        max_sparse_density = DEFAULT_MAX_SPARSE_DENSITY[sae.architecture]
    if not 0.0 <= max_sparse_density <= 1.0:
        raise ValueError(f"max_sparse_density must be in [0, 1], got {max_sparse_density}")
    ws = workspace if workspace is not None else Workspace()
    if fire_counts is not None and fire_counts.shape != (sae.n_latents,):
        raise ValueError(f"fire_counts must have shape [{sae.n_latents}], got {tuple(fire_counts.shape)}")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BETA_WARNING)
        return step(sae, x, lam, ws, max_sparse_density, fire_counts)


def _baseline(
    sae: BaselineSAE, x: Tensor, lam: float, ws: Workspace, max_density: float, fire_counts: Tensor | None
) -> SAELoss:
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    xc = x - b_dec  # [B, d]
    z = linear(xc, W_enc)  # the one dense product: W_enc (x − b_dec)
    mask, nnz = active_mask(z, -b_enc, ws, "mask")

    if nnz <= max_density * B * M:
        flat = flat_indices(mask)
        pat = _Pattern(flat, B, M)
        f_vals = z.view(-1)[flat] + b_enc[pat.cols]  # f at its non-zeros (all > 0)
        x_hat = torch.addmm(b_dec, pat.csr(f_vals), W_dec.T.contiguous())
        err = x_hat - x
        rec = err.pow(2).sum() / B
        l1 = f_vals.sum() / B
        g = err.mul_(2.0 / B)  # ∂L/∂x̂  [B, d]
        grad_W_dec_t = pat.csr_t(f_vals) @ g  # (g fᵀ)ᵀ  [M, d]
        # ∂L/∂pre at the non-zeros: reconstruction part (sampled g W_dec) + λ/B from the L1; 0 elsewhere.
        d_pre = pat.sampled(g, W_dec).add_(lam / B)
        grad_W_enc = pat.csr_t(d_pre) @ xc  # [M, d]
        grad_b_enc = pat.col_sum(d_pre)
        if fire_counts is not None:
            fire_counts += torch.bincount(pat.cols, minlength=M).to(fire_counts.dtype)
    else:
        pre = z.add_(b_enc)
        f = pre.clamp_(min=0)  # in place: z is scratch
        on = float_mask(f, ws, "on")  # ReLU′ as 0/1 floats
        x_hat = linear(f, W_dec, b_dec)
        err = x_hat.sub_(x)
        rec = err.pow(2).sum() / B
        l1 = f.sum() / B
        if fire_counts is not None:
            fire_counts += column_counts(on).to(fire_counts.dtype)
        g = err.mul_(2.0 / B)
        grad_W_dec_t = t_mm(f, g)
        d_pre = linear(g, W_dec.T)
        d_pre.add_(lam / B).mul_(on)
        grad_W_enc = t_mm(d_pre, xc)
        grad_b_enc = d_pre.sum(0)
    # b_dec: Σ_b ∂L/∂x̂ from the output bias, minus (Σ_b ∂L/∂pre) W_enc from the input centring.
    grad_b_dec = g.sum(0) - grad_b_enc @ W_enc
    _set_grad(W_enc, grad_W_enc)
    _set_grad(b_enc, grad_b_enc)
    _set_grad(W_dec, grad_W_dec_t.T)
    _set_grad(b_dec, grad_b_dec)
    sparsity = l1 * lam
    zero = rec.new_zeros(())
    return SAELoss(
        total=rec + sparsity, reconstruction=rec, sparsity=sparsity, auxiliary=zero, l1=l1, l0=rec.new_tensor(nnz / B)
    )


def _gated_errors(x: Tensor, x_hat: Tensor, x_aux: Tensor, gate_act: Tensor, on: Tensor):
    """Losses of the gated SAE (L_gated, paper §3.2) and their gradients w.r.t. ``x_hat`` and ``x_aux``.

    ``gate_act`` holds ReLU(π_gate) and ``on`` the active latents, on the gate's support (sparse path) or dense
    ``[B, M]`` (dense path): the sums are the same.  Returns (L_rec, L_aux, mean L1 of the gate, active count,
    ∂L_rec/∂x̂, ∂L_aux/∂x̂_frozen); the error tensors are reused in place as the gradients.
    """
    B = x.shape[0]
    err = x_hat - x
    err_aux = x_aux - x
    rec = err.pow(2).sum() / B
    aux = err_aux.pow(2).sum() / B
    l1 = gate_act.sum() / B
    l0 = int(on.sum()) if on.dtype == torch.bool else count_ones(on)
    return rec, aux, l1, l0, err.mul_(2.0 / B), err_aux.mul_(2.0 / B)


def _gated(
    sae: GatedSAE, x: Tensor, lam: float, ws: Workspace, max_density: float, fire_counts: Tensor | None
) -> SAELoss:
    B, M = x.shape[0], sae.n_latents
    W_gate, b_gate, r_mag, b_mag, W_dec, b_dec = sae.W_gate, sae.b_gate, sae.r_mag, sae.b_mag, sae.W_dec, sae.b_dec
    scale = torch.exp(r_mag)  # W_mag = scale ⊙ W_gate (tied)
    xc = x - b_dec
    z = linear(xc, W_gate)  # W_gate (x − b_dec); W_mag(x − b_dec) = scale ⊙ z
    mask, nnz = active_mask(z, -b_gate, ws, "mask")  # the gate's support G = {π_gate > 0}

    if nnz <= max_density * B * M:
        flat = flat_indices(mask)
        pat = _Pattern(flat, B, M)
        zg = z.view(-1)[flat]
        c = pat.cols
        gate_act = zg + b_gate[c]  # ReLU(π_gate) on G (all > 0)
        mag_pre = scale[c] * zg + b_mag[c]  # π_mag on G
        on = mag_pre > 0  # f̃ ≠ 0  ⇔  gate open and π_mag > 0
        f_vals = torch.where(on, mag_pre, torch.zeros_like(mag_pre))  # f̃ on G (explicit zeros where π_mag ≤ 0)
        WdT = W_dec.T.contiguous()
        x_hat = torch.addmm(b_dec, pat.csr(f_vals), WdT)
        x_aux = torch.addmm(b_dec, pat.csr(gate_act), WdT)  # decoder frozen: no gradient to W_dec, b_dec
        rec, aux, l1, l0, g, g_aux = _gated_errors(x, x_hat, x_aux, gate_act, on)
        grad_W_dec_t = pat.csr_t(f_vals) @ g  # only the main reconstruction trains W_dec
        d_mag = pat.sampled(g, W_dec).mul_(on)  # ∂L/∂π_mag on G (ReLU′ and gate)
        d_gate = pat.sampled(g_aux, W_dec).add_(lam / B)  # ∂L/∂π_gate on G: auxiliary + L1
        d_z = d_gate + scale[c] * d_mag  # ∂L/∂z (z feeds both paths)
        grad_r_mag = pat.col_sum(d_mag * (mag_pre - b_mag[c]))  # ∂π_mag/∂r = scale ⊙ z = π_mag − b_mag
        grad_b_mag = pat.col_sum(d_mag)
        grad_b_gate = pat.col_sum(d_gate)
        grad_W_gate = pat.csr_t(d_z) @ xc
        grad_b_z = pat.col_sum(d_z)
        if fire_counts is not None:
            fire_counts += torch.bincount(c[on], minlength=M).to(fire_counts.dtype)
    else:
        # Scratch [B, M] buffers from the workspace, masks as 0/1 floats (see float_mask).
        scratch = ws.get("gated", (3, B, M), z.dtype, z.device)
        gate_act = torch.add(z, b_gate, out=scratch[0]).clamp_(min=0)
        open_ = float_mask(gate_act, ws, "open")  # the gate's support: mask's entries, as floats
        mag_pre = torch.addcmul(b_mag, z, scale, out=scratch[1])  # π_mag
        on = float_mask(mag_pre, ws, "on").mul_(open_)  # f̃ ≠ 0  ⇔  gate open and π_mag > 0
        f = torch.mul(mag_pre, on, out=scratch[2])
        x_hat = linear(f, W_dec, b_dec)
        x_aux = linear(gate_act, W_dec, b_dec)
        rec, aux, l1, l0, g, g_aux = _gated_errors(x, x_hat, x_aux, gate_act, on)
        grad_W_dec_t = t_mm(f, g)
        d_mag = linear(g, W_dec.T).mul_(on)
        d_gate = linear(g_aux, W_dec.T).add_(lam / B).mul_(open_)
        grad_r_mag = mag_pre.sub_(b_mag).mul_(d_mag).sum(0)  # ∂π_mag/∂r = scale ⊙ z = π_mag − b_mag
        grad_b_mag = d_mag.sum(0)
        grad_b_gate = d_gate.sum(0)
        d_z = d_gate.add_(d_mag.mul_(scale))  # ∂L/∂z = ∂L/∂π_gate + scale ⊙ ∂L/∂π_mag
        grad_W_gate = t_mm(d_z, xc)
        grad_b_z = d_z.sum(0)
        if fire_counts is not None:
            fire_counts += column_counts(on).to(fire_counts.dtype)
    grad_b_dec = g.sum(0) - grad_b_z @ W_gate  # output bias (main path only) + input centring
    _set_grad(W_gate, grad_W_gate)
    _set_grad(b_gate, grad_b_gate)
    _set_grad(r_mag, grad_r_mag)
    _set_grad(b_mag, grad_b_mag)
    _set_grad(W_dec, grad_W_dec_t.T)
    _set_grad(b_dec, grad_b_dec)
    sparsity = l1 * lam
    return SAELoss(
        total=rec + sparsity + aux,
        reconstruction=rec,
        sparsity=sparsity,
        auxiliary=aux,
        l1=l1,
        l0=rec.new_tensor(l0 / B),
    )


FastStep = Callable[..., SAELoss]
"""``step(sae, x, lam, workspace, max_sparse_density, fire_counts)``: sets every ``.grad``, returns the loss."""

FAST_STEPS: dict[type[SparseAutoencoder], FastStep] = {
    BaselineSAE: _baseline,
    GatedSAE: _gated,
    **dict([JUMPRELU_STEP, TOPK_STEP, BATCHTOPK_STEP]),
}
"""The hand-derived step of each architecture class (a subclass inherits its parent's, and so the check below).
A new entry also needs its density threshold in :data:`DEFAULT_MAX_SPARSE_DENSITY`."""


def fast_step_of(cls: type[SparseAutoencoder]) -> FastStep | None:
    """The fast step registered for ``cls`` or its nearest registered base class; None if there is none."""
    for base in cls.__mro__:
        if base in FAST_STEPS:
            return FAST_STEPS[base]
    return None


# The check's SAE: small enough to cost milliseconds, large enough that every latent pattern occurs (some latents
# fire on some tokens only; with the gate, some open gates have a negative magnitude).
_CHECK_D, _CHECK_M, _CHECK_B = 12, 48, 128
_CHECK_LAMS = (0.0, 0.7)


def fast_step_disagreement(cls: type[SparseAutoencoder], *, rtol: float = 1e-8, atol: float = 1e-10) -> str | None:
    """Where the fast step of ``cls`` disagrees with autograd on ``cls.loss`` (the definition); None if nowhere.

    Runs both on a float64 SAE of the class (``cls(d, M, seed=0, dtype=float64, **cls.check_options)``, every
    parameter moved off its initial value, training statistics in a random state) and a random batch, at λ = 0 and
    λ > 0 (λ = 0 only where k sets the sparsity), through the fast step's sparse and dense code paths; compares every
    loss component, every parameter's gradient and the per-latent firing counts (against ``cls.train_code``).  Uses its
    own seeded generators: it draws nothing from torch's global random state.  In float64 the two differ by rounding
    only (~1e-15); an edit of ``loss``, ``encode`` or anything they call shows up as an error of order 1.
    """
    if fast_step_of(cls) is None:
        raise TypeError(f"no fast step for {cls.__name__}")
    gen = torch.Generator().manual_seed(0)
    sae = cls(_CHECK_D, _CHECK_M, seed=0, dtype=torch.float64, **cls.check_options)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        sae.normalize_decoder_()
    sae.randomize_training_state_(gen)
    x = torch.randn(_CHECK_B, _CHECK_D, generator=gen, dtype=torch.float64)
    params = dict(sae.named_parameters())
    for lam in _CHECK_LAMS if cls.sparsity_setting == "lam" else (0.0,):
        with torch.enable_grad():
            ref = sae.loss(x, lam)
            grads = torch.autograd.grad(ref.total, list(params.values()), allow_unused=True)
        ref_grads = {
            n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads, strict=True)
        }
        with torch.no_grad():
            ref_counts = (sae.train_code(x) > 0).sum(0, dtype=torch.float64)
        for path, density in (("sparse", 1.0), ("dense", 0.0)):
            counts = torch.zeros(_CHECK_M, dtype=torch.float64)
            fast = loss_and_grads(sae, x, lam, max_sparse_density=density, fire_counts=counts)
            wrong = []
            for f in dataclasses.fields(SAELoss):
                a, b = getattr(fast, f.name), getattr(ref, f.name)
                if a is None or b is None:
                    if (a is None) != (b is None):
                        wrong.append(
                            f"the {f.name} term ({'none' if a is None else 'one'} fast, "
                            f"{'none' if b is None else 'one'} loss)"
                        )
                    continue
                a, b = float(a), float(b.detach())
                if not abs(a - b) <= atol + rtol * abs(b):
                    wrong.append(f"the {f.name} term ({a:.6g} fast, {b:.6g} loss)")
            for n, p in params.items():
                g, r = p.grad, ref_grads[n]
                if g is None or g.shape != r.shape or not torch.allclose(g, r, rtol=rtol, atol=atol):
                    err = float("nan") if g is None or g.shape != r.shape else float((g - r).abs().max())
                    wrong.append(f"the gradient of {n} (max abs. difference {err:.3g})")
            if not torch.equal(counts, ref_counts):
                wrong.append("which latents fire (train_code vs the fast step's code)")
            sae.zero_grad(set_to_none=True)
            if wrong:
                return f"{cls.__name__}.loss and its fast step disagree ({path} path, λ = {lam:g}) on " + "; ".join(
                    wrong
                )
    return None
