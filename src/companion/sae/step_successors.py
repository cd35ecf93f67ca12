"""Hand-derived training steps of the JumpReLU, TopK and BatchTopK SAEs (:mod:`companion.sae.successors`).

Each gives the losses and gradients of its class's ``loss`` method (JumpReLU: arXiv:2407.14435 §3–4, the
straight-through pseudo-derivatives of the rectangle kernel; TopK: arXiv:2406.04093 §2.3 and App. A.2, MSE + α·AuxK;
BatchTopK: arXiv:2412.06410 §3) with less work, as :mod:`companion.sae.step` does for the baseline and gated SAEs, and
is checked against ``loss`` by :func:`companion.sae.step.fast_step_disagreement` before training.

Where the work goes (B tokens, d dims, M latents): the encoder product ``[B, d] × [d, M]`` is dense; everything else
touches only the code's non-zeros (TopK: B·k of them; BatchTopK: at most B·k), the dead latents' AuxK code (B·k_aux)
and, for JumpReLU, the entries in the kernel's band |z − θ| < ε/2 (where θ gets its pseudo-gradient).  The decoder and
its weight gradient are sparse×dense products, ∂L/∂f is a sampled product on the pattern; the same formulas run with
dense matrices above ``max_density`` (early in training JumpReLU's code is dense; TopK's is dense when k/M is large).
"""
from __future__ import annotations

import torch
from torch import Tensor

from companion.sae.autoencoders import SAELoss
from companion.sae.sparse import Pattern, Workspace, set_grad
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE


def _rows_pattern(idx: Tensor, vals: Tensor, M: int) -> tuple[Pattern, Tensor]:
    """The pattern of a per-row selection ``idx [B, n]`` (any order) and its values in the pattern's order."""
    idx, order = idx.sort(dim=-1)
    vals = vals.gather(-1, order)
    B = idx.shape[0]
    flat = (torch.arange(B, device=idx.device)[:, None] * M + idx).reshape(-1)
    return Pattern(flat, B, M), vals.reshape(-1)


def _flat_pattern(idx: Tensor, vals: Tensor, B: int, M: int) -> tuple[Pattern, Tensor]:
    """The pattern of flat indices ``idx`` into a [B, M] matrix (any order) and its values in the pattern's order."""
    idx, order = idx.sort()
    return Pattern(idx, B, M), vals[order]


def _dense(pat: Pattern, values: Tensor, B: int, M: int) -> Tensor:
    return values.new_zeros(B * M).index_put_((pat.rows * M + pat.cols,), values).view(B, M)


class _Code:
    """A code given by its pattern and values, multiplied sparse or dense according to its density."""

    def __init__(self, pat: Pattern, values: Tensor, dense: bool):
        self.pat, self.values, self.dense = pat, values, dense
        self.matrix = _dense(pat, values, pat.B, pat.M) if dense else None

    def times(self, WdT: Tensor, bias: Tensor | None = None) -> Tensor:
        """code @ W_dec.T (+ bias): ``[B, d]``."""
        m = self.matrix if self.dense else self.pat.csr(self.values)
        return torch.addmm(bias, m, WdT) if bias is not None else m @ WdT

    def t_times(self, values: Tensor, g: Tensor) -> Tensor:
        """(sparse matrix with these values at the pattern)ᵀ @ g: ``[M, ·]``."""
        if self.dense:
            return _dense(self.pat, values, self.pat.B, self.pat.M).T @ g
        return self.pat.csr_t(values) @ g

    def sampled(self, g: Tensor, W_dec: Tensor, gW: Tensor | None) -> Tensor:
        """(g @ W_dec) at the pattern's entries; ``gW`` is that product already computed densely, if it is."""
        if gW is not None:
            return gW.view(-1)[self.pat.rows * self.pat.M + self.pat.cols]
        return self.pat.sampled(g, W_dec)


def _counts(fire_counts: Tensor | None, pat: Pattern, on: Tensor) -> None:
    if fire_counts is not None:
        fire_counts += torch.bincount(pat.cols[on], minlength=pat.M).to(fire_counts.dtype)


def _jumprelu(sae: JumpReLUSAE, x: Tensor, lam: float, ws: Workspace, max_density: float,
              fire_counts: Tensor | None) -> SAELoss:
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    theta, eps = torch.exp(sae.log_threshold), sae.bandwidth
    pre = ws.get("z", (B, M), x.dtype, x.device)
    torch.mm(x, W_enc.T, out=pre)
    pre.add_(b_enc)                                                  # z = W_enc x + b_enc (no input centring)
    mask = ws.get("mask", (B, M), torch.bool, x.device)
    torch.gt(pre, theta, out=mask)
    flat_on = mask.view(-1).nonzero().squeeze(1)                     # the code's support: z > θ
    nnz = int(flat_on.numel())
    on = Pattern(flat_on, B, M)
    code = _Code(on, pre.view(-1)[flat_on], dense=nnz > max_density * B * M)
    # The kernel's band |z − θ| < ε/2, found loosely then decided exactly as the loss's rectangle((z − θ)/ε) does.
    diff = torch.sub(pre, theta, out=ws.get("diff", (B, M), x.dtype, x.device))
    cand = (diff.view(-1).abs() < 0.6 * eps).nonzero().squeeze(1)
    u = diff.view(-1)[cand] / eps
    band_flat = cand[(u > -0.5) & (u < 0.5)]
    band = Pattern(band_flat, B, M)

    WdT = W_dec.T.contiguous()
    err = code.times(WdT, b_dec).sub_(x)                             # x̂ − x
    rec = err.pow(2).sum() / B
    g = err.mul_(2.0 / B)                                            # ∂L/∂x̂
    gW = torch.mm(g, W_dec) if code.dense else None                  # ∂L/∂f densely, when the code is dense
    grad_W_dec_t = code.t_times(code.values, g)
    d_on = code.sampled(g, W_dec, gW)                                # ∂L/∂z = ∂L/∂f on the support (H′ is 0 to z)
    g_band = gW.view(-1)[band_flat] if gW is not None else band.sampled(g, W_dec)
    th = theta[band.cols]
    # ð/ðθ: the output's −(θ/ε)K·∂L/∂f plus the L0 term's −(λ/B)(1/ε)K, summed over the band; log θ gets θ times it.
    d_theta = band.col_sum(g_band * (-th / eps) - lam / (B * eps))
    grad_W_enc = code.t_times(d_on, x)
    grad_b_enc = on.col_sum(d_on)
    set_grad(W_enc, grad_W_enc)
    set_grad(b_enc, grad_b_enc)
    set_grad(sae.log_threshold, theta * d_theta)
    set_grad(W_dec, grad_W_dec_t.T)
    set_grad(b_dec, g.sum(0))
    _counts(fire_counts, on, torch.ones(nnz, dtype=torch.bool, device=x.device))
    l0 = rec.new_tensor(nnz / B)
    sparsity = lam * l0
    return SAELoss(total=rec + sparsity, reconstruction=rec, sparsity=sparsity, auxiliary=rec.new_zeros(()), l1=l0,
                   l0=l0)


def _topk_family(sae: TopKSAE, x: Tensor, lam: float, ws: Workspace, max_density: float,
                 fire_counts: Tensor | None, batch: bool) -> SAELoss:
    if lam != 0:
        raise ValueError(f"{type(sae).__name__} has no sparsity penalty (its sparsity is k = {sae.k}); got λ = {lam}")
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    xc = x - b_dec
    pre = ws.get("z", (B, M), x.dtype, x.device)
    torch.mm(xc, W_enc.T, out=pre)
    pre.add_(b_enc)                                                  # z = W_enc (x − b_dec) + b_enc
    if batch:  # the k·B largest of the batch: the positive ones are those of ReLU(z), as in the loss
        vals, idx = pre.view(-1).topk(min(sae.k * B, B * M))
        pat, vals = _flat_pattern(idx, vals, B, M)
    else:
        vals, idx = pre.topk(sae.k, dim=-1)
        pat, vals = _rows_pattern(idx, vals, M)
    on = vals > 0
    f_vals = vals.clamp(min=0)
    dense = pat.nnz > max_density * B * M
    code = _Code(pat, f_vals, dense)
    WdT = W_dec.T.contiguous()
    err = code.times(WdT, b_dec).sub_(x)                             # x̂ − x
    rec = err.pow(2).sum() / B
    aux_val = rec.new_zeros(())
    dead = sae.dead()
    aux_code = None
    if sae.aux_alpha > 0 and bool(dead.any()):
        n_aux = min(sae.aux_k, int(dead.sum()))
        masked = torch.where(dead, pre, torch.full((), -torch.inf, dtype=pre.dtype, device=pre.device))
        a_vals, a_idx = masked.topk(n_aux, dim=-1)
        a_pat, a_vals = _rows_pattern(a_idx, a_vals, M)
        a_on = a_vals > 0
        aux_code = _Code(a_pat, a_vals.clamp(min=0), a_pat.nnz > max_density * B * M)
        r_aux = aux_code.times(WdT).add_(err)                        # ê − e, e = x − x̂ (detached)
        aux_val = sae.aux_alpha * r_aux.pow(2).sum() / B
        g_aux = r_aux.mul_(2.0 * sae.aux_alpha / B)
    g = err.mul_(2.0 / B)
    gW = torch.mm(g, W_dec) if dense else None
    grad_W_dec_t = code.t_times(code.values, g)
    d_pre = code.sampled(g, W_dec, gW).mul_(on)
    grad_W_enc = code.t_times(d_pre, xc)
    grad_b_enc = pat.col_sum(d_pre)
    if aux_code is not None:
        gW_aux = torch.mm(g_aux, W_dec) if aux_code.dense else None
        grad_W_dec_t = grad_W_dec_t + aux_code.t_times(aux_code.values, g_aux)
        d_aux = aux_code.sampled(g_aux, W_dec, gW_aux).mul_(a_on)
        grad_W_enc = grad_W_enc + aux_code.t_times(d_aux, xc)
        grad_b_enc = grad_b_enc + aux_code.pat.col_sum(d_aux)
    set_grad(W_enc, grad_W_enc)
    set_grad(b_enc, grad_b_enc)
    set_grad(W_dec, grad_W_dec_t.T)
    set_grad(b_dec, g.sum(0) - grad_b_enc @ W_enc)                   # output bias + input centring
    _counts(fire_counts, pat, on)
    positive = f_vals[on]
    threshold = positive.min() if batch and positive.numel() else None
    zero = rec.new_zeros(())
    return SAELoss(total=rec + aux_val, reconstruction=rec, sparsity=zero, auxiliary=aux_val, l1=f_vals.sum() / B,
                   l0=rec.new_tensor(int(on.sum()) / B), batch_threshold=threshold)


def _topk(sae, x, lam, ws, max_density, fire_counts):
    return _topk_family(sae, x, lam, ws, max_density, fire_counts, batch=False)


def _batchtopk(sae, x, lam, ws, max_density, fire_counts):
    return _topk_family(sae, x, lam, ws, max_density, fire_counts, batch=True)


JUMPRELU_STEP = (JumpReLUSAE, _jumprelu)
TOPK_STEP = (TopKSAE, _topk)
BATCHTOPK_STEP = (BatchTopKSAE, _batchtopk)
"""(class, fast step) pairs that :data:`companion.sae.step.FAST_STEPS` registers."""
