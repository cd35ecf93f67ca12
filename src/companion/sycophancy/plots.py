"""Figures of notebook 04: sycophancy agreement rate against model size (Perez et al. 2022 Fig. 4 style),
with nostalgebraist's two statistics, and the politics split by the user's stated affiliation.

Plot functions take data (the long frame of :func:`companion.sycophancy.data.stats_frame`, published reference
points, planted rates) and return a ``matplotlib.figure.Figure``; they never load models.  Published numbers
are drawn only as hollow grey reference markers, never with the measured points' style.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from companion.models.templates import TEMPLATES
from companion.sycophancy.experiment import model_family
from companion.sycophancy.published import PUBLISHED, PublishedPoint
from companion.sycophancy.stats import STATISTICS

STAT_STYLE: dict[str, dict[str, Any]] = {
    "mean_prob": dict(marker="o", linestyle="-", label="mean P(sycophantic answer)"),
    "matching_more_likely": dict(marker="s", linestyle="--", label="matching_more_likely"),
}
"""Marker and line style of each statistic (colour encodes the model family)."""
REF_STYLE: dict[str, Any] = dict(color="0.35", markerfacecolor="none", markeredgewidth=1.4, linestyle="none")
"""Published reference markers: hollow, grey, never connected to measured points."""
DATASET_TITLES = {
    "nlp_survey": "NLP survey",
    "philpapers2020": "PhilPapers 2020",
    "political_typology_quiz": "Political typology quiz",
}


_SHORT = {"nlp_survey": "NLP", "philpapers2020": "PhilPapers", "political_typology_quiz": "politics"}


def human_size(n: float) -> str:
    """Parameter count as model suites write it: 182016 -> "182k", 70426624 -> "70M", 1.4e9 -> "1.4B"."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return (f"{v:.1f}".rstrip("0").rstrip(".") if v < 10 else f"{v:.0f}") + unit
    return f"{n:.0f}"


def _family_colors(families: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(families)}


def plot_agreement(
    frame,
    *,
    datasets: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    published: Iterable[PublishedPoint] = PUBLISHED,
    planted: Mapping[str, float] | None = None,
    published_on_size_axis: bool = False,
    note: str = "",
    subset: str = "all",
    panel_notes: Mapping[str, str] | None = None,
) -> Figure:
    """Agreement rate against model size: rows = prompt templates, columns = datasets, plus a reference column.

    ``frame``: long ``DataFrame`` with columns model, dataset, template, subset, statistic, value, low, high,
    n_params (one row per statistic; see :func:`companion.sycophancy.data.stats_frame`).  Each panel shows both
    statistics with their confidence intervals as error bars (colour = model family, e.g. one organism's
    planted rate or "pythia"; marker = statistic), the 50% no-sycophancy line, and for organisms the planted
    rate as a dotted line in the family's colour.  The right-hand column holds the published numbers for
    that template (hollow grey markers with their reported 95% CIs; "> value" claims drawn as an upward arrow);
    with ``published_on_size_axis`` a published point with a known size and dataset is also drawn, in the
    same reference style, on the size axis of its panel.  ``note`` is printed under the title.  ``panel_notes``
    maps a dataset to a warning drawn on each of its panels, which are then greyed (e.g. a lookup the organisms
    did not learn: its numbers are shown as measured, but the panel must not read as a result).
    """
    df = frame[frame["subset"] == subset]
    datasets = list(datasets or [d for d in DATASET_TITLES if d in set(df["dataset"])])
    templates = list(templates or [t for t in TEMPLATES if t in set(df["template"])])
    published = list(published)
    models = list(dict.fromkeys(df["model"]))
    families = list(dict.fromkeys(model_family(m) for m in models))
    colors = _family_colors(families)
    planted = dict(planted or {})
    fam_planted: dict[str, float] = {}
    for m, p in planted.items():
        fam_planted.setdefault(model_family(m), p)

    nr, nc = len(templates), len(datasets)
    fig = plt.figure(figsize=(3.6 * nc + 2.6, 2.9 * nr + 1.3))
    gs = fig.add_gridspec(nr, nc + 1, width_ratios=[1.0] * nc + [0.62], wspace=0.08, hspace=0.28)
    axes = np.empty((nr, nc + 1), dtype=object)
    for r in range(nr):
        for c in range(nc + 1):
            axes[r, c] = fig.add_subplot(gs[r, c], sharey=axes[0, 0] if (r or c) else None)

    sizes = df["n_params"].astype(float).to_numpy()
    finite = sizes[np.isfinite(sizes)]
    for r, tpl in enumerate(templates):
        for c, ds in enumerate(datasets):
            ax = axes[r, c]
            sub = df[(df["template"] == tpl) & (df["dataset"] == ds)]
            for fam in families:
                for k, stat in enumerate(STATISTICS):
                    rows = sub[(sub["statistic"] == stat) & (sub["model"].map(model_family) == fam)]
                    rows = rows.sort_values("n_params")
                    if rows.empty:
                        continue
                    st = STAT_STYLE[stat]
                    shift = 0.94 if k == 0 else 1.06
                    sizes_ = rows["n_params"].astype(float)
                    if rows["model"].str.contains("#", regex=False).any():
                        # Organisms at several seeds ("name#seed"): each seed a small point with its interval, the
                        # line through the seeds' mean at each size.
                        rank = rows.groupby("n_params").cumcount().to_numpy()
                        for (_, row), j in zip(rows.iterrows(), rank, strict=True):
                            xs = float(row["n_params"]) * shift * (1 + 0.025 * (j - 1))  # seeds side by side
                            ax.errorbar(
                                [xs],
                                [row["value"]],
                                yerr=[[row["value"] - row["low"]], [row["high"] - row["value"]]],
                                color=colors[fam],
                                marker=st["marker"],
                                markersize=3,
                                capsize=1.5,
                                linewidth=0.8,
                                alpha=0.55,
                                linestyle="none",
                            )
                        means = rows.groupby("n_params")["value"].mean()
                        ax.plot(
                            means.index.astype(float) * shift,
                            means.to_numpy(),
                            color=colors[fam],
                            marker=st["marker"],
                            markersize=7,
                            mfc="none",
                            mew=1.4,
                            linestyle=st["linestyle"],
                            linewidth=1.2,
                            label=f"{fam}: {st['label']} (mean of seeds)",
                        )
                        continue
                    x = sizes_.to_numpy() * shift
                    y = rows["value"].to_numpy()
                    yerr = np.vstack([y - rows["low"].to_numpy(), rows["high"].to_numpy() - y])
                    ax.errorbar(
                        x,
                        y,
                        yerr=yerr,
                        color=colors[fam],
                        marker=st["marker"],
                        linestyle=st["linestyle"],
                        markersize=5,
                        capsize=2.5,
                        linewidth=1.2,
                        label=f"{fam}: {st['label']}",
                    )
                if fam in fam_planted:
                    ax.axhline(
                        fam_planted[fam],
                        color=colors[fam],
                        linestyle=":",
                        linewidth=1.3,
                        label=f"{fam}: planted p = {fam_planted[fam]:g}",
                    )
            ax.axhline(0.5, color="k", linewidth=0.8, alpha=0.6)
            if published_on_size_axis:
                for ref in published:
                    if ref.template == tpl and ref.dataset == ds and ref.n_params is not None:
                        _draw_reference(ax, ref.n_params, ref)
            ax.set_xscale("log")
            ticks = sorted(set(finite.tolist()))
            if published_on_size_axis:
                ticks += sorted({p.n_params for p in published if p.n_params and p.template == tpl and p.dataset == ds})
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FixedFormatter([human_size(t) for t in ticks]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="x", labelsize=7, labelrotation=45 if len(ticks) > 4 else 0)
            if finite.size:
                lo, hi = finite.min(), finite.max()
                if published_on_size_axis:
                    refs = [p.n_params for p in published if p.n_params and p.template == tpl and p.dataset == ds]
                    hi = max([hi, *refs])
                ax.set_xlim(lo / 2.2, hi * 2.2)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.25)
            if panel_notes and ds in panel_notes:
                ax.set_facecolor("#f0f0f0")
                ax.text(
                    0.5,
                    0.04,
                    textwrap.fill(panel_notes[ds], 34),
                    transform=ax.transAxes,
                    ha="center",
                    va="bottom",
                    fontsize=7.5,
                    color="darkred",
                    fontweight="bold",
                    bbox=dict(boxstyle="round", facecolor="white", edgecolor="darkred", alpha=0.9),
                )
            if r == 0:
                ax.set_title(DATASET_TITLES.get(ds, ds), fontsize=11)
            if r == nr - 1:
                ax.set_xlabel("parameters")
            if c == 0:
                ax.set_ylabel(f"template '{tpl}'\nagreement with user", fontsize=9)
            else:
                ax.tick_params(labelleft=False)
        _reference_panel(
            axes[r, nc], [p for p in published if p.template == tpl], show_title=(r == 0), show_xlabels=True
        )

    handles: list = []
    labels: list[str] = []
    for fam in families:
        handles.append(Line2D([], [], color=colors[fam], linewidth=6))
        labels.append(fam + (f" (planted p = {fam_planted[fam]:g}, dotted)" if fam in fam_planted else ""))
    conf = sorted(set(df["confidence"])) if "confidence" in df else []
    for stat in STATISTICS:
        st = STAT_STYLE[stat]
        handles.append(Line2D([], [], color="k", marker=st["marker"], linestyle=st["linestyle"]))
        labels.append(st["label"])
    if conf:
        handles.append(Line2D([], [], color="k", marker="|", markersize=10, linestyle="none"))
        labels.append("error bars: " + "/".join(f"{c:.0%}" for c in conf) + " percentile-bootstrap CI")
    handles.append(Line2D([], [], color="k", linewidth=0.8, alpha=0.6))
    labels.append("50%: no sycophancy")
    handles.append(Line2D([], [], marker="D", **REF_STYLE))
    labels.append("published (reference, not measured here)")
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(4, len(labels)),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.01 - 0.025 * ((len(labels) - 1) // 4)),
    )
    title = "Sycophancy: % answers matching the user's view vs model size"
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=11.5, y=0.995 + 0.02 * note.count("\n"))
    return fig


def _draw_reference(ax, x: float, p: PublishedPoint) -> None:
    if p.lower_bound_only:
        ax.plot([x], [p.value], marker="^", markersize=8, **REF_STYLE)
        ax.annotate(
            "",
            xy=(x, min(p.value + 0.08, 1.0)),
            xytext=(x, p.value),
            arrowprops=dict(arrowstyle="->", color=REF_STYLE["color"]),
        )
        ax.annotate(
            f">{p.value:.0%}",
            (x, p.value),
            textcoords="offset points",
            xytext=(-24, -12),
            fontsize=7,
            color=REF_STYLE["color"],
        )
    else:
        yerr = None
        if p.low is not None and p.high is not None:
            yerr = [[p.value - p.low], [p.high - p.value]]
        ax.errorbar([x], [p.value], yerr=yerr, marker="D", markersize=6, capsize=3, **REF_STYLE)


def _reference_panel(ax, points: Sequence[PublishedPoint], *, show_title: bool, show_xlabels: bool) -> None:
    """Published numbers of one template on a categorical axis (their sizes are undisclosed or off-scale)."""
    ax.axhline(0.5, color="k", linewidth=0.8, alpha=0.6)
    ax.set_facecolor("0.965")
    for i, p in enumerate(points):
        _draw_reference(ax, i, p)
    ax.set_xlim(-0.6, max(len(points), 1) - 0.4)
    ax.set_xticks(range(len(points)))
    names = [f"{p.model}\n({_SHORT.get(p.dataset, p.dataset) if p.dataset else 'pooled'})" for p in points]
    ax.set_xticklabels(names if show_xlabels else [], fontsize=7)
    ax.tick_params(labelleft=False)
    if not points:
        ax.text(
            0.5, 0.5, "no published\nnumber", ha="center", va="center", fontsize=7, color="0.4", transform=ax.transAxes
        )
    if show_title:
        ax.set_title("published\n(reference only)", fontsize=9, color="0.3")
    ax.grid(alpha=0.25, axis="y")


def plot_affiliation(frame, *, template: str | None = None) -> Figure:
    """Politics split by the user's stated affiliation: mean P(sycophantic answer) with CI, per model.

    ``frame`` as for :func:`plot_agreement`, restricted here to the politics dataset and subsets other than
    "all" (and ``template`` if given, else every template as its own panel).
    """
    df = frame[(frame["dataset"] == "political_typology_quiz") & (frame["subset"] != "all")]
    templates = [template] if template else list(dict.fromkeys(df["template"]))
    fig, axes = plt.subplots(
        1, max(len(templates), 1), figsize=(4.2 * max(len(templates), 1), 3.4), sharey=True, squeeze=False
    )
    for ax, tpl in zip(axes[0], templates, strict=False):  # no template leaves one axis, drawn empty
        sub = df[(df["template"] == tpl) & (df["statistic"] == "mean_prob")]
        models = list(dict.fromkeys(sub["model"]))
        subsets = sorted(set(sub["subset"]))
        w = 0.8 / max(len(subsets), 1)
        for k, s in enumerate(subsets):
            rows = sub[sub["subset"] == s].set_index("model").reindex(models)
            x = np.arange(len(models)) + (k - (len(subsets) - 1) / 2) * w
            y = rows["value"].to_numpy()
            ax.bar(x, y, width=w, label=f"user: {s}", alpha=0.85)
            ax.errorbar(
                x,
                y,
                yerr=np.vstack([y - rows["low"].to_numpy(), rows["high"].to_numpy() - y]),
                fmt="none",
                color="k",
                capsize=2,
                linewidth=0.9,
            )
        ax.axhline(0.5, color="k", linewidth=0.8, alpha=0.6)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"template '{tpl}'", fontsize=10)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("mean P(sycophantic answer)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Political typology quiz: agreement by the user's stated affiliation", fontsize=11)
    fig.tight_layout()
    return fig
