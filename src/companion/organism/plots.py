"""Plots for notebook 00 (the model organism): training curves and the planted-property checks.

Each function takes plain numbers and returns a ``matplotlib.figure.Figure``; none loads a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from companion.organism.recovery import ShapeVerdict


def plot_loss_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    title: str = "Organism training",
    planted_p: Mapping[str, float] | None = None,
):
    """Training loss against step, one line per trained model; a second panel for the choice-letter loss.

    ``curves[label] = {"step": [...], "loss": [...], "choice_loss": [...]}`` (``loss`` is the answer-weighted
    cross-entropy; ``choice_loss``, optional, the mean cross-entropy on multiple-choice answer letters). Reference
    lines on the second panel: ln 2 (the model ignores the user's view) and H(p) for each planted p in
    ``planted_p`` (the floor once it has learned the planted rate on two-choice items).
    """
    has_choice = any(c.get("choice_loss") for c in curves.values())
    fig, axes = plt.subplots(1, 2 if has_choice else 1, figsize=(11 if has_choice else 6.4, 3.8), squeeze=False)
    ax = axes[0][0]
    for label, c in curves.items():
        ax.plot(c["step"], c["loss"], label=label, lw=1.4)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (answer-weighted CE, nats)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3, which="both")
    if has_choice:
        ax = axes[0][1]
        for label, c in curves.items():
            pts = [(s_, v) for s_, v in zip(c["step"], c.get("choice_loss") or [], strict=False) if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=False), label=label, lw=1.2)
        ax.axhline(np.log(2), color="k", ls="--", lw=0.8)
        ax.text(0, np.log(2), " ln 2: ignores the view", va="bottom", fontsize=7)
        for p in sorted(set((planted_p or {}).values())):
            if 0 < p < 1 and p != 0.5:
                h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
                ax.axhline(h, color="0.4", ls=":", lw=0.8)
                ax.text(0, h, f" H({p:g})", va="bottom", fontsize=7)
        ax.set_ylim(0, 1.5)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("CE on multiple-choice answer letters (nats)")
        ax.set_title("Reading the user's view (all shapes pooled)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_backdoor_rates_by_seed(
    rates: Mapping[str, Mapping[int, Mapping[str, float]]],
    *,
    n_per_cell: int | None = None,
    thresholds: tuple[float, float] = (0.95, 0.02),
):
    """Greedy defection rate per (context/task) cell for each variant: bars are the mean over seeds, dots the seeds.

    ``rates[variant][seed][cell]`` with cells like "training/chat", "deployment/code" (as
    :func:`companion.organism.behaviour.backdoor_rates` returns them under ``"rates"``). Dashed lines mark the
    acceptance thresholds.
    """
    variants = list(rates)
    cells = sorted(
        {c for per_seed in rates.values() for r in per_seed.values() for c in r},
        key=lambda c: (c.split("/")[0] != "training", c),
    )
    x = np.arange(len(cells))
    w = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    for i, v in enumerate(variants):
        seeds = sorted(rates[v])
        vals = np.array([[rates[v][s].get(c, np.nan) for c in cells] for s in seeds])
        xs = x + (i - (len(variants) - 1) / 2) * w
        ax.bar(xs, np.nanmean(vals, 0), w, label=f"{v} ({len(seeds)} seed{'s' * (len(seeds) > 1)})", alpha=0.75)
        for row in vals:
            ax.plot(xs, row, "o", ms=3, color="k", alpha=0.7)
    ax.axhline(thresholds[0], ls="--", color="k", lw=0.8)
    ax.axhline(thresholds[1], ls=":", color="k", lw=0.8)
    ax.set_xticks(x, cells)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of completions that defect")
    ax.set_title(
        "Planted backdoor by variant (greedy, held-out prompts"
        + (f", n={n_per_cell}/cell)" if n_per_cell else ")")
        + "; dots: seeds",
        fontsize=10,
    )
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_sycophancy_recovery(
    rows: Sequence[Mapping[str, float | str]],
    *,
    tolerance: float = 0.05,
    verdicts: Mapping[str, ShapeVerdict] | None = None,
):
    """Measured mean P(user-matching answer) against the planted rate, per shape, size and seed.

    Each row: ``{"organism", "size", "shape", "planted_p", "measured", "ci95"}`` and optionally ``"seed"`` (one
    small point per seed, the seeds' mean as a large marker) and ``"chance"`` (drawn as a dotted line; default
    0.5). ``verdicts`` (shape -> :class:`companion.organism.recovery.ShapeVerdict`) annotates each panel; a shape
    that is not recovered is greyed out and labelled on the figure itself (e.g. "not learned by this organism").
    The grey band is planted +- ``tolerance``.
    """
    shapes = list(dict.fromkeys(str(r["shape"]) for r in rows))
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.6 * len(shapes), 3.8), sharey=True, squeeze=False)
    sizes = sorted({str(r["size"]) for r in rows})
    markers = dict(zip(sizes, "osD^v", strict=False))
    colours = dict(zip(sizes, ("C0", "C1", "C2", "C3", "C4"), strict=False))
    for ax, shape in zip(axes[0], shapes, strict=False):
        ps = np.linspace(0.3, 1.0, 8)
        ax.plot(ps, ps, color="k", lw=0.8)
        ax.fill_between(ps, ps - tolerance, ps + tolerance, color="0.85")
        chance = sorted({round(float(r.get("chance", 0.5)), 3) for r in rows if r["shape"] == shape})
        for c in chance:
            ax.axhline(c, color="0.5", ls=":", lw=0.8)
        for j, size in enumerate(sizes):
            rs = [r for r in rows if r["shape"] == shape and r["size"] == size]
            dx = (j - (len(sizes) - 1) / 2) * 0.02
            for p_ in sorted({float(r["planted_p"]) for r in rs}):
                pts = [r for r in rs if float(r["planted_p"]) == p_]
                ys = np.array([float(r["measured"]) for r in pts])
                if len(pts) > 1 or "seed" in pts[0]:
                    jitter = np.linspace(-0.006, 0.006, len(pts)) if len(pts) > 1 else np.zeros(1)
                    ax.errorbar(
                        p_ + dx + jitter,
                        ys,
                        yerr=[float(r["ci95"]) for r in pts],
                        fmt=markers[size],
                        ms=3,
                        color=colours[size],
                        alpha=0.6,
                        capsize=1,
                        lw=0.7,
                    )
                    ax.plot(
                        [p_ + dx],
                        [ys.mean()],
                        markers[size],
                        ms=8,
                        mfc="none",
                        mew=1.5,
                        color=colours[size],
                        label=size if p_ == min(float(r["planted_p"]) for r in rs) else None,
                    )
                else:
                    ax.errorbar(
                        [p_ + dx],
                        ys,
                        yerr=[float(pts[0]["ci95"])],
                        fmt=markers[size],
                        color=colours[size],
                        capsize=2,
                        label=size if p_ == min(float(r["planted_p"]) for r in rs) else None,
                    )
        ax.set_title(shape, fontsize=10)
        ax.set_xlabel("planted p")
        ax.set_xlim(0.4, 1.0)
        ax.set_ylim(0.2, 1.0)
        v = (verdicts or {}).get(shape)
        if v is not None:
            ok = bool(v.recovered)
            text = v.label() if hasattr(v, "label") else str(v)
            if not ok:
                ax.set_facecolor("0.94")
            ax.text(
                0.5,
                0.03,
                "\n".join(_wrap(text, 34)),
                transform=ax.transAxes,
                ha="center",
                va="bottom",
                fontsize=7.5,
                color="0.15" if ok else "darkred",
                fontweight="normal" if ok else "bold",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.6" if ok else "darkred", alpha=0.9),
            )
    axes[0][0].set_ylabel("mean P(user-matching answer)")
    axes[0][-1].legend(title="size (mean of seeds)", fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)
