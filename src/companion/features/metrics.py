"""Recovery metrics of notebook 05: how well an SAE's latents pick out a known binary variable.

Two protocols, both scored on examples disjoint from the ones that chose the latents (a ``select`` split and a
``score`` split of the same labelled examples):

* **Best single latent** — each latent's AUROC as a classifier of the variable on the select split; the latent
  furthest from chance, |AUROC − ½|, is kept with its direction (a latent that fires on the *other* class marks the
  variable as well) and its AUROC is reported on the score split.  AUROC is the Mann–Whitney statistic
  P(s₊ > s₋) + ½·P(s₊ = s₋), computed from mid-ranks (ties, such as the many zeros of a sparse code, count ½).
* **k-sparse probing** (SAEBench's sparse probing, Karvonen et al. 2025, arXiv:2503.09532; Gurnee et al. 2023):
  the k latents with the largest |mean over class 1 − mean over class 0| on the select split, then a logistic
  regression on those k latents fitted on the select split; its accuracy on the score split.

References beside them: the same logistic probe on all raw activations (:func:`dense_probe`, the ceiling) and both
protocols on random directions (:func:`random_codes`, the floor).  Every function takes tensors and documents their
shapes; the probes are scikit-learn's L2-regularised logistic regression (Newton–Cholesky solver, deterministic)
on standardised features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def auroc_columns(scores: Tensor, labels: Tensor) -> Tensor:
    """AUROC of every column of ``scores [n, m]`` against binary ``labels [n]`` -> ``[m]`` (float64).

    Mann–Whitney from mid-ranks: (Σ ranks of positives − n₊(n₊+1)/2) / (n₊·n₋); ties count ½.
    """
    if scores.ndim == 1:
        scores = scores[:, None]
    y = labels.to(torch.bool).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be [n, m] with n = len(labels), got {tuple(scores.shape)} and {tuple(y.shape)}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both classes among the labels")
    s = scores.to(torch.float64).T.contiguous()  # [m, n]
    srt = torch.sort(s, dim=1).values
    lo = torch.searchsorted(srt, s, right=False)
    hi = torch.searchsorted(srt, s, right=True)
    ranks = (lo + hi + 1).to(torch.float64) / 2  # 1-based mid-ranks
    rank_sum = ranks[:, y].sum(dim=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc(scores: Tensor, labels: Tensor) -> float:
    """AUROC of one score vector ``[n]`` against binary ``labels [n]``."""
    return float(auroc_columns(scores.reshape(-1, 1), labels)[0])


@dataclasses.dataclass(frozen=True)
class SingleLatent:
    """The best single latent for a variable, chosen on one split and scored on another."""

    index: int
    """The latent (column) chosen on the select split."""
    sign: int
    """+1 when the latent is larger on class 1, −1 when it marks class 0."""
    select_auroc: float
    """Its oriented AUROC on the select split (≥ ½)."""
    auroc: float
    """Its oriented AUROC on the score split: the reported number."""


def best_single_latent(codes_select: Tensor, y_select: Tensor, codes_score: Tensor, y_score: Tensor) -> SingleLatent:
    """The latent of ``codes_select [n_s, m]`` furthest from chance on ``y_select``, scored on ``codes_score [n_t, m]``."""
    a = auroc_columns(codes_select, y_select)
    i = int(torch.argmax((a - 0.5).abs()))
    sign = 1 if float(a[i]) >= 0.5 else -1
    sel = float(a[i]) if sign > 0 else 1 - float(a[i])
    got = auroc(codes_score[:, i], y_score)
    return SingleLatent(i, sign, sel, got if sign > 0 else 1 - got)


def mean_difference_topk(codes: Tensor, labels: Tensor, k: int) -> Tensor:
    """Indices ``[k]`` of the columns of ``codes [n, m]`` with the largest |mean over class 1 − mean over class 0|
    (SAEBench's selection), largest first; ties broken towards the lower index."""
    y = labels.to(torch.bool).reshape(-1)
    if not 1 <= k <= codes.shape[1]:
        raise ValueError(f"k must lie in [1, {codes.shape[1]}], got {k}")
    c = codes.to(torch.float64)
    diff = (c[y].mean(0) - c[~y].mean(0)).abs()
    # A stable sort on −diff keeps equal differences in index order (deterministic where latents tie, e.g. dead).
    return torch.sort(-diff, stable=True).indices[:k]


def _logistic(x_fit: np.ndarray, y_fit: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Newton–Cholesky: exact Newton steps, ~10x faster than lbfgs on these few features and converged tighter.
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=200, solver="newton-cholesky")).fit(
        x_fit, y_fit
    )


@dataclasses.dataclass(frozen=True)
class ProbeScore:
    """A logistic probe fitted on the select split and scored on the score split."""

    accuracy: float
    """Fraction of score-split examples classified right (threshold ½)."""
    auroc: float
    """AUROC of its decision function on the score split."""


def logistic_probe(x_select: Tensor, y_select: Tensor, x_score: Tensor, y_score: Tensor, c: float = 1.0) -> ProbeScore:
    """Fit an L2 logistic regression (inverse strength ``c``) on standardised ``x_select [n_s, f]``; score ``x_score``."""
    xs, xt = x_select.double().numpy(), x_score.double().numpy()
    ys, yt = y_select.to(torch.bool).numpy(), y_score.to(torch.bool).numpy()
    model = _logistic(xs, ys, c)
    acc = float((model.predict(xt) == yt).mean())
    return ProbeScore(acc, auroc(torch.from_numpy(model.decision_function(xt)), torch.from_numpy(yt)))


def k_sparse_probe(
    codes_select: Tensor, y_select: Tensor, codes_score: Tensor, y_score: Tensor, k: int, c: float = 1.0
) -> ProbeScore:
    """SAEBench's k-sparse probe: :func:`mean_difference_topk` on the select split, a logistic probe on those k."""
    idx = mean_difference_topk(codes_select, y_select, k)
    return logistic_probe(codes_select[:, idx], y_select, codes_score[:, idx], y_score, c)


def dense_probe(x_select: Tensor, y_select: Tensor, x_score: Tensor, y_score: Tensor, c: float = 1.0) -> ProbeScore:
    """The ceiling: the same logistic probe on every raw activation dimension ``x [n, d]``."""
    return logistic_probe(x_select, y_select, x_score, y_score, c)


def random_codes(x: Tensor, n_directions: int, seed: int) -> Tensor:
    """The floor's dictionary: ``x [n, d]`` projected on ``n_directions`` random unit directions -> ``[n, n]``
    (Gaussian directions from ``seed``; the same seed gives the same directions)."""
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(x.shape[1], n_directions, generator=g, dtype=torch.float64)
    w /= w.norm(dim=0, keepdim=True)
    return x.to(torch.float64) @ w


def stratified_split(labels: Tensor, select_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (select, score) of ``labels [n]``: each class shuffled (``seed``) and cut at ``select_fraction``."""
    if not 0 < select_fraction < 1:
        raise ValueError(f"select_fraction must be in (0, 1), got {select_fraction}")
    y = labels.to(torch.bool).reshape(-1)
    g = torch.Generator().manual_seed(int(seed))
    sel, score = [], []
    for cls in (False, True):
        idx = torch.nonzero(y == cls).reshape(-1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        cut = int(round(len(idx) * select_fraction))
        if cut < 1 or cut >= len(idx):
            raise ValueError(f"class {int(cls)} has {len(idx)} examples: too few to split at {select_fraction}")
        sel.append(idx[:cut])
        score.append(idx[cut:])
    return torch.sort(torch.cat(sel)).values, torch.sort(torch.cat(score)).values


@dataclasses.dataclass(frozen=True)
class Recovery:
    """Both protocols on one dictionary (an SAE's codes or random directions) for one variable."""

    auroc: float
    """Best single latent's AUROC on the score split."""
    latent: int
    """Which latent that was."""
    accuracy: dict[int, float]
    """k -> k-sparse probe accuracy on the score split."""


def recovery(
    codes: Tensor, labels: Tensor, select: Tensor, score: Tensor, ks: Sequence[int], c: float = 1.0
) -> Recovery:
    """Best single latent and k-sparse probes of ``codes [n, m]`` for ``labels [n]`` on a (select, score) split."""
    cs, ct, ys, yt = codes[select], codes[score], labels[select], labels[score]
    best = best_single_latent(cs, ys, ct, yt)
    acc = {int(k): k_sparse_probe(cs, ys, ct, yt, min(int(k), codes.shape[1]), c).accuracy for k in ks}
    return Recovery(best.auroc, best.index, acc)
