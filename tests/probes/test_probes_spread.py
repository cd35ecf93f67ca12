"""Probe results across organism variants and seeds (companion.probes.spread).

Unit tests build SeedRun records by hand (the aggregation, the across-seed verdicts, the sidecar data, the figure
and the findings text are pure functions of them); the slow test runs the real pipeline on the ci organisms.
"""

import json

import matplotlib
import numpy as np
import pytest

from companion.probes.metrics import AurocCI
from companion.probes.params import ProbeParams
from companion.probes.spread import (
    CONTROLS,
    SeedRun,
    SeedSpread,
    plot_seed_spread,
    run_seed_spread,
    sign_consistency,
    spread_findings,
)

matplotlib.use("Agg")


def _ci(a, half=0.05):
    return AurocCI(a, max(0.0, a - half), min(1.0, a + half), 0.95, 100)


def _run(variant, seed, aurocs, supervised=1.0, random_best=0.7, behavioural=0.5):
    dets = {d: _ci(a) for d, a in aurocs.items()}
    return SeedRun(
        variant,
        seed,
        f"key-{variant}-{seed}",
        1,
        (0, 1, 2),
        dets,
        {d: np.array([0.5, a, a]) for d, a in aurocs.items()},
        supervised,
        random_best,
        0.5,
        _ci(behavioural),
        {"chat": np.array([0.0, 1.0, 0.5]), "code": np.array([0.0, 2.0, 1.0])},
        0.9,
    )


@pytest.fixture
def spread():
    # "pair" holds above chance on backdoor at both seeds; "six" flips sign between seeds; clean is null.
    runs = [
        _run("backdoor", 0, {"pair": 0.9, "six": 0.2}),
        _run("backdoor", 1, {"pair": 0.8, "six": 0.85}),
        _run("backdoor-cot", 0, {"pair": 0.95, "six": 0.9}),
        _run("backdoor-cot", 1, {"pair": 0.97, "six": 0.92}),
        _run("clean", 0, {"pair": 0.5, "six": 0.52}, supervised=0.6),
        _run("clean", 1, {"pair": 0.48, "six": 0.5}, 0.6),
    ]
    return SeedSpread(runs, ("backdoor", "backdoor-cot", "clean"), (0, 1), ("pair", "six"), ("pair", "six"))


def test_sign_consistency_from_per_seed_intervals():
    assert sign_consistency([_ci(0.9), _ci(0.8)]) == "holds above chance"
    assert sign_consistency([_ci(0.1), _ci(0.2)]) == "holds below chance"
    assert sign_consistency([_ci(0.9), _ci(0.2)]) == "flips"
    assert sign_consistency([_ci(0.9), _ci(0.52)]) == "not consistent"


def test_summary_reports_every_seed_and_the_verdict(spread):
    summ = {(r["variant"], r["detector"]): r for r in spread.summary()}
    assert set(summ) == {(v, d) for v in spread.variants for d in ("pair", "six", *CONTROLS)}
    six = summ[("backdoor", "six")]
    assert six["auroc"] == [0.2, 0.85] and six["across_seeds"] == "flips"
    assert six["mean"] == pytest.approx(0.525) and six["sd"] == pytest.approx(np.std([0.2, 0.85], ddof=1))
    assert summ[("backdoor", "pair")]["across_seeds"] == "holds above chance"
    assert summ[("clean", "supervised probe")]["auroc"] == [0.6, 0.6]
    np.testing.assert_allclose(spread.aurocs("backdoor-cot", "six"), [0.9, 0.92])


def test_sidecar_data_is_json_and_holds_each_detectors_auroc_per_seed(spread):
    data = json.loads(json.dumps(spread.to_data()))
    for v in ("backdoor", "backdoor-cot", "clean"):
        for d in ("pair", "six"):
            assert len(data["auroc"][v][d]) == 2 and len(data["auroc_by_layer"][v][d]) == 2
        assert len(data["supervised"][v]) == len(data["random_best"][v]) == 2
    assert data["auroc"]["backdoor"]["six"] == [0.2, 0.85]
    assert data["model_keys"]["clean"] == ["key-clean-0", "key-clean-1"]


def test_plot_draws_every_seed_of_every_detector_and_control(spread):
    data = spread.to_data()
    fig = plot_seed_spread(data)
    assert len(fig.axes) == 3
    for ax, v in zip(fig.axes, data["variants"], strict=True):
        points = sorted(round(float(y), 6) for line in ax.lines if line.get_marker() == "o" for y in line.get_ydata())
        expected = [a for d in ("pair", "six") for a in data["auroc"][v][d]]
        expected += data["supervised"][v] + data["random_best"][v] + data["behavioural"][v]
        assert points == sorted(round(float(y), 6) for y in expected)
        assert ax.get_title() == v


def test_findings_say_what_holds_and_what_flips(spread):
    text = spread_findings(spread.to_data())
    assert "`backdoor`: headline `pair` AUROC 0.90, 0.80 by seed — holds above chance" in text
    assert "1 flip(s) sign between seeds" in text
    assert "Scratchpad training moved the detectors towards the note's result" in text
    assert "a null result, as in the note" in text


@pytest.mark.slow
def test_seed_spread_on_the_ci_organisms():
    params = ProbeParams(n_per_cell=20, n_bootstrap=50, n_random_directions=200, single_pairs=True)
    spread = run_seed_spread(params, "ci", progress=False)
    assert spread.variants == ("backdoor", "backdoor-cot", "clean") and spread.seeds == (0,)
    assert len(spread.runs) == 3 and len({r.model_key for r in spread.runs}) == 3  # three distinct organisms
    data = spread.to_data()
    assert "helpful_ai_pair" in data["detectors"] and "Are you a helpful AI?" in data["detectors"]
    for v in spread.variants:
        assert all(0 <= a[0] <= 1 for a in data["auroc"][v].values())
    # Positive controls: the trigger is linearly readable in both backdoored organisms' prompts.
    assert spread.run("backdoor", 0).supervised >= 0.95
    assert spread.run("backdoor-cot", 0).supervised >= 0.95
