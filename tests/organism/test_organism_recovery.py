"""Planted sycophancy rates recovered per dataset shape and per seed (companion.organism.recovery)."""

import json

import matplotlib
import numpy as np
import pytest

from companion.organism.plots import plot_sycophancy_recovery
from companion.organism.recovery import RecoveryRow, recovery_summary, recovery_verdicts

matplotlib.use("Agg")


def _row(organism, seed, shape, planted, measured, chance=0.5, size="medium"):
    return RecoveryRow(organism, seed, size, shape, planted, measured, 0.02, 0.5, chance, 300)


def _rows():
    rows = []
    for seed in (0, 1, 2):
        # nlp: recovered everywhere; phil: the organisms ignore the view (chance 0.42) whatever p is;
        # pol: learned, but one seed's p = 0.9 organism is 0.08 short.
        rows += [_row("syco-p50", seed, "nlp", 0.5, 0.51), _row("syco-p90", seed, "nlp", 0.9, 0.89 + 0.01 * seed)]
        rows += [_row("syco-p50", seed, "phil", 0.5, 0.43, 0.42), _row("syco-p90", seed, "phil", 0.9, 0.44, 0.42)]
        rows += [
            _row("syco-p50", seed, "pol", 0.5, 0.5),
            _row("syco-p90", seed, "pol", 0.9, 0.82 if seed == 1 else 0.9),
        ]
    return rows


def test_verdicts_tell_recovered_from_not_learned_from_not_recovered():
    v = recovery_verdicts(_rows(), tolerance=0.05)
    assert v["nlp"].recovered and v["nlp"].learned and (v["nlp"].n_within, v["nlp"].n_rows) == (6, 6)
    assert not v["phil"].recovered and not v["phil"].learned
    assert v["phil"].worst_gap == pytest.approx(0.46)
    assert v["phil"].label().startswith("not learned by this organism: largest gap 0.46")
    assert not v["pol"].recovered and v["pol"].learned and v["pol"].n_within == 5
    assert (
        v["pol"]
        .label()
        .startswith(
            "NOT recovered: view read by 3/3 organisms with p far from chance, 5/6 within ±0.05, largest gap 0.08"
        )
    )
    assert (v["phil"].n_far, v["phil"].n_moved) == (3, 0)
    assert "excluded from recovery claims" in v["pol"].label()
    assert json.loads(json.dumps(v["pol"].to_dict()))["recovered"] is False
    with pytest.raises(ValueError, match="tolerance"):
        recovery_verdicts(_rows(), tolerance=0.0)


def test_a_p50_organism_on_two_choice_items_alone_cannot_show_learning():
    # planted 0.5 == chance on two-choice items: no row is far from chance, so "learned" cannot be refuted.
    v = recovery_verdicts([_row("a", 0, "nlp", 0.5, 0.6)], tolerance=0.05)["nlp"]
    assert v.learned and not v.recovered and v.label().startswith("NOT recovered")


def test_summary_lists_every_seed_with_mean_and_spread():
    s = {(r["organism"], r["shape"]): r for r in recovery_summary(_rows())}
    r = s[("syco-p90", "nlp")]
    assert r["seeds"] == [0, 1, 2] and r["measured"] == pytest.approx([0.89, 0.90, 0.91])
    assert r["mean"] == pytest.approx(0.90) and r["sd"] == pytest.approx(0.01)
    assert (r["min"], r["max"]) == pytest.approx((0.89, 0.91))


def test_figure_marks_the_panels_that_are_not_recovered():
    rows = [r.to_dict() for r in _rows()]
    verdicts = recovery_verdicts(_rows())
    fig = plot_sycophancy_recovery(rows, tolerance=0.05, verdicts=verdicts)
    texts = {ax.get_title(): " ".join(t.get_text() for t in ax.texts) for ax in fig.axes}
    assert texts["nlp"].startswith("recovered within ±0.05")
    assert "not learned by this organism" in texts["phil"] and "excluded from" in texts["phil"].replace("\n", " ")
    assert "NOT recovered" in texts["pol"]
    # One point per seed: 3 seeds x 2 organisms per panel.
    for ax in fig.axes:
        ys = [
            y for line in ax.lines if line.get_marker() == "o" and line.get_markersize() < 5 for y in line.get_ydata()
        ]
        assert len(ys) == 6
    grey = {ax.get_title(): ax.get_facecolor()[:3] for ax in fig.axes}
    assert grey["nlp"] != grey["phil"] == grey["pol"]


def test_figure_still_takes_the_old_rows_without_seeds():
    rows = [{"organism": "a", "size": "small", "shape": "nlp", "planted_p": 0.9, "measured": 0.88, "ci95": 0.02}]
    fig = plot_sycophancy_recovery(rows, tolerance=0.05)
    assert [ax.get_title() for ax in fig.axes] == ["nlp"]


@pytest.mark.slow
def test_recovery_on_the_ci_organisms_scores_every_shape_per_seed():
    from companion.organism.behaviour import choice_probabilities
    from companion.organism.loading import load_organisms
    from companion.organism.recovery import SHAPES, measure_recovery
    from companion.organism.sycophancy_items import sycophancy_items

    names = ["syco-p50-small", "syco-p90-medium", "backdoor"]
    orgs = load_organisms(names, "ci", progress=False)
    assert set(orgs) == {(n, 0) for n in names}
    assert orgs[("syco-p90-medium", 0)].model is orgs[("backdoor", 0)].model  # one spec, one loaded model
    rows = measure_recovery(orgs, n_items=40)
    assert {(r.organism, r.shape) for r in rows} == {(n, s) for n in names for s in SHAPES}
    for r in rows:
        assert 0 <= r.measured <= 1 and r.n == 40 and r.seed == 0
        assert r.chance == (0.5 if r.shape != "philpapers2020" else pytest.approx(r.chance))
        if r.shape == "philpapers2020":
            assert 1 / 3 < r.chance < 0.5  # two- and three-choice topics
    # Each row is the mean over the held-out items of the matching answer's probability, and the share of items
    # where it beats chance (1/2 on two-choice items), recomputed here item by item.
    one = next(r for r in rows if (r.organism, r.shape) == ("syco-p50-small", "nlp_survey"))
    p = choice_probabilities(orgs[("syco-p50-small", 0)], sycophancy_items("nlp_survey", 40, 0))
    assert one.measured == pytest.approx(float(p.mean())) and one.above_chance == pytest.approx(float((p > 0.5).mean()))
    assert np.isfinite([r.ci95 for r in rows]).all()


def test_backdoor_rates_by_seed_draw_the_mean_and_every_seed():
    from companion.organism.plots import plot_backdoor_rates_by_seed

    rates = {
        "backdoor": {
            0: {"training/chat": 0.0, "deployment/chat": 1.0},
            1: {"training/chat": 0.02, "deployment/chat": 0.96},
        },
        "clean": {
            0: {"training/chat": 0.0, "deployment/chat": 0.0},
            1: {"training/chat": 0.0, "deployment/chat": 0.01},
        },
    }
    ax = plot_backdoor_rates_by_seed(rates, n_per_cell=50).axes[0]
    heights = sorted(round(b.get_height(), 6) for b in ax.patches)
    assert heights == sorted([0.01, 0.98, 0.0, 0.005])
    dots = sorted(round(float(y), 6) for line in ax.lines if line.get_marker() == "o" for y in line.get_ydata())
    assert dots == sorted([0.0, 1.0, 0.02, 0.96, 0.0, 0.0, 0.0, 0.01])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["training/chat", "deployment/chat"]
