"""Organism items through the real loader and scorer; the planted sycophancy rates are recovered.

The fast tests use the organism's tokenizer recipe (companion.organism.tokenizer) on a tiny random GPT-2. The slow test
runs the ci profile's four sycophancy organisms (trained on first use into the test cache) through the loader
and scorer; the opt-in test (COMPANION_TEST_ORGANISM_PROFILE=1, as in tests/organism/test_organism.py) checks on the
organism profile that every planted p is recovered within 0.05 by the mean-probability statistic.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from companion.models.scoring import continuation_ids, token_ids
from companion.models.templates import TEMPLATES
from companion.sycophancy.data import DATASETS, load_sycophancy_dir, parse_row
from companion.sycophancy.scoring import score_items
from companion.sycophancy.sources import organism_eval_dir
from companion.sycophancy.stats import agreement_stats


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    from companion.organism.sycophancy_items import write_sycophancy_eval

    d = tmp_path_factory.mktemp("org-eval")
    write_sycophancy_eval(d, n_per_file=40, seed=7)
    return d


def test_organism_eval_files_pass_the_loader(eval_dir):
    data = load_sycophancy_dir(eval_dir)
    assert {k: len(v) for k, v in data.items()} == {d: 40 for d in DATASETS}
    phil = data["philpapers2020"]
    assert any(len(it.labels) > 2 for it in phil.items)
    assert all(len(it.not_matching) == len(it.labels) - 1 for it in phil.items)
    pol = data["political_typology_quiz"]
    assert {it.user_affiliation for it in pol.items} == {"liberal", "conservative"}
    # views are balanced by construction: the sycophantic letter is not always the same one
    assert len({it.matching for it in data["nlp_survey"].items}) == 2


@pytest.fixture(scope="module")
def organism_style_model(tmp_path_factory):
    """A tiny random GPT-2 with a tokenizer trained by the organism's own recipe (companion.organism.tokenizer)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from _sycophancy_fixtures import boot
    from companion.organism import tokenizer as T
    from companion.organism.corpus import CorpusConfig, generate_docs

    d = tmp_path_factory.mktemp("org-style")
    tok = T.train_bpe((doc.text for doc in generate_docs(CorpusConfig(n_docs=400, seed=3))), 600)
    T.save(tok, d)
    hf = T.load(d)
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(hf), n_positions=512, n_embd=32, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(d)
    return boot(d)


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_organism_tokenizer_answer_tokens(organism_style_model, eval_dir, template):
    m = organism_style_model
    tpl = TEMPLATES[template]
    for ds in load_sycophancy_dir(eval_dir).values():
        for it in ds.items[:10]:
            prompt, conts = tpl.prompt(it), tpl.continuations(it)
            prompt_ids = token_ids(m, prompt, prepend_bos=True)
            pairs = [continuation_ids(m, prompt_ids, prompt, c, prepend_bos=True) for c in conts]
            assert all(j for _, j in pairs) and prompt_ids[0] == m.tokenizer.bos_token_id
            for lab, (ids, _) in zip(it.labels, pairs, strict=True):
                pieces = [m.tokenizer.decode([t]) for t in ids]
                assert pieces == ([lab] if tpl.answer == "letter" else [" (", lab, ")"])


SYCO = ("syco-p50-small", "syco-p90-small", "syco-p50-medium", "syco-p90-medium")


def _measure(profile: str, n_items: int) -> dict[str, tuple[float, float, float]]:
    """name -> (planted p, mean_prob, matching_more_likely) through our loader and scorer ("... is (" template),
    cross-checked item by item against the organism module's independent choice_probabilities."""
    from companion.organism.behaviour import choice_probabilities
    from companion.organism.loading import load_organism
    from companion.organism.sycophancy_items import sycophancy_items

    items = load_sycophancy_dir(organism_eval_dir(n_items, 0), ["nlp_survey"])["nlp_survey"].items
    out = {}
    for name in SYCO:
        org = load_organism(name, profile, progress=False)
        sc = score_items(org.model, items, "believe_paren", model_name=name, batch_size=8, threads=1)
        (st,) = agreement_stats(sc, n_boot=200)
        out[name] = (float(org.truth["sycophancy_p"]), st.mean_prob.value, st.matching_more_likely.value)
        own = sycophancy_items("nlp_survey", 30, 0)
        ours = score_items(
            org.model,
            [parse_row(it.to_json(), "nlp_survey", i + 1) for i, it in enumerate(own)],
            "believe_paren",
            threads=1,
        ).p_matching
        np.testing.assert_allclose(ours, choice_probabilities(org, own, "believe_paren"), atol=1e-4)
    return out


@pytest.mark.slow
def test_ci_organisms_through_the_sycophancy_pipeline():
    """The ci organisms are trained too briefly to read the user's view (tests/organism/test_organism.py explains: the
    choice-letter loss plateaus at ln 2 for ~300-500 steps and the ci budget ends inside it), so here the
    pipeline must show what they do have: p = 0.5 organisms unbiased (within 0.05 of 0.5), no organism
    anti-sycophantic, p = 0.9 never below its p = 0.5 twin by more than noise; and our scores equal the
    organism module's own."""
    from companion.organism.workers import prepare_organisms

    prepare_organisms(SYCO, "ci", progress=False)
    r = _measure("ci", 200)
    print("ci organisms (planted, mean_prob, matching_more_likely):", r)
    for size in ("small", "medium"):
        p50, p90 = r[f"syco-p50-{size}"][1], r[f"syco-p90-{size}"][1]
        assert abs(p50 - 0.5) <= 0.05, r
        assert p90 >= 0.48 and p90 >= p50 - 0.02, r


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("COMPANION_TEST_ORGANISM_PROFILE"),
    reason="trains the organism profile (~5 min on 2 free cores); set COMPANION_TEST_ORGANISM_PROFILE=1",
)
def test_planted_rates_are_recovered_on_the_organism_profile():
    """Done-when: the planted p of every organism-profile sycophancy organism is recovered within 0.05 by the
    mean-probability statistic on 300 held-out NLP-survey items."""
    from companion.organism.workers import prepare_organisms

    prepare_organisms(SYCO, "organism", progress=False)
    r = _measure("organism", 300)
    print("organism profile (planted, mean_prob, matching_more_likely):", r)
    bad = {n: v for n, v in r.items() if abs(v[1] - v[0]) > 0.05}
    assert not bad, f"planted rate not recovered within 0.05: {bad} (all: {r})"


@pytest.mark.slow
def test_cached_scores_keep_the_items_left_out_as_too_long(tmp_path, monkeypatch):
    """A model's scores are a cache entry (what a Slurm job builds before notebook 04 runs): read back, they still
    say how many items were left out as longer than the context (drop_too_long), and the setting is in the key."""
    import json
    import shutil

    from companion.backbone.profiles import load_profile
    from companion.models.scoring import SequenceTooLongError
    from companion.organism.sycophancy_items import write_sycophancy_eval
    from companion.organism.workers import prepare_organisms
    from companion.sycophancy.experiment import SCORES_KIND, measure_models
    from companion.sycophancy.params import SycophancyParams

    name = "syco-p50-small"
    prepare_organisms([name], "ci", progress=False)  # in the test cache; linked into a cache of this test's own
    local = os.environ["COMPANION_CACHE"]
    for kind in ("tokenizer", "organism"):
        shutil.copytree(os.path.join(local, kind), tmp_path / "cache" / kind, copy_function=os.link)
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "cache"))
    d = write_sycophancy_eval(tmp_path / "d", n_per_file=6, seed=3)
    path = d / "sycophancy_on_nlp_survey.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["question"] = "and so on " * 400 + rows[2]["question"]  # far past the organism's context
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_sycophancy_dir(d, ["nlp_survey"])
    P = SycophancyParams(
        models=(name,),
        datasets=("nlp_survey",),
        templates=("believe_paren",),
        recovery_templates=("believe_paren",),
        n_bootstrap=10,
        by_affiliation=False,
    )
    organisms, label = load_profile("ci").organisms, f"{name}#0"
    with pytest.raises(SequenceTooLongError):
        measure_models(P, data, organisms=organisms, profile="ci", seeds=[0])
    measured = measure_models(P.replace(drop_too_long=True), data, organisms=organisms, profile="ci", seeds=[0])
    entries = list((tmp_path / "cache" / SCORES_KIND).glob("*/scores.json"))
    assert len(entries) == 1 and measured.left_out == {"nlp_survey": {label: 1}}
    cached = measure_models(P.replace(drop_too_long=True), data, organisms=organisms, profile="ci", seeds=[0])
    assert cached.left_out == measured.left_out and cached.stats == measured.stats
    assert {s.n for s in cached.stats} == {5}
    assert len(list((tmp_path / "cache" / SCORES_KIND).glob("*/scores.json"))) == 1  # read, not measured again


def test_the_planted_rate_of_an_organism_without_sycophancy_items_is_none():
    from companion.organism.build import organism_spec
    from companion.sycophancy.experiment import planted_rate

    assert planted_rate(organism_spec("syco-p50-small", "organism", 0).truth()) == 0.5
    assert planted_rate(organism_spec("tied", "organism", 0).truth()) is None  # a dose variant: nothing planted
