"""Toy data for the Gated-SAE companion (Rajamanoharan et al. 2024, arXiv:2404.16014).

* :func:`superposition_data` — synthetic activations that are sparse non-negative combinations of known unit
  feature directions (more features than dimensions), so feature recovery can be scored against the truth.
* :func:`shrinkage_toy` — the paper's Fig. 2: one feature, x = 1, a one-latent SAE.  The baseline minimises
  (f − 1)² + λf, so f* = 1 − λ/2 (λ = 1 halves the reconstruction); the gated SAE's magnitude path carries no
  L1 and reconstructs 1.
* :func:`gamma_worked_case` / :func:`near_perpendicular_case` — reconstructions with a known answer for the γ
  asymmetry (see :mod:`companion.sae.metrics`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from companion.models.numerics import Adam
from companion.sae.autoencoders import BaselineSAE, GatedSAE


@dataclasses.dataclass(frozen=True)
class SuperpositionData:
    """A generator of synthetic superposed activations with ground-truth features."""

    features: Tensor
    """``[F, d]`` unit-norm ground-truth feature directions."""
    p_active: float
    """Probability that each feature is active on a token (expected L0 = F·p)."""
    mag_low: float
    """Active magnitudes are uniform on [mag_low, mag_high]."""
    mag_high: float
    """Upper end of the magnitude range."""
    noise: float
    """Std of isotropic Gaussian noise added to every token."""

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` tokens: (x ``[n, d]``, true codes ``[n, F]``)."""
        F, d = self.features.shape
        active = torch.rand(n, F, generator=generator) < self.p_active
        mags = self.mag_low + (self.mag_high - self.mag_low) * torch.rand(n, F, generator=generator)
        codes = active * mags
        x = codes @ self.features + self.noise * torch.randn(n, d, generator=generator)
        return x, codes

    def batches(self, n_batches: int, batch_size: int, seed: int) -> Iterator[Tensor]:
        """``n_batches`` independent batches ``[batch_size, d]`` (a stream for :func:`~companion.sae.training.train_sweep`)."""
        g = torch.Generator().manual_seed(seed)
        for _ in range(n_batches):
            yield self.sample(batch_size, g)[0]


def superposition_data(
    d: int = 32,
    n_features: int = 96,
    expected_l0: float = 4.0,
    *,
    mag_low: float = 0.5,
    mag_high: float = 1.5,
    noise: float = 0.0,
    seed: int = 0,
) -> SuperpositionData:
    """Random unit feature directions (Gaussian, normalised) in ``d`` dims; each fires with p = expected_l0 / F."""
    if not 0 < expected_l0 < n_features:
        raise ValueError("expected_l0 must be in (0, n_features)")
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_features, d, generator=g)
    feats /= feats.norm(dim=1, keepdim=True)
    return SuperpositionData(feats, expected_l0 / n_features, mag_low, mag_high, noise)


def max_cosine_similarity(true_features: Tensor, W_dec: Tensor) -> Tensor:
    """For each true feature ``[F, d]``, the largest cosine similarity with any decoder column of ``W_dec [d, M]``."""
    t = true_features / true_features.norm(dim=1, keepdim=True)
    w = W_dec / W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return (t @ w).max(dim=1).values


@dataclasses.dataclass(frozen=True)
class ShrinkageToy:
    """Result of the one-feature shrinkage toy (paper Fig. 2)."""

    lams: list[float]
    """The λ values trained at."""
    analytic_baseline: list[float]
    """max(0, 1 − λ/2): the exact minimiser of (f − 1)² + λf."""
    baseline: list[float]
    """Trained baseline SAE's reconstruction of x = 1."""
    gated: list[float]
    """Trained gated SAE's reconstruction of x = 1."""


def _train_toy(sae, lam: float, steps: int, lr: float) -> float:
    # The paper's toy has no decoder bias (it could reconstruct the constant x = 1 by itself), so b_dec is frozen
    # at 0 and the single decoder column fixed at +1 (unit norm in one dimension).
    sae.b_dec.requires_grad_(False)
    sae.W_dec.requires_grad_(False)
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.W_dec.fill_(1.0)
    params = [p for p in sae.parameters() if p.requires_grad]
    opt = Adam(params, lr=lr, betas=(0.0, 0.999))
    x = torch.ones(1, 1, dtype=torch.float64)
    for i in range(steps):
        # Adam with β1 = 0 takes steps of ~lr whatever the gradient, so it circles the optimum at distance ~lr;
        # a linear decay to 0 lets the toy settle on the minimiser the figure is about.
        for grp in opt.param_groups:
            grp["lr"] = lr * (1 - i / steps)
        opt.zero_grad()
        sae.loss(x, lam).total.backward()
        opt.step()
    with torch.no_grad():
        return float(sae(x)[0, 0])


def shrinkage_toy(
    lams: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    *,
    steps: int = 3000,
    lr: float = 1e-2,
    seed: int = 0,
) -> ShrinkageToy:
    """Train one-latent baseline and gated SAEs on x = 1 for each λ; the baseline lands on 1 − λ/2."""
    base, gated = [], []
    for lam in lams:
        b = BaselineSAE(1, 1, seed=seed, dtype=torch.float64)
        with torch.no_grad():
            b.W_enc.fill_(1.0)
        base.append(_train_toy(b, lam, steps, lr))
        g = GatedSAE(1, 1, seed=seed, dtype=torch.float64)
        with torch.no_grad():
            g.W_gate.fill_(1.0)
        gated.append(_train_toy(g, lam, steps, lr))
    return ShrinkageToy(list(map(float, lams)), [max(0.0, 1 - l / 2) for l in lams], base, gated)


#: Noise power (relative to E‖x‖²) that makes x̂ = 0.8x + noise give γ = (0.64 + 0.0512) / 0.8 = 0.864.
WORKED_NOISE_POWER = 0.0512


def gamma_worked_case(n: int = 20000, d: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    """x ~ N(0, I), x̂ = 0.8·x + n with E‖n‖² = 0.0512·E‖x‖² (independent of x).

    Then E[x·x̂] = 0.8·E‖x‖² and E‖x̂‖² = 0.6912·E‖x‖², so the first-version γ₁ = 0.800 while the corrected
    γ = 0.6912 / 0.8 = 0.864 (up to sampling error ~1/√(n·d)).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    noise = math.sqrt(WORKED_NOISE_POWER) * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, 0.8 * x + noise


def near_perpendicular_case(
    n: int = 20000, d: int = 64, parallel: float = 0.05, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """x̂ = parallel·x + (a unit-variance component orthogonal to x): nearly perpendicular to x.

    γ₁ = parallel and the best rescaling E[x·x̂]/E‖x̂‖² ≈ parallel / (parallel² + 1): both ~0, while the first
    version's claimed rescaling 1/γ₁ = 1/parallel is huge.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = torch.randn(n, d, generator=g, dtype=torch.float64)
    # Remove each row's component along x, then rescale so the orthogonal part has E‖·‖² = E‖x‖².
    r = r - (r * x).sum(1, keepdim=True) / (x * x).sum(1, keepdim=True) * x
    r = r * math.sqrt(float((x * x).sum()) / float((r * r).sum()))
    return x, parallel * x + r
