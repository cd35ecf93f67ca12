"""Figures of notebook 05: each function takes plain numbers (the ``*_data`` builders make them from a run, and the
same numbers go into the figure's sidecar) and returns a Figure.

* :func:`plot_recovery` — recovery (best single latent's AUROC, or k-sparse probe accuracy) against L0, one panel
  per target (row) and planted variable (column), a line per architecture through its sweep, the reseeded SAEs as
  error bars (range over seeds), the dense-probe ceiling as a dashed line and the random-direction floor as a band.
* :func:`plot_reseed` — each metric's value at every SAE seed per architecture (the reseed spread), one panel per
  metric, titled with how many architecture pairs it separates beyond that spread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from companion.backbone.figure_check import seed_summary
from companion.features import findings as ff
from companion.features.experiment import RecoveryRun
from companion.sae.plots import ARCH_STYLE, ORDER, log_l0_axis


def _value(r: Any, y: str) -> float:
    return r.auroc if y == "auroc" else r.accuracy[int(y[5:])]


def recovery_plot_data(run: RecoveryRun, y: str = "auroc") -> dict[str, Any]:
    """target -> variable -> {"series": arch -> {l0, y, setting}, "reseed": arch -> {l0, y, seeds}, "ceiling",
    "floor": [lo, hi]} for ``y`` = "auroc" or "acc_k<k>"."""
    out: dict[str, Any] = {}
    for ref in run.references:
        panel: dict[str, Any] = {"series": {}, "reseed": {}}
        for r in sorted(
            (r for r in run.rows if r.target == ref.target and r.variable == ref.variable), key=lambda r: r.l0
        ):
            bucket = panel["reseed" if r.reseed else "series"].setdefault(
                r.architecture, {"l0": [], "y": [], "setting" if not r.reseed else "seeds": []}
            )
            bucket["l0"].append(r.l0)
            bucket["y"].append(_value(r, y))
            bucket["setting" if not r.reseed else "seeds"].append(r.setting if not r.reseed else r.init_seed)
        # The sweep's own SAE at the chosen setting is the first seed of each reseeded architecture; the seeds'
        # values are seed summaries, which check-figures judges against their spread.
        for arch, d in panel["reseed"].items():
            setting = run.reseed.get(ref.target, {}).get(arch)
            first = [
                r
                for r in run.rows
                if r.target == ref.target
                and r.variable == ref.variable
                and not r.reseed
                and r.architecture == arch
                and r.setting == setting
            ]
            for r in first:
                d["l0"].insert(0, r.l0)
                d["y"].insert(0, _value(r, y))
                d["seeds"].insert(0, r.init_seed)
            d["l0"], d["y"] = seed_summary(d["l0"]), seed_summary(d["y"])
        if y == "auroc":
            panel["ceiling"], panel["floor"] = ref.dense_auroc, [min(ref.floor_auroc), max(ref.floor_auroc)]
        else:
            k = int(y[5:])
            panel["ceiling"] = ref.dense_accuracy
            panel["floor"] = [min(ref.floor_accuracy[k]), max(ref.floor_accuracy[k])]
        out.setdefault(ref.target, {})[ref.variable] = panel
    return out


def plot_recovery(data: Mapping[str, Mapping[str, Mapping[str, Any]]], ylabel: str, title: str = "") -> Figure:
    """Recovery against L0: rows are targets, columns planted variables (see the module docstring)."""
    targets = list(data)
    variables = list(next(iter(data.values()))) if targets else []
    if not targets or not variables:
        raise ValueError("nothing to plot: no targets or variables in the data")
    fig = Figure(figsize=(3.4 * len(variables) + 0.6, 2.9 * len(targets) + 0.8), layout="constrained")
    axes = fig.subplots(len(targets), len(variables), squeeze=False)
    for i, target in enumerate(targets):
        for j, v in enumerate(variables):
            ax, panel = axes[i][j], data[target][v]
            lo, hi = panel["floor"]
            ax.axhspan(
                lo,
                hi if hi > lo else lo + 0.004,
                color="#999999",
                alpha=0.35,
                lw=0,
                label="floor: random directions" if i == j == 0 else None,
            )
            ax.axhline(
                panel["ceiling"], color="#333333", ls="--", lw=1, label="ceiling: dense probe" if i == j == 0 else None
            )
            for arch in [a for a in ORDER if a in panel["series"]]:
                st, d = ARCH_STYLE[arch], panel["series"][arch]
                ax.plot(
                    d["l0"],
                    d["y"],
                    marker=st["marker"],
                    color=st["color"],
                    ms=4,
                    lw=1.2,
                    label=st["label"] if i == j == 0 else None,
                )
            for arch in [a for a in ORDER if a in panel["reseed"]]:
                st, d = ARCH_STYLE[arch], panel["reseed"][arch]
                yv, xv = np.asarray(d["y"]["per_seed"]), np.asarray(d["l0"]["per_seed"])

                def span(v):  # from the mean to the extremes; equal seeds give a mean a rounding off them
                    return [[max(v.mean() - v.min(), 0.0)], [max(v.max() - v.mean(), 0.0)]]

                ax.errorbar(
                    [float(xv.mean())],
                    [float(yv.mean())],
                    yerr=span(yv),
                    xerr=span(xv),
                    color=st["color"],
                    capsize=3,
                    lw=1.2,
                    marker="none",
                )
            log_l0_axis(ax)
            ax.set_title(f"{v} · {target.split('@', 1)[1]}", fontsize=9)
            if i == len(targets) - 1:
                ax.set_xlabel("L0 (log)")
            if j == 0:
                ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if any(data[t][v]["reseed"] for t in targets for v in variables):
        from matplotlib.lines import Line2D

        # A legend-only proxy (not drawn in any axes): the error bars are drawn in each architecture's colour.
        handles.append(Line2D([], [], color="#555555", marker="|", ms=9, lw=1.2))
        labels.append("reseeded SAE: range over SAE seeds")
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def reseed_plot_data(run: RecoveryRun, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """target -> {"metrics": metric -> arch -> {setting, seeds, values, mean, spread}, "separation": metric -> pair
    -> verdict, "labels": metric -> label, "range": metric -> arch -> max − min, "settings", "init_seeds"}; the
    values are seed summaries (companion.backbone.figure_check.seed_summary); ``metrics`` defaults to L0, loss recovered, γ and per variable the AUROC
    and the largest k's accuracy."""
    kmax = max(run.ks)
    names = list(
        metrics or (list(ff.BASE_METRICS) + [m for v in run.variables for m in (f"auroc:{v}", f"acc_k{kmax}:{v}")])
    )
    out = {}
    for target, values in ff.seed_values(run).items():
        sep = ff.separation(values)
        out[target] = {
            "metrics": {m: {a: seed_summary(d["values"]) for a, d in values[m].items()} for m in names if m in values},
            "range": {m: {a: d["spread"] for a, d in values[m].items()} for m in names if m in values},
            "settings": {a: d["setting"] for a, d in values["l0"].items()},
            "init_seeds": {a: d["seeds"] for a, d in values["l0"].items()},
            "separation": {m: sep[m] for m in names if m in sep},
            "labels": {m: ff.label(m) for m in names},
        }
    return out


def reseed_sidecar(run: RecoveryRun) -> dict[str, Any]:
    """The reseed figure's sidecar data: :func:`reseed_plot_data` for the plotted metrics and, for every metric
    (each k included), the per-seed values as seed summaries and the separation verdicts."""
    return {"targets": reseed_plot_data(run), "all_metrics": reseed_plot_data(run, ff.metric_names(run))}


def plot_reseed(data: Mapping[str, Mapping[str, Any]], title: str = "") -> Figure:
    """Per-seed values of each metric per architecture (one panel per target and metric)."""
    panels = [(t, m) for t, d in data.items() for m in d["metrics"]]
    if not panels:
        raise ValueError("nothing to plot: no reseeded SAEs in the data")
    ncol = min(5, len(panels))
    nrow = -(-len(panels) // ncol)
    fig = Figure(figsize=(2.9 * ncol, 2.5 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, (target, m) in zip(axes, panels, strict=False):  # the grid may have spare axes (hidden below)
        per = data[target]["metrics"][m]
        archs = [a for a in ORDER if a in per]
        for x, arch in enumerate(archs):
            st, vals = ARCH_STYLE[arch], per[arch]["per_seed"]
            ax.plot([x] * len(vals), vals, ls="none", marker=st["marker"], color=st["color"], ms=5, alpha=0.8)
            ax.plot([x - 0.25, x + 0.25], [per[arch]["mean"]] * 2, color=st["color"], lw=1.5)
        n_sep = sum(bool(c) for c in data[target]["separation"][m].values())
        n_pairs = len(archs) * (len(archs) - 1) // 2
        ax.set_title(
            f"{data[target]['labels'][m]}\n{n_sep}/{n_pairs} pairs separated · {target.split('@', 1)[1]}", fontsize=8
        )
        ax.set_xticks(range(len(archs)), archs, fontsize=7, rotation=30)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
