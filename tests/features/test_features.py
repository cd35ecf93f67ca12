"""Notebook 05's planted variables (labels from the generator), pooling, reseed bookkeeping and the separation rule."""

import math

import pytest
import torch

from companion.features import findings as ff
from companion.features.experiment import RecoveryRow, RecoveryRun, Reference, SiteActivations, reseed_params
from companion.features.params import FeatureParams
from companion.features.variables import planted_variable
from companion.organism.corpus import DEPLOYMENT_CONTEXTS, TRAINING_CONTEXT, CorpusConfig
from companion.organism.world import split_of
from companion.sae.experiment import sweep_specs

CORPUS = CorpusConfig(mix={"story": 1, "code": 1, "chat": 1, "syco_nlp": 1})


def test_deployment_and_user_view_labels_come_from_the_generator():
    dep = planted_variable("deployment", 40, 0, CORPUS)
    assert len(dep.texts) == 40 and int(dep.labels.sum()) == 20 and dep.pool == "last"
    for text, y in zip(dep.texts, dep.labels.tolist(), strict=True):
        assert text.endswith("Assistant:")
        assert any(c in text for c in DEPLOYMENT_CONTEXTS) == y and (TRAINING_CONTEXT in text) == (not y)
        question = (
            text[len("Human: ") :]
            .split("\n\n")[0]
            .split(" ", 3 if TRAINING_CONTEXT in text or "Current year" in text else 1)[-1]
        )
        assert split_of(question) == "heldout"
    view = planted_variable("user_view", 40, 0, CORPUS)
    assert view.pool == "last" and 0 < int(view.labels.sum()) < 40
    from companion.features.variables import _FRESH
    from companion.organism.sycophancy_items import sycophancy_items

    items = sycophancy_items("nlp_survey", 20, seed=_FRESH, split="heldout")
    assert [it.matching.strip() == "(A)" for it in items] == view.labels[:20].tolist()
    assert planted_variable("user_view", 40, 1, CORPUS).texts != view.texts  # the seed draws other items


def test_scratchpad_and_kind_labels():
    pad = planted_variable("scratchpad", 20, 0, CORPUS)
    assert [("<scratchpad>" in t) for t in pad.texts] == pad.labels.tolist() and int(pad.labels.sum()) == 10
    code = planted_variable("kind:code", 30, 0, CORPUS)
    assert int(code.labels.sum()) == 15 and code.pool == "mean"
    assert all(t.startswith("# ") for t, y in zip(code.texts, code.labels.tolist(), strict=True) if y)
    assert not any(
        t.startswith("# ") and "\ndef " in t for t, y in zip(code.texts, code.labels.tolist(), strict=True) if not y
    )
    with pytest.raises(ValueError, match="unknown planted variable"):
        planted_variable("colour", 10, 0, CORPUS)


def test_pooling_takes_the_last_token_or_the_mean():
    toks = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    owner = torch.tensor([0, 0, 0, 1, 2, 2])
    last = torch.tensor([2, 3, 5])
    mean = SiteActivations(toks, owner, last, "mean")
    torch.testing.assert_close(mean.pooled(), torch.stack([toks[:3].mean(0), toks[3], toks[4:].mean(0)]).double())
    assert mean.rows_to_encode().shape == (6, 2)
    lst = SiteActivations(toks, owner, last, "last")
    assert torch.equal(lst.rows_to_encode(), toks[last]) and torch.equal(lst.pooled(lst.rows_to_encode()), toks[last])


def test_reseed_sweep_holds_the_chosen_sae_of_each_architecture_at_another_seed():
    p = FeatureParams(reseed={"gated": 4.0, "topk": 16})
    assert p.reseed_choice() == {"baseline": 4.0, "gated": 4.0, "jumprelu": 0.2, "topk": 16.0, "batchtopk": 32.0}
    rp = reseed_params(p, 1000)
    specs = sweep_specs(rp)
    assert rp.sae_seed == 1000 and [s.architecture for s in specs] == [
        "baseline",
        "gated",
        "jumprelu",
        "topk",
        "batchtopk",
    ]
    assert [s.setting for s in specs] == ["λ=4", "λ=4", "λ=0.2", "k=16", "k=32"]
    with pytest.raises(ValueError, match="not in its sweep"):
        FeatureParams(reseed={"gated": 3.0})
    with pytest.raises(ValueError, match="differ from sae_seed"):
        FeatureParams(reseed_sae_seeds=(0, 5))
    with pytest.raises(ValueError, match="variables"):
        FeatureParams(variables=("deployment", "kind:poetry"))


def _row(arch, seed, reseed, auroc, l0=10.0):
    return RecoveryRow("org@site", arch, 1.0, 8, seed, reseed, l0, 0.9, 1.0, "deployment", auroc, 0, {1: auroc})


def _run(values):
    rows = [_row(a, s, s > 0, v) for a, vs in values.items() for s, v in enumerate(vs)]
    ref = Reference("org@site", "deployment", 1.0, 1.0, [0.6, 0.7], {1: [0.6, 0.65]})
    return RecoveryRun(
        rows, [ref], {"deployment": "d"}, {"deployment": (4, 2)}, {"org@site": {a: 1.0 for a in values}}, (1,)
    )


def test_a_metric_separates_two_architectures_only_beyond_their_seed_ranges():
    run = _run({"baseline": [0.70, 0.72, 0.71], "gated": [0.80, 0.90, 0.85], "topk": [0.71, 0.95, 0.60]})
    vals = ff.seed_values(run)["org@site"]
    assert vals["auroc:deployment"]["gated"]["values"] == [0.80, 0.90, 0.85]
    assert vals["auroc:deployment"]["gated"]["spread"] == pytest.approx(0.10)
    sep = ff.separation(vals)["auroc:deployment"]
    assert sep == {"baseline vs gated": "baseline < gated", "baseline vs topk": "", "gated vs topk": ""}
    assert ff.separation(vals)["l0"] == {"baseline vs gated": "", "baseline vs topk": "", "gated vs topk": ""}
    text = ff.findings(run)
    assert "AUROC · deployment (1 of 3: baseline < gated)" in text
    assert f"probability {2 / math.comb(6, 3):.2f}" in text and "Within reseed noise for every pair" in text
    table = ff.separation_frame(run)
    assert table.set_index("metric").loc["AUROC · deployment", "separated pairs"] == 1


def test_readme_line_is_written_from_the_sidecars_numbers():
    import json

    from companion import readme
    from companion.features import plots

    run = _run({"baseline": [0.70, 0.72, 0.71], "gated": [0.80, 0.90, 0.85]})
    auroc = json.loads(json.dumps({"panels": plots.recovery_plot_data(run, "auroc")}))
    reseed = json.loads(json.dumps(plots.reseed_sidecar(run)))
    summary = reseed["all_metrics"]["org@site"]["metrics"]["auroc:deployment"]["gated"]
    assert summary["per_seed"] == [0.80, 0.90, 0.85] and summary["n"] == 3  # a seed summary check-figures knows
    line = readme.recovery_line(auroc, reseed)
    # the sweep holds the first seed of each (0.70, 0.80); the reseeds are not part of the sweep
    assert (
        "deployment 0.70–0.80 (1/2 SAEs above the random-direction floor 0.60–0.70; dense probe 1.00)" in line
    )  # 0.70 is not above 0.70
    assert "(3 SAE seeds per architecture) L0 0/1, loss recovered 0/1, γ 0/1" in line
    assert "the recovery metrics 2 of 2 separate any pair" in line  # AUROC and k=1 accuracy (equal here)


def test_recovery_figures_draw_seeds_that_agree_exactly():
    # Three seeds with one value: the mean of three equal floats can sit a rounding above them (error bars < 0).
    run = _run({"baseline": [0.7, 0.7, 0.7], "gated": [0.1 + 0.2, 0.1 + 0.2, 0.1 + 0.2]})
    from companion.features import plots

    for y in ("auroc", "acc_k1"):
        fig = plots.plot_recovery(plots.recovery_plot_data(run, y), y)
        assert len(fig.axes) == 1
    assert len(plots.plot_reseed(plots.reseed_plot_data(run)).axes) >= 5
