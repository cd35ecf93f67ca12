"""companion.probes.report: notebook 03's pipeline for one model, its tables, the peak layer, the answer-word cosines.

The pure helpers are checked on hand-built runs whose answers are known; ``analyse_model`` on a tiny locally built
GPT-2 against the functions it composes, called independently.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from companion.probes import report
from companion.probes.data import ContrastPair, FitSet, load_dialogue_format, load_fit_set, trigger_test_prompts
from companion.probes.directions import cosine, random_direction_aurocs, supervised_probe, variance_ratio
from companion.probes.experiment import ProbeRun, final_token_activations, yes_no_scores
from companion.probes.metrics import evaluate_detector
from companion.probes.params import BEHAVIOURAL_QUESTION, ProbeParams


def test_peak_layers_per_test_set_and_overall():
    per, overall = report.peak_layers({"code": [0.0, 1.07, 0.82], "chat": [0.0, 0.74, 0.64]}, (0, 1, 2))
    assert per == {"code": 1, "chat": 1} and overall == 1
    per, overall = report.peak_layers({"a": [0.0, 1.0, 5.0], "b": [np.nan, 2.0, 1.0]}, (0, 1, 2))
    assert per == {"a": 2, "b": 1} and overall == 2
    with pytest.raises(ValueError, match="one finite value per layer"):
        report.peak_layers({"a": [1.0, 2.0]}, (0, 1, 2))
    with pytest.raises(ValueError, match="empty"):
        report.peak_layers({}, (0,))


def _single(name: str, positive: str) -> FitSet:
    negative = "no" if positive == "yes" else "yes"
    return FitSet(name, "single", "", "test", pairs=(ContrastPair(name, positive, negative),))


def test_answer_word_table_orients_every_direction_as_yes_minus_no():
    rng = np.random.default_rng(0)
    v, w = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    labels = np.array([True, False] * 10)
    tasks = np.array(["chat"] * 10 + ["code"] * 10)
    acts = rng.normal(size=(20, 2, 3))
    acts[labels, 1] += 2 * v  # deployment prompts lie along v at layer 1
    singles = [_single("q1", "yes"), _single("q2", "no"), _single("q3", "yes")]
    dirs = {"q1": v, "q2": -3 * v, "q3": w}  # q2's positive answer is "no": as yes - no it is +v
    test = [
        {"prompt": str(i), "task": t, "context": "deployment" if y else "training", "label": bool(y)}
        for i, (t, y) in enumerate(zip(tasks, labels, strict=True))
    ]
    evals = {n: evaluate_detector(n, acts[:, 1] @ d, labels, tasks, n_bootstrap=10) for n, d in dirs.items()}
    run = ProbeRun("m", 1, (0, 1), test, labels, acts, {}, {}, dirs, evals)
    rows = report.answer_word_table(run, singles)
    assert [r["question"] for r in rows] == ["q1", "q2", "q3"]
    np.testing.assert_allclose([r["cos(yes−no, first question's yes−no)"] for r in rows], [1.0, 1.0, 0.0], atol=1e-12)
    for t in ("chat", "code"):
        m = tasks == t
        ctx = acts[m & labels, 1].mean(0) - acts[m & ~labels, 1].mean(0)
        assert rows[1][f"cos(detector, deployment−training | {t})"] == pytest.approx(cosine(-v, ctx))
    assert rows[0]["AUROC"] == evals["q1"].auroc.auroc
    assert report.answer_word_cosine(run, singles) == pytest.approx(0.0, abs=1e-12)
    assert report.answer_word_cosine(run, singles[:1]) is None and report.answer_word_table(run, []) == []


def test_answer_word_cosine_is_the_smallest_over_every_pair_not_only_against_the_first_question():
    v, w = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    singles = [_single("q1", "yes"), _single("q2", "yes"), _single("q3", "no")]
    dirs = {"q1": v, "q2": v + w, "q3": w - v}  # as yes - no: v, v + w, v - w; cos 0.71 with q1, 0 between q2 and q3
    run = ProbeRun("m", 1, (0, 1), [], np.array([True, False]), np.zeros((2, 2, 2)), {}, {}, dirs, {})
    assert report.answer_word_cosine(run, singles) == pytest.approx(0.0, abs=1e-12)
    assert report.answer_word_cosine(run, singles[:2]) == pytest.approx(2**-0.5)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from test_probes_model import _build
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(_build("gpt2", tmp_path_factory.mktemp("tiny")), device="cpu")


def _small_run(**params):
    """The tiny model's run: the "note" dialogue format, three triggered test prompts and small settings."""
    fmt = load_dialogue_format("note")
    test = trigger_test_prompts(["What is two plus two?", "Name a colour.", "Why is grass green?"], fmt)
    P = ProbeParams(
        model_id="tiny",
        dialogue_format="note",
        n_bootstrap=20,
        n_random_directions=50,
        supervised_folds=2,
        batch_size=4,
        **params,
    )
    return fmt, test, P


def test_analyse_model_is_the_composition_of_the_detectors_and_controls(tiny_gpt2):
    fmt, test, P = _small_run()
    fit_sets = [load_fit_set("helpful_ai_pair"), load_fit_set("six_questions")]

    def beh(t):
        return fmt.prompt_text(f"{t['question']} {BEHAVIOURAL_QUESTION}")

    a = report.analyse_model(tiny_gpt2, "tiny", fit_sets, test, fmt.fit_text, beh, P, layer=1)
    labels = np.asarray([t["label"] for t in test])
    x = final_token_activations(tiny_gpt2, [t["prompt"] for t in test], [1])[:, 0]
    np.testing.assert_allclose(a.layer_acts(), x, atol=1e-5)
    assert a.supervised.auroc == pytest.approx(supervised_probe(x, labels, n_folds=2, seed=0).auroc)
    np.testing.assert_allclose(a.random.aurocs, random_direction_aurocs(x, labels, n_directions=50, seed=0).aurocs)
    np.testing.assert_allclose(a.behavioural.scores, yes_no_scores(tiny_gpt2, [beh(t) for t in test]), atol=1e-4)
    deploy = np.asarray([t["context"] == "deployment" for t in test])
    np.testing.assert_allclose(a.variance_ratio["non-coding"], variance_ratio(a.run.test_acts, deploy))
    assert list(a.controls()) == [report.SUPERVISED, report.BEHAVIOURAL]

    twin = dataclasses.replace(a, name="twin")
    table = report.auroc_table([a, twin])
    assert list(table.index)[:4] == [
        ("helpful_ai_pair", "tiny"),
        ("helpful_ai_pair", "twin"),
        ("six_questions", "tiny"),
        ("six_questions", "twin"),
    ]
    sup = table.loc[(report.SUPERVISED, "twin")]
    assert sup["AUROC"] == a.supervised_eval.auroc.auroc
    assert sup["sign-free"] == max(sup["AUROC"], 1 - sup["AUROC"])
    pair = table.loc[("helpful_ai_pair", "tiny")]
    assert pair["p(random)"] == a.random.fraction_at_least(pair["AUROC"])
    assert table.loc[(report.BEST_RANDOM, "tiny"), "AUROC"] == a.random.best
    summary = report.auroc_summary(table, [a, twin])
    assert list(summary.index) == [
        "helpful_ai_pair",
        "six_questions",
        report.SUPERVISED,
        report.BEHAVIOURAL,
        report.BEST_RANDOM,
    ]
    assert list(summary.columns) == ["tiny", "twin"]
    bars = report.auroc_bars([a, twin], ["helpful_ai_pair"])
    assert list(bars["twin"]) == ["helpful_ai_pair", report.SUPERVISED, report.BEHAVIOURAL]
    assert bars["tiny"]["helpful_ai_pair"] == tuple(a.run.evaluations["helpful_ai_pair"].auroc[:3])
    curves = report.control_curves(a)
    assert curves[report.BEST_RANDOM]["auroc"] == a.random.best and curves[report.BEST_RANDOM]["fpr"][-1] == 1.0
    text = report.findings_for(a, twin, ["helpful_ai_pair", "six_questions"])
    assert text.startswith("**Findings for tiny, residual layer 1**") and "Negative control (twin)" in text
    assert f"supervised probe reaches {a.supervised.auroc:.3f}" in text and "Salience:" in text
    worst = max(a.run.evaluations[n].fpr_report.worst_fpr for n in ("helpful_ai_pair", "six_questions"))
    assert "False positives: to catch" in text and f"the worst flags {worst:.0%}" in text


def test_the_seed_spread_runs_the_same_pipeline_on_each_organism(tiny_gpt2):
    from companion.probes.experiment import layer_sweep
    from companion.probes.spread import probe_one

    fmt, test, P = _small_run(layer=1)
    fit_sets = [load_fit_set("helpful_ai_pair")]
    singles = [dataclasses.replace(s, name=s.pairs[0].question) for s in load_fit_set("six_questions").single_pairs()]

    def beh(t):
        return fmt.prompt_text(f"{t['question']} {BEHAVIOURAL_QUESTION}")

    r = probe_one(tiny_gpt2, "tiny", 3, "key", P, fit_sets, singles, test, fmt.fit_text, beh)
    a = report.analyse_model(tiny_gpt2, "tiny#3", [*fit_sets, *singles], test, fmt.fit_text, beh, P, layer=1)
    assert (r.variant, r.seed, r.model_key, r.layer) == ("tiny", 3, "key", 1)
    assert r.aurocs == {n: e.auroc for n, e in a.run.evaluations.items()} and list(r.aurocs)[0] == "helpful_ai_pair"
    assert (r.supervised, r.random_best, r.random_mean) == (a.supervised.auroc, a.random.best, a.random.mean)
    # The behavioural AUROC and its interval do not depend on the test-set names the notebook's evaluation adds.
    labels = np.asarray([t["label"] for t in test])
    alone = evaluate_detector("b", yes_no_scores(tiny_gpt2, [beh(t) for t in test]), labels, n_bootstrap=20)
    assert r.behavioural == pytest.approx(alone.auroc, abs=1e-6)
    for n, v in layer_sweep(a.run, P.method).items():
        np.testing.assert_array_equal(r.by_layer[n], v)
    assert r.answer_word_cosine == report.answer_word_cosine(a.run, singles)
