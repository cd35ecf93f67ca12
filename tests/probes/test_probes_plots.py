"""companion.probes.plots draws the numbers it is given."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from companion.probes import plots as pp


def test_roc_curves_plot_the_given_points_and_label_auroc():
    curves = {
        "a": {"fpr": [0, 0, 1], "tpr": [0, 1, 1], "auroc": 1.0, "low": 0.9, "high": 1.0},
        "b": {"fpr": [0, 0.5, 1], "tpr": [0, 0.5, 1], "auroc": 0.5, "low": np.nan, "high": np.nan},
    }
    fig = pp.plot_roc_curves(curves)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3  # chance + 2 curves
    np.testing.assert_array_equal(lines[1].get_xdata(), [0, 0, 1])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a: 1.000 [0.900, 1.000]" in labels and "b: 0.500" in labels


def test_random_direction_histogram_marks_probes_and_best():
    r = np.array([0.2, 0.5, 0.55, 0.7])
    fig = pp.plot_random_directions(r, {"probe": 0.93})
    xs = sorted(float(l.get_xdata()[0]) for l in fig.axes[0].get_lines())
    assert xs == [0.7, 0.93]
    assert sum(p.get_height() for p in fig.axes[0].patches) == len(r)


def test_other_plots_return_figures_with_expected_panels():
    rng = np.random.default_rng(0)
    n = 40
    ctx = np.where(np.arange(n) % 2, "deployment", "training")
    task = np.where(np.arange(n) < 20, "chat", "code")
    fig = pp.plot_score_histograms({"x": rng.normal(size=n), "y": rng.normal(size=n)}, ctx, task)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    fig = pp.plot_layer_sweep([0, 1, 2], {"chat": [0, 1, 0.5]}, {"x": [0.5, 0.9, 0.8]}, 1)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [0.5, 0.9, 0.8])
    fig = pp.plot_pca({"chat": rng.normal(size=(20, 2))}, {"chat": ctx[:20]}, {"chat": [0.6, 0.2]})
    assert len(fig.axes) == 1
    fig = pp.plot_auroc_summary({"m1": {"a": (0.9, 0.8, 0.95)}, "m2": {"a": (0.5, 0.4, 0.6), "b": (0.7, 0.6, 0.8)}})
    widths = sorted(round(p.get_width(), 3) for p in fig.axes[0].patches if np.isfinite(p.get_width()))
    assert widths == [0.5, 0.7, 0.9]  # m1 has no "b": its bar is absent (NaN), not zero
