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
JumpReLU's code is dense; TopK's is dense when k/M is large).
"""

from __future__ import annotations

import torch
from torch import Tensor

from companion.models.numerics import linear, t_mm
from companion.sae.autoencoders import SAELoss
from companion.sae.sparse import Pattern, Workspace, flat_indices, set_grad
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE


class _Code:
    """A code ``[B, M]`` (ReLU of the pre-activations at the selected entries): its pattern and values (sparse), or
    the dense matrix; ``on`` marks its non-zeros (ReLU′ = 1 there, 0 at selected entries the ReLU zeroes)."""

    # Set by the constructors below: ``matrix`` when dense, ``pattern`` and ``values`` when sparse.
    dense: bool
    nnz: int
    on: Tensor
    matrix: Tensor
    pattern: Pattern
    values: Tensor

    @classmethod
    def from_mask(cls, mask: Tensor, pre: Tensor, dense: bool) -> _Code:
        """JumpReLU's code: ``pre`` where ``mask`` (there pre > θ > 0, so the ReLU passes every entry)."""
        c = cls()
        c.dense = dense
        if dense:
            c.matrix, c.on = pre * mask, mask
        else:
            flat = flat_indices(mask)
            c.pattern = Pattern(flat, mask.shape[0], mask.shape[1])
            c.values = pre.reshape(-1)[flat]
            c.on = torch.ones_like(flat, dtype=torch.bool)
        c.nnz = int(c.on.numel()) if not dense else int(torch.count_nonzero(mask))
        return c

    @classmethod
    def from_selection(
        cls, flat: Tensor, vals: Tensor, pre: Tensor, dense: bool, ws: Workspace, sorted_flat: bool = False
    ) -> _Code:
        """ReLU(``vals``) at the flat indices ``flat`` of ``pre [B, M]`` (``vals`` = pre there; any order unless
        ``sorted_flat``)."""
        B, M = pre.shape
        c = cls()
        c.dense = dense
        vals = vals.clamp(min=0)
        c.nnz = int(torch.count_nonzero(vals))
        if dense:
            c.matrix = vals.new_zeros(B * M).index_put_((flat,), vals).view(B, M)
            c.on = c.matrix > 0
        else:
            if not sorted_flat:  # row-major order through a mask: no sort of the index list
                mask = ws.get("select", (B, M), torch.bool, flat.device)
                mask.zero_()
                mask.view(-1)[flat] = True
                flat = flat_indices(mask)
                vals = pre.reshape(-1)[flat].clamp_(min=0)
            c.pattern = Pattern(flat, B, M)
            c.values = vals
            c.on = vals > 0
        return c

    def decode(self, W_dec: Tensor, WdT: Tensor, bias: Tensor | None = None) -> Tensor:
        """code @ W_dec.T (+ bias): ``[B, d]`` (``WdT``: W_dec.T made contiguous, for the sparse product)."""
        if self.dense:
            return linear(self.matrix, W_dec, bias)
        m = self.pattern.csr(self.values)
        return torch.addmm(bias, m, WdT) if bias is not None else m @ WdT

    def weight_grad_t(self, g: Tensor) -> Tensor:
        """codeᵀ @ g ``[M, d]`` (the decoder's weight gradient, transposed)."""
        return t_mm(self.matrix, g) if self.dense else self.pattern.csr_t(self.values) @ g

    def back(self, g: Tensor, W_dec: Tensor) -> Tensor:
        """∂L/∂z = (g @ W_dec) at the code's non-zeros: dense ``[B, M]`` or at the pattern ``[nnz]``."""
        if self.dense:
            return linear(g, W_dec.T).mul_(self.on)
        return self.pattern.sampled(g, W_dec).mul_(self.on)

    def enc_grads(self, d: Tensor, xc: Tensor) -> tuple[Tensor, Tensor]:
        """(dᵀ @ xc, Σ_rows d) for ∂L/∂z ``d`` as :meth:`back` returns it: the encoder's weight and bias gradients."""
        if self.dense:
            return t_mm(d, xc), d.sum(0)
        return self.pattern.csr_t(d) @ xc, self.pattern.col_sum(d)

    def fire_counts(self, counts: Tensor | None) -> None:
        if counts is None:
            return
        if self.dense:
            counts += self.on.sum(0).to(counts.dtype)
        else:
            counts += torch.bincount(self.pattern.cols[self.on], minlength=self.pattern.M).to(counts.dtype)

    def total(self) -> Tensor:
        return self.matrix.sum() if self.dense else self.values.sum()


def _jumprelu(
    sae: JumpReLUSAE, x: Tensor, lam: float, ws: Workspace, max_density: float, fire_counts: Tensor | None
) -> SAELoss:
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    theta, eps = torch.exp(sae.log_threshold), sae.bandwidth
    pre = linear(x, W_enc).add_(b_enc)  # z = W_enc x + b_enc (no input centring)
    mask = ws.get("mask", (B, M), torch.bool, x.device)
    torch.gt(pre, theta, out=mask)  # the code's support: z > θ
    code = _Code.from_mask(mask, pre, dense=int(torch.count_nonzero(mask)) > max_density * B * M)
    # The kernel's band |z − θ| < ε/2, found loosely then decided exactly as the loss's rectangle((z − θ)/ε) does.
    diff = torch.sub(pre, theta, out=ws.get("diff", (B, M), x.dtype, x.device)).abs_()
    cand = (diff.view(-1) < 0.6 * eps).nonzero().squeeze(1)
    u = (pre.view(-1)[cand] - theta[cand % M]) / eps  # fl(z − θ)/ε, as the loss computes it
    band_flat = cand[(u > -0.5) & (u < 0.5)]
    band = Pattern(band_flat, B, M)

    WdT = W_dec.T.contiguous()
    err = code.decode(W_dec, WdT, b_dec).sub_(x)  # x̂ − x
    rec = err.pow(2).sum() / B
    g = err.mul_(2.0 / B)  # ∂L/∂x̂
    grad_W_dec_t = code.weight_grad_t(g)
    if code.dense:
        gW = linear(g, W_dec.T)  # ∂L/∂f, dense
        g_band = gW.view(-1)[band_flat]
        d_on = gW.mul_(code.on)
    else:
        g_band = band.sampled(g, W_dec)
        d_on = code.pattern.sampled(g, W_dec)  # ∂L/∂z = ∂L/∂f on the support (H′ is 0 to z)
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


def _select(pre: Tensor, k: int, batch: bool) -> tuple[Tensor, Tensor, bool]:
    """Flat indices into ``pre [B, M]`` of each row's k largest entries (or, ``batch``, of the k·B largest of the whole
    batch), their values, and whether the indices are in row-major order."""
    B, M = pre.shape
    if batch:
        vals, idx = pre.view(-1).topk(min(k * B, B * M), sorted=False)
        return idx, vals, False
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    idx, order = idx.sort(dim=-1)  # [B, k]: cheap, and the rows are then in order
    vals = vals.gather(-1, order)
    return (idx + torch.arange(B, device=pre.device)[:, None] * M).reshape(-1), vals.reshape(-1), True


def _smallest_positive(vals: Tensor) -> Tensor | None:
    """The smallest positive entry of ``vals`` (None if there is none)."""
    low = vals.min()
    if float(low) > 0:
        return low
    pos = vals[vals > 0]
    return pos.min() if pos.numel() else None


def _topk_family(
    sae: TopKSAE, x: Tensor, lam: float, ws: Workspace, max_density: float, fire_counts: Tensor | None, batch: bool
) -> SAELoss:
    if lam != 0:
        raise ValueError(f"{type(sae).__name__} has no sparsity penalty (its sparsity is k = {sae.k}); got λ = {lam}")
    B, M = x.shape[0], sae.n_latents
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    xc = x - b_dec
    pre = linear(xc, W_enc).add_(b_enc)  # z = W_enc (x − b_dec) + b_enc
    # The selected entries: for BatchTopK the positive ones among the batch's k·B largest z are those of ReLU(z).
    flat, sel_vals, in_order = _select(pre, sae.k, batch)
    code = _Code.from_selection(flat, sel_vals, pre, flat.numel() > max_density * B * M, ws, sorted_flat=in_order)
    WdT = W_dec.T.contiguous()
    err = code.decode(W_dec, WdT, b_dec).sub_(x)  # x̂ − x
    rec = err.pow(2).sum() / B
    aux_val = rec.new_zeros(())
    dead = sae.dead()
    aux = None
    if sae.aux_alpha > 0 and bool(dead.any()):
        a_flat, a_vals, _ = _select(
            torch.where(dead, pre, pre.new_tensor(-torch.inf)), min(sae.aux_k, int(dead.sum())), batch=False
        )
        aux = _Code.from_selection(a_flat, a_vals, pre, a_flat.numel() > max_density * B * M, ws, sorted_flat=True)
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
    threshold = _smallest_positive(sel_vals) if batch else None  # the batch's smallest kept value
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
