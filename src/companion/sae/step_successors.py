"""Hand-derived training steps of the JumpReLU, TopK and BatchTopK SAEs (:mod:`companion.sae.successors`).

Each gives the losses and gradients of its class's ``loss`` method (JumpReLU: arXiv:2407.14435 §3–4, the
straight-through pseudo-derivatives of the rectangle kernel; TopK: arXiv:2406.04093 §2.3 and App. A.2, MSE + α·AuxK;
BatchTopK: arXiv:2412.06410 §3) with less work, as :mod:`companion.sae.step` does for the baseline and gated SAEs, and
is checked against ``loss`` by :func:`companion.sae.step.fast_step_disagreement` before training.

Where the work goes (B tokens, d dims, M latents): the encoder product ``[B, d] × [d, M]`` is dense; with a sparse
code everything else touches only the code's non-zeros (TopK: B·k of them; BatchTopK: at most B·k), the dead latents'
AuxK code (B·k_aux) and, for JumpReLU, the entries in the kernel's band |z − θ| < ε/2 (where θ gets its
pseudo-gradient): the decoder and its weight gradient are sparse×dense products and ∂L/∂f a sampled product on the
pattern.  Above ``max_density`` the same formulas run with dense matrices and no index lists (early in training
JumpReLU's code is dense; TopK's is dense when k/M is large); there the work beyond the five products is a few
vectorised passes over ``[B, M]`` (masks kept as 0/1 floats, scratch in the workspace), and BatchTopK's batch-level
selection is one threshold, the k·B-th largest z (:func:`companion.sae.sparse.nth_largest`), not a sort.
"""

from __future__ import annotations

import torch
from torch import Tensor

from companion.models.numerics import linear, t_mm
from companion.sae.autoencoders import SAELoss
from companion.sae.sparse import (
    Pattern,
    Workspace,
    column_counts,
    count_ones,
    flat_indices,
    float_mask,
    nth_largest,
    set_grad,
)
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE


class _Code:
    """A code ``[B, M]`` (ReLU of the pre-activations at the selected entries): the dense matrix, or its pattern and
    values.  Its non-zeros (ReLU′ = 1 there, 0 at selected entries the ReLU zeroes) are ``mask``, a 0/1 float
    ``[B, M]``, when dense, and ``on``, a bool ``[nnz]`` (None when every selected entry is non-zero), when sparse."""

    dense: bool
    nnz: int
    mask: Tensor
    on: Tensor | None
    matrix: Tensor
    pattern: Pattern
    values: Tensor

    @classmethod
    def of_matrix(cls, matrix: Tensor, ws: Workspace, name: str, on: Tensor | None = None) -> _Code:
        """A dense code (``matrix`` ≥ 0; ``on``: its 0/1 mask of non-zeros, if known)."""
        c = cls()
        c.dense, c.matrix = True, matrix
        c.mask = on if on is not None else float_mask(matrix, ws, name + "_on")
        c.nnz = count_ones(c.mask)
        return c

    @classmethod
    def of_entries(cls, flat: Tensor, values: Tensor, B: int, M: int) -> _Code:
        """A sparse code: ``values`` (≥ 0) at the sorted flat indices ``flat`` of ``[B, M]``."""
        c = cls()
        c.dense, c.pattern, c.values = False, Pattern(flat, B, M), values
        c.on = values > 0
        c.nnz = int(torch.count_nonzero(c.on))
        if c.nnz == c.on.numel():
            c.on = None
        return c

    @classmethod
    def of_rows(cls, idx: Tensor, vals: Tensor, M: int, dense: bool, ws: Workspace, name: str) -> _Code:
        """ReLU(``vals``) at the columns ``idx [B, k]`` of each row (any order within a row)."""
        B = idx.shape[0]
        vals = vals.clamp(min=0)
        if dense:
            matrix = ws.get(name, (B, M), vals.dtype, vals.device).zero_().scatter_(1, idx, vals)
            return cls.of_matrix(matrix, ws, name)
        idx, order = idx.sort(dim=-1)  # row-major order for the CSR pattern
        flat = (idx + torch.arange(B, device=idx.device)[:, None] * M).reshape(-1)
        return cls.of_entries(flat, vals.gather(-1, order).reshape(-1), B, M)

    def decode(self, W_dec: Tensor, WdT: Tensor | None, bias: Tensor | None = None) -> Tensor:
        """code @ W_dec.T (+ bias): ``[B, d]`` (``WdT``: W_dec.T made contiguous, for the sparse product)."""
        if self.dense:
            return linear(self.matrix, W_dec, bias)
        m = self.pattern.csr(self.values)
        WdT = W_dec.T.contiguous() if WdT is None else WdT
        return torch.addmm(bias, m, WdT) if bias is not None else m @ WdT

    def weight_grad_t(self, g: Tensor) -> Tensor:
        """codeᵀ @ g ``[M, d]`` (the decoder's weight gradient, transposed)."""
        return t_mm(self.matrix, g) if self.dense else self.pattern.csr_t(self.values) @ g

    def back(self, g: Tensor, W_dec: Tensor) -> Tensor:
        """∂L/∂z = (g @ W_dec) at the code's non-zeros: dense ``[B, M]`` or at the pattern ``[nnz]``."""
        if self.dense:
            return linear(g, W_dec.T).mul_(self.mask)
        d = self.pattern.sampled(g, W_dec)
        return d if self.on is None else d.mul_(self.on)

    def enc_grads(self, d: Tensor, xc: Tensor) -> tuple[Tensor, Tensor]:
        """(dᵀ @ xc, Σ_rows d) for ∂L/∂z ``d`` as :meth:`back` returns it: the encoder's weight and bias gradients."""
        if self.dense:
            return t_mm(d, xc), d.sum(0)
        return self.pattern.csr_t(d) @ xc, self.pattern.col_sum(d)

    def fire_counts(self, counts: Tensor | None) -> None:
        if counts is None:
            return
        if self.dense:
            counts += column_counts(self.mask).to(counts.dtype)
        else:
            cols = self.pattern.cols if self.on is None else self.pattern.cols[self.on]
            counts += torch.bincount(cols, minlength=self.pattern.M).to(counts.dtype)

    def total(self) -> Tensor:
        return self.matrix.sum() if self.dense else self.values.sum()


def _jumprelu(
    sae: JumpReLUSAE, x: Tensor, lam: float, ws: Workspace, max_density: float, fire_counts: Tensor | None
) -> SAELoss:
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    theta, eps = torch.exp(sae.log_threshold), sae.bandwidth
    pre = linear(x, W_enc).add_(b_enc)  # z = W_enc x + b_enc (no input centring)
    # The kernel's band |z − θ| < ε/2, found loosely then decided exactly as the loss's rectangle((z − θ)/ε) does.
    diff = torch.sub(pre, theta, out=ws.get("diff", (B, M), x.dtype, x.device)).abs_()
    cand = (diff.view(-1) < 0.6 * eps).nonzero().squeeze(1)
    u = (pre.view(-1)[cand] - theta[cand % M]) / eps  # fl(z − θ)/ε, as the loss computes it
    band_flat = cand[(u > -0.5) & (u < 0.5)]
    band = Pattern(band_flat, B, M)
    # The code's support z > θ (> 0, so the ReLU-free JumpReLU passes z there).
    support = float_mask(pre, ws, "support", above=theta)
    if count_ones(support) > max_density * B * M:
        code = _Code.of_matrix(pre.mul_(support), ws, "code", on=support)  # pre is not needed any more
    else:
        flat = flat_indices(support)
        code = _Code.of_entries(flat, pre.view(-1)[flat], B, M)

    WdT = None if code.dense else W_dec.T.contiguous()
    err = code.decode(W_dec, WdT, b_dec).sub_(x)  # x̂ − x
    rec = err.pow(2).sum() / B
    g = err.mul_(2.0 / B)  # ∂L/∂x̂
    grad_W_dec_t = code.weight_grad_t(g)
    if code.dense:
        gW = linear(g, W_dec.T)  # ∂L/∂f, dense
        g_band = gW.view(-1)[band_flat]
        d_on = gW.mul_(code.mask)
    else:
        g_band = band.sampled(g, W_dec)
        d_on = code.back(g, W_dec)  # ∂L/∂z = ∂L/∂f on the support (H′ is 0 to z)
    th = theta[band.cols]
    # ð/ðθ: the output's −(θ/ε)K·∂L/∂f plus the L0 term's −(λ/B)(1/ε)K, summed over the band; log θ gets θ times it.
    d_theta = band.col_sum(g_band * (-th / eps) - lam / (B * eps))
    grad_W_enc, grad_b_enc = code.enc_grads(d_on, x)
    set_grad(W_enc, grad_W_enc)
    set_grad(b_enc, grad_b_enc)
    set_grad(sae.log_threshold, theta * d_theta)
    set_grad(W_dec, grad_W_dec_t.T)
    set_grad(b_dec, g.sum(0))
    code.fire_counts(fire_counts)
    l0 = rec.new_tensor(code.nnz / B)
    sparsity = lam * l0
    return SAELoss(
        total=rec + sparsity, reconstruction=rec, sparsity=sparsity, auxiliary=rec.new_zeros(()), l1=l0, l0=l0
    )


def _batch_code(pre: Tensor, k: int, dense: bool, ws: Workspace) -> tuple[_Code, Tensor | None]:
    """BatchTopK's training code, ReLU(z) at the k·B largest entries of the batch's ``pre [B, M]``, and the smallest
    positive value it keeps (None if none).

    The kept entries are those ≥ v, the (k·B)-th largest z, when exactly k·B entries are; when v ≤ 0 every positive
    entry is kept and the ReLU zeroes the other kept ones, whichever they are.  Only a tie straddling v > 0 needs the
    selection itself (torch.topk, as the loss).
    """
    B, M = pre.shape
    n_keep = min(k * B, B * M)
    v = nth_largest(pre, n_keep)
    if float(v) > 0:
        keep = float_mask(pre, ws, "keep", above=v, strict=False)
        if count_ones(keep) != n_keep:  # a tie at v: the loss's own selection decides which tied entries are kept
            flat = torch.relu(pre).view(-1).topk(n_keep).indices
            keep.view(-1).zero_().index_fill_(0, flat, 1.0)
        low: Tensor | None = v
    else:
        keep = float_mask(pre, ws, "keep")
        low = None
    if dense:
        code = _Code.of_matrix(torch.mul(pre, keep, out=ws.get("code", (B, M), pre.dtype, pre.device)), ws, "code")
    else:
        flat = flat_indices(keep)
        code = _Code.of_entries(flat, pre.view(-1)[flat].clamp_(min=0), B, M)
    if low is None and code.nnz:  # every positive z is kept: the smallest is the nnz-th largest
        low = code.values.min() if not code.dense else nth_largest(pre, code.nnz)
    return code, low


def _topk_family(
    sae: TopKSAE, x: Tensor, lam: float, ws: Workspace, max_density: float, fire_counts: Tensor | None, batch: bool
) -> SAELoss:
    if lam != 0:
        raise ValueError(f"{type(sae).__name__} has no sparsity penalty (its sparsity is k = {sae.k}); got λ = {lam}")
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    xc = x - b_dec
    pre = linear(xc, W_enc).add_(b_enc)  # z = W_enc (x − b_dec) + b_enc
    dense = min(sae.k * B, B * M) > max_density * B * M
    threshold = None
    if batch:
        # The positive ones among the batch's k·B largest z are those of ReLU(z) the loss keeps.
        code, threshold = _batch_code(pre, sae.k, dense, ws)
    else:
        vals, idx = pre.topk(sae.k, dim=-1, sorted=False)
        code = _Code.of_rows(idx, vals, M, dense, ws, "code")
    dead = sae.dead()
    aux = None
    n_dead = int(dead.sum()) if sae.aux_alpha > 0 else 0
    WdT = None
    if not code.dense or n_dead:
        WdT = W_dec.T.contiguous()
    err = code.decode(W_dec, WdT, b_dec).sub_(x)  # x̂ − x
    rec = err.pow(2).sum() / B
    aux_val = rec.new_zeros(())
    if n_dead:
        # Each token's k_aux largest z among the dead latents (the loss: topk of z with the live ones at −∞).
        dead_cols = dead.nonzero().squeeze(1)
        vals, j = pre.index_select(1, dead_cols).topk(min(sae.aux_k, n_dead), dim=-1, sorted=False)
        aux = _Code.of_rows(dead_cols[j], vals, M, vals.numel() > max_density * B * M, ws, "aux")
        r_aux = aux.decode(W_dec, WdT).add_(err)  # ê − e, e = x − x̂ (detached); ê has no bias
        aux_val = sae.aux_alpha * r_aux.pow(2).sum() / B
        g_aux = r_aux.mul_(2.0 * sae.aux_alpha / B)
    g = err.mul_(2.0 / B)
    grad_W_dec_t = code.weight_grad_t(g)
    grad_W_enc, grad_b_enc = code.enc_grads(code.back(g, W_dec), xc)
    if aux is not None:
        grad_W_dec_t = grad_W_dec_t + aux.weight_grad_t(g_aux)
        gw, gb = aux.enc_grads(aux.back(g_aux, W_dec), xc)
        grad_W_enc, grad_b_enc = grad_W_enc + gw, grad_b_enc + gb
    set_grad(W_enc, grad_W_enc)
    set_grad(b_enc, grad_b_enc)
    set_grad(W_dec, grad_W_dec_t.T)
    set_grad(b_dec, g.sum(0) - grad_b_enc @ W_enc)  # output bias + input centring
    code.fire_counts(fire_counts)
    zero = rec.new_zeros(())
    return SAELoss(
        total=rec + aux_val,
        reconstruction=rec,
        sparsity=zero,
        auxiliary=aux_val,
        l1=code.total() / B,
        l0=rec.new_tensor(code.nnz / B),
        batch_threshold=threshold,
    )


def _topk(sae, x, lam, ws, max_density, fire_counts):
    return _topk_family(sae, x, lam, ws, max_density, fire_counts, batch=False)


def _batchtopk(sae, x, lam, ws, max_density, fire_counts):
    return _topk_family(sae, x, lam, ws, max_density, fire_counts, batch=True)


JUMPRELU_STEP = (JumpReLUSAE, _jumprelu)
TOPK_STEP = (TopKSAE, _topk)
BATCHTOPK_STEP = (BatchTopKSAE, _batchtopk)
"""(class, fast step) pairs that :data:`companion.sae.step.FAST_STEPS` registers."""
