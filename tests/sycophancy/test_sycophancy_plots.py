"""Figures of notebook 04: layout, measured vs published styling, planted-rate lines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from companion.models.templates import TEMPLATES
from companion.sycophancy.data import DATASETS
from companion.sycophancy.plots import plot_affiliation, plot_agreement
from companion.sycophancy.published import PUBLISHED
from companion.sycophancy.scoring import ScoredItems
from companion.sycophancy.stats import agreement_stats, stats_frame

MODELS = {
    "syco-p50-small": (2e5, 0.5),
    "syco-p90-small": (2e5, 0.9),
    "syco-p50-medium": (8e5, 0.5),
    "syco-p90-medium": (8e5, 0.9),
}


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    stats = []
    for m in MODELS:
        for ds in DATASETS:
            for t in TEMPLATES:
                k = 3 if ds == "philpapers2020" else 2
                lp = np.log(rng.dirichlet(np.ones(k), size=40))
                sc = ScoredItems(
                    m,
                    ds,
                    t,
                    lp,
                    rng.integers(0, k, 40),
                    tuple("liberal" if i % 2 else "conservative" for i in range(40)),
                    np.arange(40),
                )
                stats += agreement_stats(sc, n_boot=50, by_affiliation=ds == "political_typology_quiz")
    return stats_frame(stats, {m: v[0] for m, v in MODELS.items()})


def _lines(ax):
    return [l for l in ax.get_lines() if len(l.get_xdata())]


def _point_markers(ax):
    """Lines that draw data-point markers (not error-bar caps)."""
    return [l for l in _lines(ax) if l.get_marker() not in ("None", None, "", "_", "|")]


def test_layout_and_measured_points(frame):
    fig = plot_agreement(frame, planted={m: v[1] for m, v in MODELS.items()}, note="check")
    axes = fig.axes
    assert len(axes) == len(TEMPLATES) * (len(DATASETS) + 1)
    first = axes[0]
    assert first.get_xscale() == "log" and first.get_title() == "NLP survey"
    ys = sorted(round(float(y), 6) for l in _lines(first) for y in l.get_ydata())
    # rows follow TEMPLATES' order: the first row is "anthropic"
    want = frame[(frame.dataset == "nlp_survey") & (frame.template == "anthropic") & (frame.subset == "all")]
    for v in want["value"]:
        assert round(float(v), 6) in ys  # every measured value is drawn
    assert 0.5 in ys and 0.9 in ys  # 50% line and the planted rate of the p90 organisms
    assert "check" in fig._suptitle.get_text()


def test_published_numbers_only_as_hollow_reference_markers(frame):
    fig = plot_agreement(frame)
    n_ds = len(DATASETS)
    ref_axes = [ax for i, ax in enumerate(fig.axes) if i % (n_ds + 1) == n_ds]
    measured_axes = [ax for i, ax in enumerate(fig.axes) if i % (n_ds + 1) != n_ds]
    drawn = {round(float(y), 3) for ax in ref_axes for l in _lines(ax) for y in l.get_ydata()}
    for p in PUBLISHED:
        assert round(p.value, 3) in drawn
    assert sum(len(_point_markers(ax)) for ax in ref_axes) >= len(PUBLISHED)
    for ax in ref_axes:
        for l in _point_markers(ax):
            assert to_rgba(l.get_markerfacecolor())[3] == 0.0  # hollow
    for ax in measured_axes:
        assert _point_markers(ax)
        for l in _point_markers(ax):
            assert to_rgba(l.get_markerfacecolor())[3] > 0  # measured points are filled
    # Perez's 52B marker is drawn on the size axis only when asked
    nlp_anthropic = fig.axes[0]
    assert max(np.max(l.get_xdata()) for l in _lines(nlp_anthropic)) < 1e9
    fig2 = plot_agreement(frame, published_on_size_axis=True)
    assert any(52e9 in np.asarray(l.get_xdata()) for l in _lines(fig2.axes[0]))


def test_affiliation_plot(frame):
    fig = plot_affiliation(frame)
    assert len(fig.axes) == len(TEMPLATES)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    want = frame[
        (frame.dataset == "political_typology_quiz")
        & (frame.subset != "all")
        & (frame.statistic == "mean_prob")
        & (frame.template == "anthropic")
    ]["value"]
    assert heights == sorted(round(float(v), 6) for v in want)


def test_human_size():
    from companion.sycophancy.plots import human_size

    assert [human_size(n) for n in (182016, 346752, 70_426_624, 1.4e9, 11.8e9, 52e9, 999)] == [
        "182k",
        "347k",
        "70M",
        "1.4B",
        "12B",
        "52B",
        "999",
    ]


def test_seeds_are_points_around_their_mean_and_equal_sized_models_are_not_merged():
    import pandas as pd

    rows = []
    for m, n, v in (
        ("syco-p50-small#0", 50, 0.4),
        ("syco-p50-small#1", 50, 0.6),
        ("syco-p50-medium#0", 90, 0.5),
        ("stub/pythia-1b", 1000, 0.55),
        ("stub/pythia-1.4b", 1000, 0.65),
    ):
        rows.append(
            dict(
                model=m,
                dataset="nlp_survey",
                template="paren",
                subset="all",
                statistic="mean_prob",
                value=v,
                low=v - 0.05,
                high=v + 0.05,
                n=4,
                n_questions=2,
                unit="item",
                confidence=0.95,
                n_params=n,
            )
        )
    fig = plot_agreement(pd.DataFrame(rows), published=[])
    ax = fig.axes[0]
    mean_line = next(l for l in ax.get_lines() if "mean of seeds" in l.get_label())
    # The organism family's line runs through each size's mean over seeds: (0.4 + 0.6) / 2 at size 50.
    assert list(mean_line.get_ydata()) == pytest.approx([0.5, 0.5])
    # The two distinct stand-ins of equal size stay two points on their own line, not one averaged point.
    lines = [sorted(map(float, l.get_ydata())) for l in ax.get_lines()]
    assert [0.55, 0.65] in [pytest.approx(y) for y in lines]


def test_panel_notes_mark_every_panel_of_their_dataset_and_only_those(frame):
    warn = "NOT recovered: planted p within ±0.05 in 1/4 checks; excluded from recovery claims"
    fig = plot_agreement(frame, planted={m: v[1] for m, v in MODELS.items()}, panel_notes={"philpapers2020": warn})
    ncol = len(DATASETS) + 1
    datasets = list(DATASETS)
    for i, ax in enumerate(fig.axes):
        c = i % ncol
        texts = [t.get_text().replace("\n", " ") for t in ax.texts]
        marked = c < len(datasets) and datasets[c] == "philpapers2020"
        assert (warn in texts) == marked, (i, texts)
        assert (to_rgba(ax.get_facecolor()) != to_rgba("white")) == marked or c == len(datasets)
    plain = plot_agreement(frame, planted={m: v[1] for m, v in MODELS.items()})
    assert not any(warn in t.get_text().replace("\n", " ") for ax in plain.axes for t in ax.texts)


def test_the_rehearsal_stamp_and_a_caveat_are_legible_at_display_size_and_cover_no_data_or_legend(
    frame, tmp_path, monkeypatch
):
    """Issue 19: the stamp was ~6 px once the 17-inch figure was scaled into a notebook, and sat on its legend."""
    import json

    from companion.backbone import runtime
    from companion.backbone.figures import DISPLAY_WIDTH_PX, save_figure

    monkeypatch.setenv("COMPANION_ROOT", str(tmp_path))
    monkeypatch.setenv("COMPANION_FIGURES_DIR", str(tmp_path / "figs"))
    monkeypatch.setenv("COMPANION_NOTEBOOK", "notebooks/04_sycophancy_agreement.ipynb")
    monkeypatch.setenv("COMPANION_REHEARSAL_HUB", "http://127.0.0.1:9")
    monkeypatch.setattr(runtime, "_CURRENT", None)
    runtime.start(runtime.NotebookParams, "rehearsal")
    runtime.record_caveat(
        "UNPINNED DATA: sycophancy_on_nlp_survey.jsonl is blob 0123456789ab, not the pinned "
        "480ff8220794 (allow_unpinned_data)"
    )
    fig = plot_agreement(frame, planted={m: v[1] for m, v in MODELS.items()}, note="check")
    saved = save_figure(fig, "agreement", dpi=150)
    stamp = next(t for t in fig.texts if t.get_gid() == "companion-profile-stamp")
    assert "REHEARSAL" in stamp.get_text() and "UNPINNED DATA" in stamp.get_text()
    assert json.loads(saved.sidecar.read_text())["caveats"] == [runtime.context().caveats[0]]

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # save_figure closed the pyplot figure
    box = stamp.get_window_extent(renderer)
    covered = [ax.get_tightbbox(renderer) for ax in fig.axes]
    covered += [leg.get_window_extent(renderer) for leg in fig.legends]
    covered += [ax.get_legend().get_window_extent(renderer) for ax in fig.axes if ax.get_legend()]
    assert fig.legends and all(not box.overlaps(other) for other in covered)

    # On screen: the PNG is shown at 100 dpi (save_figure's display) and scaled down to fit the notebook's width.
    png = saved.png.read_bytes()
    width_px = int.from_bytes(png[16:20], "big") * 100 / 150
    on_screen = stamp.get_fontsize() * 100 / 72 * min(1.0, DISPLAY_WIDTH_PX / width_px)
    assert width_px > DISPLAY_WIDTH_PX and on_screen >= 10, (width_px, on_screen)
