"""Figures of notebooks 01 and 02 (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated
Sparse Autoencoders", arXiv:2404.16014): each function takes plain numbers and returns a Figure.

* :func:`plot_pareto` — Figs. 1/5: loss recovered (y, linear) against L0 (x, log, "lower is sparser"), one point
  per SAE of each λ sweep, a Pareto frontier line per architecture, one panel per site.  The same function
  draws the second view (Δ LM loss or FVU on the y axis, lower is better), and the successors (JumpReLU, TopK,
  BatchTopK; points labelled by λ or k) and SAEs trained elsewhere beside the paper's two when the data has them.
* :func:`plot_gamma` — Fig. 6: relative reconstruction bias γ (corrected Eq. 10) against L0.
* :func:`plot_shrinkage_toy` — Fig. 2: the one-feature toy, reconstruction of x = 1 against λ.
* :func:`plot_gamma_asymmetry` — first-version γ₁, corrected γ, the best rescaling of x̂ and the first version's
  claimed rescaling 1/γ₁, side by side for the same reconstructions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from matplotlib.figure import Figure

ARCH_STYLE = {
    "gated": {"color": "#C44E52", "marker": "o", "label": "Gated SAE"},
    "baseline": {"color": "#4C72B0", "marker": "s", "label": "Baseline SAE (ReLU + L1)"},
    "jumprelu": {"color": "#55A868", "marker": "^", "label": "JumpReLU SAE"},
    "topk": {"color": "#8172B2", "marker": "D", "label": "TopK SAE"},
    "batchtopk": {"color": "#CCB974", "marker": "v", "label": "BatchTopK SAE"},
}
ORDER = ("baseline", "gated", "jumprelu", "topk", "batchtopk")
"""Drawing order of the architectures (the paper's two first); SAEs trained elsewhere come after them."""
_EXTERNAL_COLOURS = ("#222222", "#937860", "#DA8BC3", "#8C8C8C")


def _series(panel: Mapping[str, Any]) -> list[str]:
    """The series of a panel in drawing order."""
    return [a for a in ORDER if a in panel] + [s for s in panel if s not in ORDER]


def _style(series: str, i: int) -> dict[str, Any]:
    """An architecture's style, or one for an SAE trained elsewhere (black-ish stars, labelled by its source)."""
    if series in ARCH_STYLE:
        return ARCH_STYLE[series]
    return {"color": _EXTERNAL_COLOURS[i % len(_EXTERNAL_COLOURS)], "marker": "*", "label": series}


def _setting_labels(d: Mapping[str, Any]) -> list[str]:
    """Per point, "λ=…" or "k=…" (none for an SAE trained elsewhere)."""
    if "lam" in d:
        return [f"λ={v:g}" for v in d["lam"]]
    if "k" in d:
        return [f"k={v:g}" for v in d["k"]]
    return [""] * len(d["x"])


Y_LABELS = {
    "loss_recovered": "loss recovered (fidelity)",
    "delta_lm_loss": "Δ LM loss (nats / token, lower is better)",
    "fvu": "fraction of variance unexplained (lower is better)",
    "gamma": "relative reconstruction bias γ",
}


def log_l0_axis(ax) -> None:
    """Log x axis with plain-number ticks at 1, 2, 5 × 10^k (the default minor labels collide on short ranges)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _panels(n: int, width: float = 4.4, height: float = 3.6):
    if n < 1:
        raise ValueError("nothing to plot: no targets in the data")
    fig = Figure(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, axes


def plot_pareto(
    data: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    y: str = "loss_recovered",
    title: str = "Gated vs baseline SAEs: fidelity against sparsity",
    annotate_lambda: bool = True,
) -> Figure:
    """``data[target][architecture]`` has ``x`` (L0), ``y``, ``lam`` lists and ``frontier`` (indices in L0 order).

    One panel per target.  x is log-scaled (L0, lower is sparser); y is linear.
    """
    targets = list(data)
    fig, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        for i, arch in enumerate(_series(data[target])):
            d = data[target].get(arch)
            if not d:
                continue
            st = _style(arch, i)
            xs, ys = np.asarray(d["x"], float), np.asarray(d["y"], float)
            ax.scatter(xs, ys, color=st["color"], marker=st["marker"], s=30, zorder=3, label=st["label"])
            fr = cast(list[int], list(d.get("frontier", [])))  # indices into xs, not floats
            if len(fr) > 1:
                ax.plot(xs[fr], ys[fr], color=st["color"], lw=1.5, zorder=2)
            if annotate_lambda:
                for xv, yv, text in zip(xs, ys, _setting_labels(d), strict=True):
                    ax.annotate(
                        text, (xv, yv), textcoords="offset points", xytext=(3, 3), fontsize=6, color=st["color"]
                    )
        log_l0_axis(ax)
        ax.set_xlabel("L0 (active latents per token, lower is sparser)")
        ax.set_ylabel(Y_LABELS.get(y, y))
        ax.set_title(target, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if y == "loss_recovered":
            lo = min(min(v["y"]) for v in data[target].values() if v)
            ax.set_ylim(max(lo - 0.05, -0.2), 1.01)
    axes[0].legend(fontsize=7, loc="lower right" if y == "loss_recovered" else "upper right")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_gamma(
    data: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    title: str = "Shrinkage: relative reconstruction bias γ against L0",
) -> Figure:
    """``data[target][architecture]`` has ``x`` (L0), ``y`` (γ) and ``lam``; a dashed line marks γ = 1 (unbiased)."""
    targets = list(data)
    fig, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="γ = 1 (no shrinkage)")
        for i, arch in enumerate(_series(data[target])):
            d = data[target].get(arch)
            if not d:
                continue
            st = _style(arch, i)
            order = np.argsort(d["x"])
            xs, ys = np.asarray(d["x"], float)[order], np.asarray(d["y"], float)[order]
            ax.plot(xs, ys, color=st["color"], marker=st["marker"], ms=5, lw=1.2, label=st["label"])
        log_l0_axis(ax)
        ax.set_xlabel("L0 (active latents per token)")
        ax.set_ylabel("γ = E‖x̂‖² / E[x·x̂]   (< 1: shrinkage)")
        ax.set_title(target, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_shrinkage_toy(
    lams: Sequence[float], analytic: Sequence[float], baseline: Sequence[float], gated: Sequence[float]
) -> Figure:
    """Reconstruction of x = 1 by a one-latent SAE against λ (paper Fig. 2): baseline follows 1 − λ/2."""
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(lams, analytic, color="black", ls=":", lw=1.5, label="argmin (f − 1)² + λf = 1 − λ/2")
    ax.plot(
        lams, baseline, color=ARCH_STYLE["baseline"]["color"], marker="s", ls="none", label="baseline SAE (trained)"
    )
    ax.plot(lams, gated, color=ARCH_STYLE["gated"]["color"], marker="o", ls="none", label="gated SAE (trained)")
    if 1.0 in list(lams):
        i = list(lams).index(1.0)
        ax.annotate(
            "λ = 1: half of x",
            (1.0, baseline[i]),
            xytext=(0.15, 0.3),
            fontsize=8,
            arrowprops={"arrowstyle": "->", "lw": 0.8},
        )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("sparsity coefficient λ")
    ax.set_ylabel("reconstruction x̂ of x = 1")
    ax.set_ylim(0, 1.15)
    ax.set_title("One feature, one latent: L1 shrinks the baseline, not the gated SAE", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return fig


def plot_gamma_asymmetry(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Grouped bars per case: first-version γ₁, corrected γ, best rescaling E[x·x̂]/E‖x̂‖², and 1/γ₁.

    ``rows`` are dicts with ``name``, ``gamma_first_version``, ``gamma`` and ``rescaling``.  The y axis is
    logarithmic because for nearly perpendicular x, x̂ the claimed rescaling 1/γ₁ and γ are large while γ₁ and
    the best rescaling are ~0.
    """
    names = [r["name"] for r in rows]
    series = [
        ("γ₁ (first version): argmin E‖x̂ − γx‖²", [r["gamma_first_version"] for r in rows], "#8172B2"),
        ("γ (corrected Eq. 10): argmin E‖x̂/γ − x‖²", [r["gamma"] for r in rows], "#C44E52"),
        ("best rescaling: argmin E‖s·x̂ − x‖² = 1/γ", [r["rescaling"] for r in rows], "#55A868"),
        ("claimed rescaling 1/γ₁", [1 / r["gamma_first_version"] for r in rows], "#CCB974"),
    ]
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 5.0), layout="constrained")
    ax = fig.subplots()
    w = 0.8 / len(series)
    xs = np.arange(len(rows))
    for k, (label, vals, colour) in enumerate(series):
        ax.bar(xs + (k - 1.5) * w, vals, width=w, color=colour, label=label)
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(xs, names, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("value (log scale)")
    ax.set_title("The γ asymmetry: same reconstructions, three definitions", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)
    return fig
