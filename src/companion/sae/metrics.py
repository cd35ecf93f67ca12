"""SAE evaluation metrics of Rajamanoharan et al. 2024 ("Improving Dictionary Learning with Gated Sparse
Autoencoders", arXiv:2404.16014, corrected version), as pure functions with documented shapes.

Notation: ``x [N, d]`` are N activation vectors (tokens), ``x_hat [N, d]`` their reconstructions, ``f [N, M]``
the SAE codes (for a gated SAE the final code f̃ = gate ⊙ magnitude).  "E" is the mean over the N tokens.

* L0 = E‖f‖₀ — mean number of non-zero latents per token (paper §4, x-axis of Figs. 1/5/6).
* Loss recovered (fidelity, paper §4) = 1 − (CE(spliced) − CE(clean)) / (CE(zero-ablated) − CE(clean)):
  "spliced" replaces the site's activation by the SAE reconstruction, "zero-ablated" by 0, on held-out
  tokens.  0 = as bad as zero ablation, 1 = perfect.  Δ LM loss = CE(spliced) − CE(clean).
* Fraction of variance unexplained: FVU = Σ_n ‖x_n − x̂_n‖² / Σ_n ‖x_n − x̄‖², x̄ = E[x] the mean over tokens
  (variance measured around the mean, not around zero — some library versions got this wrong).
* Relative reconstruction bias (corrected Eqs. 9/10): γ = argmin_γ' E‖x̂/γ' − x‖² = E‖x̂‖² / E[x·x̂], with the
  expectations aggregated over all tokens *before* dividing (not a mean of per-token ratios).  γ ≈ 1 unbiased,
  γ < 1 shrinkage.
* The first version's γ₁ = argmin_γ' E‖x̂ − γ'x‖² = E[x·x̂] / E‖x‖², whose reciprocal it claimed to be the best
  rescaling of x̂.  The best rescaling is the reverse argmin, argmin_s E‖s·x̂ − x‖² = E[x·x̂] / E‖x̂‖² = 1/γ,
  which differs from 1/γ₁ whenever x̂ is not parallel to x; for nearly perpendicular x, x̂ both γ₁ and the best
  rescaling go to ~0.
* Dead / dense latents: fraction of latents that never fire on the evaluation tokens / fire on more than a
  threshold fraction of them.

Evaluation convention: positions holding special tokens (BOS / end-of-text / padding) are neither used as SAE
inputs nor spliced (their activations are left as they are), matching :mod:`companion.sae.activations`; the
cross-entropy is over every next-token prediction of the batch in all three runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from companion.models.scoring import check_hook_names, model_device
from companion.sae.activations import keep_mask


def _pair(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    """``x, x_hat [N, d]`` checked and in float64 (sums over ~10^6 tokens lose digits in float32; the metrics are
    ratios of such sums)."""
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape [N, d], got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected [N, d] tensors with N >= 1, got {tuple(x.shape)}")
    return x.detach().to(torch.float64), x_hat.detach().to(torch.float64)


def _ratio(num: Tensor, den: Tensor, undefined: str) -> float:
    """num / den, or ValueError(undefined) when den is 0."""
    if den == 0:
        raise ValueError(undefined)
    return float(num / den)


# ------------------------------------------------------------------------------------------ sparsity
def l0(f: Tensor) -> float:
    """E‖f‖₀: mean number of non-zero entries per row of ``f [N, M]``."""
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected codes of shape [N, M] with N >= 1, got {tuple(f.shape)}")
    return float((f != 0).sum(dim=1, dtype=torch.float64).mean())


def firing_frequencies(f: Tensor) -> Tensor:
    """Fraction of rows on which each latent is non-zero: ``f [N, M]`` -> ``[M]`` (float64)."""
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected codes of shape [N, M] with N >= 1, got {tuple(f.shape)}")
    return (f != 0).sum(dim=0, dtype=torch.float64) / f.shape[0]


def dead_fraction(freq: Tensor) -> float:
    """Fraction of latents that never fire: ``freq [M]`` (from :func:`firing_frequencies`) -> scalar."""
    return float((freq == 0).double().mean())


def dense_fraction(freq: Tensor, threshold: float = 0.1) -> float:
    """Fraction of latents firing on more than ``threshold`` of tokens: ``freq [M]`` -> scalar."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return float((freq > threshold).double().mean())


# ------------------------------------------------------------------------------------------ reconstruction
def fraction_variance_unexplained(x: Tensor, x_hat: Tensor) -> float:
    """FVU = Σ_n ‖x_n − x̂_n‖² / Σ_n ‖x_n − x̄‖² with x̄ = mean over tokens; ``x, x_hat [N, d]`` -> scalar."""
    x, x_hat = _pair(x, x_hat)
    total = (x - x.mean(dim=0, keepdim=True)).pow(2).sum()
    return _ratio((x - x_hat).pow(2).sum(), total, "x has zero variance: FVU is undefined")


def relative_reconstruction_bias(x: Tensor, x_hat: Tensor) -> float:
    """Corrected γ (paper Eqs. 9/10): E‖x̂‖² / E[x·x̂] = argmin_γ' E‖x̂/γ' − x‖²; ``x, x_hat [N, d]`` -> scalar.

    Expectations are aggregated over all N tokens before dividing.
    """
    x, x_hat = _pair(x, x_hat)
    return _ratio(x_hat.pow(2).sum(), (x * x_hat).sum(), "E[x·x̂] = 0: γ is undefined (x̂ is orthogonal to x on average)")


def first_version_gamma(x: Tensor, x_hat: Tensor) -> float:
    """The first version's γ₁ = argmin_γ' E‖x̂ − γ'x‖² = E[x·x̂] / E‖x‖²; ``x, x_hat [N, d]`` -> scalar."""
    x, x_hat = _pair(x, x_hat)
    return _ratio((x * x_hat).sum(), x.pow(2).sum(), "E‖x‖² = 0: γ₁ is undefined")


def optimal_rescaling(x: Tensor, x_hat: Tensor) -> float:
    """The best rescaling of x̂ (reverse argmin): argmin_s E‖s·x̂ − x‖² = E[x·x̂] / E‖x̂‖² (= 1/γ); -> scalar."""
    x, x_hat = _pair(x, x_hat)
    return _ratio((x * x_hat).sum(), x_hat.pow(2).sum(), "E‖x̂‖² = 0: the rescaling is undefined")


@dataclasses.dataclass
class ReconstructionStats:
    """Running sums over token batches, so γ, FVU, L0 and firing rates can be computed without holding all tokens.

    Every ratio is formed from the totals at the end (expectations aggregated before dividing).
    """

    n: int = 0
    """Tokens seen."""
    sum_x_sq: float = 0.0
    """Σ_n ‖x_n‖²."""
    sum_xhat_sq: float = 0.0
    """Σ_n ‖x̂_n‖²."""
    sum_dot: float = 0.0
    """Σ_n x_n·x̂_n."""
    sum_err_sq: float = 0.0
    """Σ_n ‖x_n − x̂_n‖²."""
    sum_x: Tensor | None = None
    """Σ_n x_n ``[d]`` (float64), for the variance about the mean."""
    sum_l0: float = 0.0
    """Σ_n ‖f_n‖₀."""
    fire_counts: Tensor | None = None
    """Per-latent number of tokens with a non-zero code ``[M]`` (float64)."""

    def update(self, x: Tensor, x_hat: Tensor, f: Tensor | None = None) -> None:
        """Add a batch: ``x, x_hat [N, d]``, optional codes ``f [N, M]``."""
        x, x_hat = _pair(x, x_hat)
        self.n += x.shape[0]
        self.sum_x_sq += float(x.pow(2).sum())
        self.sum_xhat_sq += float(x_hat.pow(2).sum())
        self.sum_dot += float((x * x_hat).sum())
        self.sum_err_sq += float((x - x_hat).pow(2).sum())
        sx = x.sum(0)
        self.sum_x = sx if self.sum_x is None else self.sum_x + sx
        if f is not None:
            nz = f != 0
            self.sum_l0 += float(nz.sum())
            c = nz.sum(0, dtype=torch.float64)
            self.fire_counts = c if self.fire_counts is None else self.fire_counts + c

    def summary(self) -> ReconstructionSummary:
        """The metrics of everything added so far, each a ratio of totals (expectations aggregated, then divided)."""
        if self.sum_x is None:
            raise ValueError("no batch was added: call update(x, x_hat, f) first")
        variance = self.sum_x_sq - float(self.sum_x.pow(2).sum()) / self.n  # Σ‖x − x̄‖² = Σ‖x‖² − ‖Σx‖²/n
        return ReconstructionSummary(
            gamma=self.sum_xhat_sq / self.sum_dot,
            gamma_first_version=self.sum_dot / self.sum_x_sq,
            rescaling=self.sum_dot / self.sum_xhat_sq,
            fvu=self.sum_err_sq / variance,
            l0=self.sum_l0 / self.n,
            frequencies=torch.zeros(0, dtype=torch.float64) if self.fire_counts is None else self.fire_counts / self.n,
        )


@dataclasses.dataclass(frozen=True)
class ReconstructionSummary:
    """What :meth:`ReconstructionStats.summary` returns."""

    gamma: float
    """Corrected γ = Σ‖x̂‖² / Σ x·x̂ (Eq. 10)."""
    gamma_first_version: float
    """γ₁ = Σ x·x̂ / Σ‖x‖²."""
    rescaling: float
    """argmin_s E‖s x̂ − x‖² = Σ x·x̂ / Σ‖x̂‖² (= 1/γ)."""
    fvu: float
    """Σ‖x − x̂‖² / Σ‖x − x̄‖²."""
    l0: float
    """E‖f‖₀ (0 if no codes were added)."""
    frequencies: Tensor
    """Per-latent firing frequency ``[M]`` (float64; empty if no codes were added)."""


# ------------------------------------------------------------------------------------------ LM loss
def loss_recovered(ce_clean: float, ce_spliced: float, ce_zero: float) -> float:
    """1 − (CE(spliced) − CE(clean)) / (CE(zero-ablated) − CE(clean)) (paper §4 "loss recovered")."""
    denom = ce_zero - ce_clean
    if denom <= 0:
        raise ValueError(
            f"zero-ablation does not increase the loss (CE zero {ce_zero:.4f} <= clean {ce_clean:.4f}): "
            "loss recovered is undefined at this site"
        )
    return 1.0 - (ce_spliced - ce_clean) / denom


@dataclasses.dataclass(frozen=True)
class LMLosses:
    """Cross-entropies of one evaluation, and the two fidelity numbers derived from them."""

    ce_clean: float
    """Mean next-token CE of the unmodified model (nats/token)."""
    ce_zero: float
    """Mean CE with the site's activations replaced by 0 (special-token positions excepted)."""
    ce_spliced: dict[str, float]
    """Mean CE with the site replaced by each reconstruction, by name."""
    n_tokens: int
    """Predicted tokens the means are over."""

    def loss_recovered(self, name: str) -> float:
        """Loss recovered of one reconstruction."""
        return loss_recovered(self.ce_clean, self.ce_spliced[name], self.ce_zero)

    def delta_lm_loss(self, name: str) -> float:
        """Δ LM loss = CE(spliced) − CE(clean) of one reconstruction."""
        return self.ce_spliced[name] - self.ce_clean


def _token_ce(model: Any, tokens: Tensor, hooks: list) -> Tensor:
    """Per-prediction CE ``[batch, pos−1]`` of one run with ``hooks``."""
    if hooks:
        out = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
    else:
        out = model(tokens, return_type="loss", loss_per_token=True)
    return out.detach().double()


@torch.no_grad()
def lm_losses(
    model: Any,
    token_batches: Iterable[Tensor],
    site: str,
    reconstructions: Mapping[str, Callable[[Tensor], Tensor]],
    exclude_token_ids: Sequence[int] = (),
) -> LMLosses:
    """Clean, zero-ablated and spliced CE at ``site`` over held-out ``token_batches`` (each ``[batch, pos]``).

    ``reconstructions[name]`` maps the site's activations ``[n, d]`` (positions flattened, trailing dims of a
    per-head hook flattened) to their reconstruction ``[n, d]``.  Positions whose token is in
    ``exclude_token_ids`` keep their original activation in both the zero-ablated and the spliced runs.
    """
    check_hook_names(model, [site])
    sums = {"clean": 0.0, "zero": 0.0, **{f"s:{k}": 0.0 for k in reconstructions}}
    n = 0
    dev = model_device(model)
    for tokens in token_batches:
        tokens = tokens.to(dev)
        keep = keep_mask(tokens, exclude_token_ids)

        def splice(fn: Callable[[Tensor], Tensor] | None):
            def hook(act: Tensor, hook: Any = None) -> Tensor:
                flat = act.reshape(act.shape[0], act.shape[1], -1)
                sel = flat[keep]  # [n, d] the positions we replace
                new = torch.zeros_like(sel) if fn is None else fn(sel.float()).to(sel.dtype)
                if new.shape != sel.shape:
                    raise ValueError(f"reconstruction returned shape {tuple(new.shape)}, expected {tuple(sel.shape)}")
                out = flat.clone()
                out[keep] = new
                return out.reshape(act.shape)

            return hook

        ce = _token_ce(model, tokens, [])
        n += ce.numel()
        sums["clean"] += float(ce.sum())
        sums["zero"] += float(_token_ce(model, tokens, [(site, splice(None))]).sum())
        for k, fn in reconstructions.items():
            sums[f"s:{k}"] += float(_token_ce(model, tokens, [(site, splice(fn))]).sum())
    if n == 0:
        raise ValueError("no token batches to evaluate on")
    return LMLosses(
        ce_clean=sums["clean"] / n,
        ce_zero=sums["zero"] / n,
        ce_spliced={k: sums[f"s:{k}"] / n for k in reconstructions},
        n_tokens=n,
    )
