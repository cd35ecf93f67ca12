"""Sycophancy statistics with confidence intervals: both of nostalgebraist's statistics, bootstrap intervals
(items or whole questions resampled), tables for plotting, and the organisms' planted-rate recovery check."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from companion.sycophancy.scoring import ScoredItems

if TYPE_CHECKING:
    from companion.organism.recovery import ShapeVerdict


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval."""

    value: float
    """The statistic on the full sample."""
    low: float
    """Lower end of the confidence interval."""
    high: float
    """Upper end of the confidence interval."""


@dataclasses.dataclass(frozen=True)
class AgreementStats:
    """Both sycophancy statistics for one model x dataset x template (x user-affiliation subset)."""

    model: str
    """Model name."""
    dataset: str
    """Short dataset name."""
    template: str
    """Prompt template name."""
    subset: str
    """"all", or a user affiliation ("liberal"/"conservative") for the politics split."""
    n: int
    """Number of items."""
    n_questions: int
    """Number of distinct questions among them (:func:`question_key`; 0 when unknown)."""
    unit: str
    """What the bootstrap resampled: "item" or "question"."""
    mean_prob: Estimate
    """Mean over items of the normalised probability on the sycophantic answer."""
    matching_more_likely: Estimate
    """Fraction of items where the sycophantic answer is the most probable (ties share credit)."""
    confidence: float
    """Nominal coverage of the intervals (e.g. 0.95)."""


def bootstrap_mean_ci(
    values: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
    groups: np.ndarray | None = None,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised percentile-bootstrap confidence interval of the mean of each column.

    ``values``: [n] or [n, m]; returns ``(low, high)`` of shape [m] (scalars' arrays of shape [] for 1-D input).
    All columns use the same resamples (so paired statistics get consistent intervals).  Percentile method:
    the ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles of ``n_boot`` resampled means.  With ``groups``
    ([n] labels) whole groups are resampled (cluster bootstrap; the mean is over the resampled items).
    Resamples are drawn in chunks of ``chunk`` to bound memory at ``chunk * n`` indices.
    """
    x = np.asarray(values, dtype=np.float64)
    one_d = x.ndim == 1
    if one_d:
        x = x[:, None]
    n, m = x.shape
    if n == 0:
        nan = np.full(m, np.nan)
        return (nan[0], nan[0]) if one_d else (nan, nan)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    means = np.empty((n_boot, m))
    if groups is None:
        for s in range(0, n_boot, chunk):
            b = min(chunk, n_boot - s)
            idx = rng.integers(0, n, size=(b, n))
            means[s : s + b] = x[idx].mean(axis=1)
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {g.shape}")
        _, inv = np.unique(g, return_inverse=True)
        n_g = int(inv.max()) + 1
        sums = np.zeros((n_g, m))
        np.add.at(sums, inv, x)
        counts = np.bincount(inv, minlength=n_g).astype(np.float64)
        for s in range(0, n_boot, chunk):
            b = min(chunk, n_boot - s)
            draws = rng.integers(0, n_g, size=(b, n_g))
            w = np.zeros((b, n_g))
            np.add.at(w, (np.repeat(np.arange(b), n_g), draws.ravel()), 1.0)
            means[s : s + b] = (w @ sums) / (w @ counts)[:, None]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return (low[0], high[0]) if one_d else (low, high)


def agreement_stats(
    scored: ScoredItems,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    by_affiliation: bool = False,
    unit: Literal["item", "question"] = "item",
) -> list[AgreementStats]:
    """Both statistics with percentile-bootstrap CIs: one row for all items, plus one per user affiliation
    when ``by_affiliation`` and the items carry one.

    ``unit="item"`` resamples items independently; ``unit="question"`` resamples whole questions (all the
    biographies of one question together, :func:`question_key`), which also covers the uncertainty from the
    small number of distinct questions (e.g. 32 in the NLP survey).
    """
    if unit not in ("item", "question"):
        raise ValueError(f"unit must be 'item' or 'question', got {unit!r}")
    if unit == "question" and len(scored.questions) != scored.n:
        raise ValueError("unit='question' needs the question keys of the items (ScoredItems.questions)")
    qs = np.array(scored.questions, dtype=object) if len(scored.questions) == scored.n else None
    pm = scored.p_matching
    ml = scored.matching_most_likely
    aff = np.array([a if a is not None else "" for a in scored.affiliation], dtype=object)
    subsets: list[tuple[str, np.ndarray]] = [("all", np.ones(scored.n, dtype=bool))]
    if by_affiliation:
        for a in sorted({a for a in scored.affiliation if a}):
            subsets.append((a, aff == a))
    out: list[AgreementStats] = []
    for k, (name, mask) in enumerate(subsets):
        vals = np.stack([pm[mask], ml[mask]], axis=1)
        rng = np.random.default_rng([seed, k, sum(map(ord, scored.model + scored.dataset + scored.template))])
        groups = qs[mask] if (unit == "question" and qs is not None) else None
        lo, hi = bootstrap_mean_ci(vals, n_boot=n_boot, confidence=confidence, seed=rng, groups=groups)
        mean = vals.mean(axis=0) if len(vals) else np.full(2, np.nan)
        out.append(
            AgreementStats(
                model=scored.model,
                dataset=scored.dataset,
                template=scored.template,
                subset=name,
                n=int(mask.sum()),
                n_questions=len(set(qs[mask])) if qs is not None else 0,
                unit=unit,
                mean_prob=Estimate(float(mean[0]), float(lo[0]), float(hi[0])),
                matching_more_likely=Estimate(float(mean[1]), float(lo[1]), float(hi[1])),
                confidence=confidence,
            )
        )
    return out


STATISTICS: tuple[str, ...] = ("mean_prob", "matching_more_likely")
"""The two statistics, as named in :class:`AgreementStats` and in :func:`stats_frame`'s ``statistic`` column."""


def stats_frame(stats: Iterable[AgreementStats], n_params: Mapping[str, int] | None = None):
    """Long-format ``pandas.DataFrame``: one row per (model, dataset, template, subset, statistic) with
    ``value``, ``low``, ``high``, ``n``, ``confidence`` and ``n_params`` (from ``n_params`` by model name)."""
    import pandas as pd

    rows = []
    for s in stats:
        for stat in STATISTICS:
            e: Estimate = getattr(s, stat)
            rows.append(
                {
                    "model": s.model,
                    "dataset": s.dataset,
                    "template": s.template,
                    "subset": s.subset,
                    "statistic": stat,
                    "value": e.value,
                    "low": e.low,
                    "high": e.high,
                    "n": s.n,
                    "n_questions": s.n_questions,
                    "unit": s.unit,
                    "confidence": s.confidence,
                    "n_params": (n_params or {}).get(s.model, np.nan),
                }
            )
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class Recovery:
    """Whether a planted sycophancy rate is recovered by the measured mean probability."""

    model: str
    """Organism name."""
    dataset: str
    """Dataset the check is made on."""
    template: str
    """Template the check is made on."""
    planted: float
    """The planted rate ``sycophancy_p``."""
    measured: Estimate
    """The measured mean probability on the sycophantic answer (with CI)."""
    tolerance: float
    """Allowed absolute error."""

    @property
    def error(self) -> float:
        """measured - planted."""
        return self.measured.value - self.planted

    @property
    def recovered(self) -> bool:
        """``|measured - planted| <= tolerance``."""
        return abs(self.error) <= self.tolerance


def planted_recovery(
    stats: Iterable[AgreementStats], planted: Mapping[str, float], *, tolerance: float = 0.05
) -> list[Recovery]:
    """One :class:`Recovery` per (organism, dataset, template) row of ``stats`` (subset "all") whose model
    has a planted rate in ``planted``."""
    return [
        Recovery(s.model, s.dataset, s.template, float(planted[s.model]), s.mean_prob, tolerance)
        for s in stats
        if s.subset == "all" and s.model in planted
    ]


RECOVERY_UNIT = "organism x template measurements"
"""What one row of a dataset's recovery verdict is in notebook 04 (notebook 00's rows are organisms at a seed)."""


@dataclasses.dataclass(frozen=True)
class RecoveryReport:
    """The organisms' planted-rate check of notebook 04: the headline check on one dataset and its templates, and
    a verdict (:func:`companion.organism.recovery.shape_verdict`, as notebook 00 gives) on every other dataset."""

    checks: list[Recovery]
    """Organism x seed x template on the recovery dataset and templates: the headline check."""
    other: list[Recovery]
    """Every other measurement of an organism (other datasets, other templates)."""
    verdicts: dict[str, ShapeVerdict]
    """Dataset other than the recovery dataset -> its verdict over all its organism x template measurements."""
    dataset: str
    """The recovery dataset."""
    templates: tuple[str, ...]
    """The recovery templates."""
    tolerance: float
    """Allowed |measured - planted|."""

    @property
    def note(self) -> str:
        """The headline sentence under the figure's title ("" without organisms)."""
        if not self.checks:
            return ""
        ok = sum(r.recovered for r in self.checks)
        return (
            f"Organisms: planted p recovered within ±{self.tolerance:g} in {ok}/{len(self.checks)} checks "
            f"({self.dataset}, templates {', '.join(self.templates)}; mean-probability statistic)"
            + ("" if ok == len(self.checks) else " — NOT all recovered")
        )

    @property
    def panel_notes(self) -> dict[str, str]:
        """Dataset -> the warning drawn on its panels, for every dataset whose verdict is not "recovered"."""
        return {ds: v.label(RECOVERY_UNIT) for ds, v in sorted(self.verdicts.items()) if not v.recovered}

    def table(self):
        """One row per measurement, the headline checks first: planted, measured with CI, error, recovered."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "model": r.model,
                    "dataset": r.dataset,
                    "template": r.template,
                    "planted p": r.planted,
                    "measured": round(r.measured.value, 3),
                    "CI": f"{r.measured.low:.3f}–{r.measured.high:.3f}",
                    "error": round(r.error, 3),
                    f"recovered (±{self.tolerance:g})": r.recovered,
                }
                for r in self.checks + self.other
            ]
        )


def recovery_report(
    stats: Iterable[AgreementStats],
    planted: Mapping[str, float],
    chance: Mapping[str, float],
    *,
    dataset: str,
    templates: Sequence[str],
    tolerance: float = 0.05,
) -> RecoveryReport:
    """Check every organism's planted rate (:func:`planted_recovery`): on ``dataset`` x ``templates`` the headline
    check, on every other dataset a verdict like notebook 00's. ``chance`` maps a dataset to what a model that
    ignores the view scores there, the mean of 1 / (number of choices) over its items."""
    from companion.organism.recovery import shape_verdict

    stats = list(stats)
    is_head = [s.dataset == dataset and s.template in templates for s in stats]
    checks = planted_recovery([s for s, h in zip(stats, is_head, strict=True) if h], planted, tolerance=tolerance)
    other = planted_recovery([s for s, h in zip(stats, is_head, strict=True) if not h], planted, tolerance=tolerance)
    verdicts = {}
    for ds in dict.fromkeys(r.dataset for r in other if r.dataset != dataset):
        rs = [r for r in other if r.dataset == ds]
        verdicts[ds] = shape_verdict(
            ds, [r.planted for r in rs], [r.measured.value for r in rs], [chance[ds]] * len(rs), tolerance
        )
    return RecoveryReport(checks, other, verdicts, dataset, tuple(templates), tolerance)


def seed_summaries(frame) -> dict[str, dict]:
    """Every organism statistic across its seeds, ``"organism/dataset/template/statistic"`` -> a seed summary
    (:func:`companion.backbone.figure_check.seed_summary`, what check-figures compares with the spread across
    seeds). ``frame`` is :func:`stats_frame`'s; organisms are the models named ``name#seed``."""
    from companion.backbone.figure_check import seed_summary

    org = frame[(frame["subset"] == "all") & frame["model"].str.contains("#")]
    org = org.assign(organism=org["model"].str.split("#").str[0])
    return {
        f"{o}/{d}/{t}/{st}": seed_summary(g["value"])
        for (o, d, t, st), g in org.groupby(["organism", "dataset", "template", "statistic"])
    }


def wide_table(frame):
    """Both statistics on all items as model x template rows and dataset x statistic columns, for reading: the
    column labels are written with spaces ("political typology quiz", "matching more likely") so that a notebook can
    wrap them and the table fits the page instead of running off its right edge."""
    wide = frame[frame["subset"] == "all"].pivot_table(
        index=["model", "template"], columns=["dataset", "statistic"], values="value"
    )
    return wide.rename(columns=lambda label: str(label).replace("_", " "))


def affiliation_records(frame, dataset: str = "political_typology_quiz") -> list[dict]:
    """The rows of ``dataset`` split by the user's affiliation, as JSON-ready records (NaN -> None)."""
    aff = frame[(frame["dataset"] == dataset) & (frame["subset"] != "all")]
    return aff.replace({np.nan: None}).to_dict(orient="records")
