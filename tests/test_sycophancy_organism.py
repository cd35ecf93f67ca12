"""Organism items through the real loader and scorer; the planted sycophancy rates are recovered.

The fast tests use the organism's tokenizer recipe (companion.tokenizer) on a tiny random GPT-2. The slow test
loads the ci profile's four sycophancy organisms (trained on first use into the test cache) and checks the
planted p is recovered within 0.05 by the mean-probability statistic on held-out NLP-survey items.
"""
from __future__ import annotations

import numpy as np
import pytest

from companion import sycophancy as S


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    from companion.organism import write_sycophancy_eval

    d = tmp_path_factory.mktemp("org-eval")
    write_sycophancy_eval(d, n_per_file=40, seed=7)
    return d


def test_organism_eval_files_pass_the_loader(eval_dir):
    data = S.load_sycophancy_dir(eval_dir)
    assert {k: len(v) for k, v in data.items()} == {d: 40 for d in S.DATASETS}
    phil = data["philpapers2020"]
    assert any(len(it.labels) > 2 for it in phil.items)
    assert all(len(it.not_matching) == len(it.labels) - 1 for it in phil.items)
    pol = data["political_typology_quiz"]
    assert {it.user_affiliation for it in pol.items} == {"liberal", "conservative"}
    # views are balanced by construction: the sycophantic letter is not always the same one
    assert len({it.matching for it in data["nlp_survey"].items}) == 2


@pytest.fixture(scope="module")
def organism_style_model(tmp_path_factory):
    """A tiny random GPT-2 with a tokenizer trained by the organism's own recipe (companion.tokenizer)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from companion import tokenizer as T
    from companion.corpus import CorpusConfig, generate_docs
    from _sycophancy_fixtures import boot

    d = tmp_path_factory.mktemp("org-style")
    tok = T.train_bpe((doc.text for doc in generate_docs(CorpusConfig(n_docs=400, seed=3))), 600)
    T.save(tok, d)
    hf = T.load(d)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(hf), n_positions=512, n_embd=32, n_layer=1, n_head=2,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(d)
    return boot(d)


@pytest.mark.parametrize("template", list(S.TEMPLATES))
def test_organism_tokenizer_answer_tokens(organism_style_model, eval_dir, template):
    m = organism_style_model
    tpl = S.TEMPLATES[template]
    for ds in S.load_sycophancy_dir(eval_dir).values():
        for it in ds.items[:10]:
            enc = S.encode_item(m, tpl.prompt(it), tpl.continuations(it))
            assert enc.joint and enc.prompt_ids[0] == m.tokenizer.bos_token_id
            for lab, ids in zip(it.labels, enc.choice_ids):
                pieces = [m.tokenizer.decode([t]) for t in ids]
                assert pieces == ([lab] if tpl.answer == "letter" else [" (", lab, ")"])


@pytest.mark.slow
def test_planted_rates_are_recovered_on_ci_organisms(eval_dir, tmp_path):
    """The planted p of each ci sycophancy organism is recovered within 0.05 (mean probability, NLP survey),
    and our scorer agrees with the organism module's independent choice_probabilities."""
    from companion.organism import choice_probabilities, load_organism, sycophancy_items

    items = S.load_sycophancy_dir(S.organism_eval_dir(300, 0, cache=None), ["nlp_survey"])["nlp_survey"].items
    report = []
    for name in ("syco-p50-small", "syco-p90-small", "syco-p50-medium", "syco-p90-medium"):
        org = load_organism(name, "ci", progress=False)
        planted = float(org.truth["sycophancy_p"])
        sc = S.score_items(org.model, items, "believe_paren", model_name=name, batch_size=32)
        (st,) = S.agreement_stats(sc, n_boot=200)
        report.append((name, planted, round(st.mean_prob.value, 3), round(st.matching_more_likely.value, 3)))
        # cross-check against the organism's own scorer on its own items (same prompt: "... is (" + letter)
        own = sycophancy_items("nlp_survey", 40, 0)
        ours = S.score_items(org.model, [S.parse_row(it.to_json(), "nlp_survey", i + 1) for i, it in enumerate(own)],
                             "believe_paren").p_matching
        np.testing.assert_allclose(ours, choice_probabilities(org, own, "best_answer_paren"), atol=1e-4)
    print("organism planted vs measured (mean_prob, matching_more_likely):", report)
    bad = [r for r in report if abs(r[2] - r[1]) > 0.05]
    assert not bad, f"planted rate not recovered within 0.05: {bad} (all: {report})"
