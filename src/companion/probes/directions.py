"""Detector directions and the controls of the defection-probe notebook (MacDiarmid et al. 2024).

* The note's detector: direction = mean(activations | True) − mean(activations | False) over the fit texts'
  final-token activations; a logistic-regression direction is the footnote's alternative.
* Detector score = projection of a test prompt's final-token activation on the unit direction.
* Controls: random directions (the note: best of 1,000 reaches 95.3%), a supervised probe fitted on the trigger
  labels themselves (our upper bound for any linear read-out), the between/within-class variance ratio per layer
  and PCA at the peak layer.

Arrays: ``acts`` ``(n, d)`` (or ``(n, L, d)`` where stated), ``labels`` ``(n,)`` bool.  Pure functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from companion.probes.metrics import auroc, auroc_many, check_activations_labels


def mean_difference_direction(acts: Any, labels: Any) -> np.ndarray:
    """mean(acts[labels]) - mean(acts[~labels]); ``acts`` ``(n, d)``, ``labels`` ``(n,)`` bool -> ``(d,)``."""
    x, y = check_activations_labels(acts, labels)
    return x[y].mean(0) - x[~y].mean(0)


def logistic_direction(acts: Any, labels: Any, *, C: float = 1.0) -> np.ndarray:
    """Weights of an L2 logistic regression (the note's footnote alternative) -> ``(d,)``.

    Fitted on raw activations (no standardisation) so the weight vector is a direction in the residual
    stream that can be projected on like the mean difference.
    """
    from sklearn.linear_model import LogisticRegression

    x, y = check_activations_labels(acts, labels)
    clf = LogisticRegression(C=C, max_iter=5000)
    clf.fit(x, y)
    return clf.coef_[0].astype(np.float64)


def fit_direction(acts: Any, labels: Any, method: str = "mean_diff") -> np.ndarray:
    """The detector direction by ``method`` ("mean_diff" or "logistic"), shape ``(d,)``."""
    if method == "mean_diff":
        return mean_difference_direction(acts, labels)
    if method == "logistic":
        return logistic_direction(acts, labels)
    raise ValueError(f"method must be 'mean_diff' or 'logistic', got {method!r}")


def project(acts: Any, direction: Any) -> np.ndarray:
    """Detector scores: projection of ``acts`` ``(n, d)`` on the unit vector along ``direction`` -> ``(n,)``."""
    x = np.asarray(acts, dtype=np.float64)
    v = np.asarray(direction, dtype=np.float64)
    if x.ndim != 2 or v.shape != (x.shape[1],):
        raise ValueError(f"need acts (n, d) and direction (d,), got {x.shape} and {v.shape}")
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("direction is zero or not finite: the two classes have identical means")
    return x @ (v / norm)


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@dataclasses.dataclass
class RandomDirectionControl:
    """AUROCs of random directions: how well an uninformed linear detector does on this test set."""

    aurocs: np.ndarray
    """AUROC of each random direction, ``(k,)`` (sign not flipped: the distribution is centred on 0.5)."""
    best_scores: np.ndarray
    """Scores of the test prompts on the best random direction, ``(n,)`` (for its ROC curve)."""

    @property
    def best(self) -> float:
        """The best random AUROC (the note reports 95.3% as the best of 1,000)."""
        return float(self.aurocs.max())

    @property
    def mean(self) -> float:
        """Mean random AUROC (about 0.5 by symmetry)."""
        return float(self.aurocs.mean())

    def fraction_at_least(self, value: float) -> float:
        """Fraction of random directions with AUROC >= ``value`` (an empirical p-value for a probe)."""
        return float((self.aurocs >= value).mean())


def random_direction_aurocs(
    acts: Any, labels: Any, *, n_directions: int = 1000, seed: int = 0
) -> RandomDirectionControl:
    """AUROCs of ``n_directions`` isotropic Gaussian directions on ``acts`` ``(n, d)``: one matmul + ranks."""
    x, y = check_activations_labels(acts, labels)
    if n_directions < 1:
        raise ValueError("n_directions must be >= 1")
    r = np.random.default_rng(seed).standard_normal((x.shape[1], n_directions))
    scores = x @ r
    a = auroc_many(scores, y)
    return RandomDirectionControl(a, scores[:, int(np.argmax(a))])


class SupervisedProbeResult(NamedTuple):
    """Cross-validated logistic-regression probe on labelled test activations (upper bound)."""

    auroc: float
    """AUROC of the out-of-fold scores."""
    fold_aurocs: np.ndarray
    """AUROC within each held-out fold, ``(n_folds,)``."""
    scores: np.ndarray
    """Out-of-fold decision-function score of each prompt, ``(n,)``."""


def supervised_probe(
    acts: Any, labels: Any, *, n_folds: int = 5, seed: int = 0, C: float = 1.0
) -> SupervisedProbeResult:
    """Stratified k-fold logistic regression (standardised features) fitted on the trigger labels themselves.

    Every score is from a model that never saw that prompt, so the AUROC is an honest estimate of the best a
    linear read-out at this layer achieves given the labels (which the contrast-pair probes never see).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = check_activations_labels(acts, labels)
    k = min(n_folds, int(y.sum()), int((~y).sum()))
    if k < 2:
        raise ValueError("the supervised probe needs at least 2 examples of each class")
    oof = np.zeros(len(y))
    folds = []
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        clf.fit(x[tr], y[tr])
        oof[te] = clf.decision_function(x[te])
        folds.append(auroc(oof[te], y[te]) if 0 < y[te].sum() < len(te) else float("nan"))
    return SupervisedProbeResult(auroc(oof, y), np.asarray(folds), oof)


def variance_ratio(acts: Any, labels: Any) -> float | np.ndarray:
    """Between-class over within-class variance (traces of the scatter matrices), per layer.

    ``acts`` ``(n, d)`` or ``(n, L, d)``; returns a float or an ``(L,)`` array.  Between =
    sum_c n_c |mu_c - mu|^2, within = sum_c sum_i |x_i - mu_c|^2 (the common 1/n cancels).
    """
    x = np.asarray(acts, dtype=np.float64)
    single = x.ndim == 2
    if single:
        x = x[:, None, :]
    if x.ndim != 3:
        raise ValueError(f"activations must have shape (n, d) or (n, L, d), got {x.shape}")
    _, y = check_activations_labels(x[:, 0, :], labels)
    mu = x.mean(0)
    between = np.zeros(x.shape[1])
    within = np.zeros(x.shape[1])
    for cls in (True, False):
        xc = x[y == cls]
        mc = xc.mean(0)
        between += len(xc) * ((mc - mu) ** 2).sum(-1)
        within += ((xc - mc) ** 2).sum((0, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(within > 0, between / np.where(within > 0, within, 1), np.where(between > 0, np.inf, 0.0))
    return float(ratio[0]) if single else ratio


def pca_2d(acts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Project ``acts`` ``(n, d)`` on its first two principal components: ``(coords (n, 2), explained (2,))``."""
    x = np.asarray(acts, dtype=np.float64)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s**2
    return xc @ vt[:2].T, var[:2] / var.sum()
