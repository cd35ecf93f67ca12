"""The SAE figures take plain numbers and draw exactly them (log-L0 axis, one panel per site, frontier lines)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from companion.sae import plots as sae_plots
from companion.sae.analysis import pareto_plot_data
from companion.sae.evaluation import SAEEval


def _rows():
    rows = []
    for t in ("m@blocks.0.hook_mlp_out", "m@blocks.1.hook_resid_pre"):
        for arch, pts in (
            ("gated", [(5, 0.9, 1.0), (20, 0.97, 0.99)]),
            ("baseline", [(8, 0.7, 0.8), (30, 0.95, 0.9), (15, 0.6, 0.85)]),
        ):
            for i, (l0, lr, g) in enumerate(pts):
                rows.append(
                    SAEEval(
                        t,
                        arch,
                        8,
                        float(i + 1),
                        l0,
                        lr,
                        1 - lr,
                        0.2,
                        g,
                        0.8,
                        1 / g,
                        0.0,
                        0.0,
                        2.0,
                        5.0,
                        2.0 + (1 - lr) * 3,
                    )
                )
    return rows


def test_pareto_plot_draws_every_point_and_the_frontier_per_panel():
    data = pareto_plot_data(_rows(), y="loss_recovered")
    fig = sae_plots.plot_pareto(data)
    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in axes] == list(data)
    for ax, _target in zip(axes, data, strict=True):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
        pts = np.concatenate([c.get_offsets() for c in ax.collections])
        assert len(pts) == 5
        lines = {tuple(l.get_xdata()) for l in ax.get_lines()}
        assert (8.0, 30.0) in lines, "baseline frontier skips the dominated (15, 0.6) point"
        assert (5.0, 20.0) in lines
    assert data[axes[0].get_title()]["baseline"]["frontier"] == [0, 1]


def test_second_view_frontier_prefers_lower_values():
    data = pareto_plot_data(_rows(), y="delta_lm_loss")
    # Δ LM loss = 1 − loss recovered here: lower is better, so the dominated point is still left out.
    assert data["m@blocks.0.hook_mlp_out"]["baseline"]["frontier"] == [0, 1]
    fig = sae_plots.plot_pareto(data, y="delta_lm_loss")
    assert "lower is better" in fig.axes[0].get_ylabel()


def test_gamma_plot_has_the_unbiased_reference_line():
    fig = sae_plots.plot_gamma(pareto_plot_data(_rows(), y="gamma"))
    ax = fig.axes[0]
    assert any(tuple(l.get_ydata()) == (1.0, 1.0) for l in ax.get_lines())
    assert ax.get_xscale() == "log"


def test_toy_and_asymmetry_plots():
    fig = sae_plots.plot_shrinkage_toy([0, 0.5, 1.0], [1, 0.75, 0.5], [1, 0.75, 0.5], [1, 1, 1])
    ys = [tuple(l.get_ydata()) for l in fig.axes[0].get_lines()]
    assert (1, 0.75, 0.5) in ys and (1, 1, 1) in ys
    cases = [
        {"name": "a", "gamma_first_version": 0.8, "gamma": 0.864, "rescaling": 1 / 0.864},
        {"name": "b", "gamma_first_version": 0.05, "gamma": 20.0, "rescaling": 0.05},
    ]
    fig = sae_plots.plot_gamma_asymmetry(cases)
    heights = sorted(round(p.get_height(), 4) for p in fig.axes[0].patches)
    assert heights == sorted(round(v, 4) for v in [0.8, 0.864, 1 / 0.864, 1.25, 0.05, 20.0, 0.05, 20.0])
    assert fig.axes[0].get_yscale() == "log"


def test_plots_refuse_nothing_to_draw():
    with pytest.raises(ValueError, match="nothing to plot"):
        sae_plots.plot_pareto({})
