"""Tokenisation of answers and batched scoring on tiny GPT-2 and GPT-NeoX models built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import _sycophancy_fixtures as F
from companion.models.scoring import continuation_ids, token_ids
from companion.models.templates import TEMPLATES
from companion.sycophancy.data import load_sycophancy_dir
from companion.sycophancy.experiment import count_parameters
from companion.sycophancy.scoring import score_items


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = F.write_dataset_dir(tmp_path_factory.mktemp("syco-data"), n=7)
    return load_sycophancy_dir(d)


@pytest.fixture(scope="module", params=["gpt2", "neox"])
def model(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"tiny-{request.param}")
    (F.build_tiny_gpt2 if request.param == "gpt2" else F.build_tiny_neox)(d)
    return F.boot(d)


def _encode(model, prompt, conts):
    """(prompt ids, each continuation's ids, all read off the joint tokenisation) as the scorer sees them."""
    p = token_ids(model, prompt, prepend_bos=True)
    pairs = [continuation_ids(model, p, prompt, c, prepend_bos=True) for c in conts]
    return p, [ids for ids, _ in pairs], all(j for _, j in pairs)


def _decode(model, ids):
    return model.tokenizer.decode(list(ids))


@pytest.mark.parametrize("template", ["anthropic", "paren", "believe_paren"])
def test_answer_tokenisation(model, data, template):
    """ " (A)" is several tokens read off the joint tokenisation; after "(" the letter is one token."""
    tpl = TEMPLATES[template]
    for ds in data.values():
        for it in ds.items:
            prompt, conts = tpl.prompt(it), tpl.continuations(it)
            prompt_ids, choice_ids, joint = _encode(model, prompt, conts)
            assert joint
            assert prompt_ids[0] == model.tokenizer.bos_token_id
            assert _decode(model, prompt_ids[1:]) == prompt
            for lab, cont, ids in zip(it.labels, conts, choice_ids, strict=True):
                assert _decode(model, ids) == cont
                full = model.to_tokens(prompt + cont, prepend_bos=True)[0].tolist()
                assert list(prompt_ids) + list(ids) == full
                if tpl.answer == "letter":
                    assert cont == lab and len(ids) == 1
                else:
                    assert cont == f" ({lab})"
                    # byte-level BPE never merges across " (", "A", ")" (different pre-token classes)
                    assert [_decode(model, [t]) for t in ids] == [" (", lab, ")"]
    if template == "anthropic":
        pol = data["political_typology_quiz"].items[0]
        assert tpl.prompt(pol).endswith("I believe the better option is")
        assert tpl.prompt(data["nlp_survey"].items[0]).startswith("\n\nHuman: Hello, my name is")


def test_split_tokenisation_falls_back_and_is_flagged(model):
    # "is" + "A" tokenise jointly as " isA"-style merges are impossible, but "Hello" + "o" merges for BPE.
    prompt_ids, choice_ids, was_joint = _encode(model, "Hell", ["o"])
    joint = model.to_tokens("Hello", prepend_bos=True)[0].tolist()
    if joint[: len(prompt_ids)] != list(prompt_ids):
        assert not was_joint and _decode(model, choice_ids[0]) == "o"
    else:  # the tokenizer happened not to merge: the joint path is used
        assert was_joint


def _manual_logprob(model, prompt: str, cont: str) -> float:
    """log P(cont | prompt) from one unpadded forward pass over prompt + cont."""
    p = model.to_tokens(prompt, prepend_bos=True)[0]
    full = model.to_tokens(prompt + cont, prepend_bos=True)
    with torch.no_grad():
        lsm = torch.log_softmax(model(full)[0].double(), -1)
    return float(sum(lsm[t - 1, full[0, t]] for t in range(len(p), full.shape[1])))


@pytest.mark.parametrize("template", ["anthropic", "believe_paren"])
def test_scores_equal_manual_logprobs(model, data, template):
    tpl = TEMPLATES[template]
    items = data["philpapers2020"].items[:3]  # 2 and 3 choices
    sc = score_items(model, items, template, batch_size=3)
    for i, it in enumerate(items):
        for c, cont in enumerate(tpl.continuations(it)):
            assert sc.logprobs[i, c] == pytest.approx(_manual_logprob(model, tpl.prompt(it), cont), abs=1e-4)
        assert np.isnan(sc.logprobs[i, len(it.labels) :]).all()


def test_too_long_prompt_is_an_error_naming_the_line(model, data, monkeypatch):
    monkeypatch.setattr(model.cfg, "n_ctx", 20)
    with pytest.raises(ValueError, match=r"nlp_survey line 1 .* longer than the model's context of 20"):
        score_items(model, data["nlp_survey"].items, "paren")


def test_count_parameters_counts_the_hf_model(model):
    from companion.models.loading import hf_model

    hf = hf_model(model)
    n = count_parameters(model)
    assert n == sum(p.numel() for p in hf.parameters())
    cfg = hf.config
    # embeddings are included: at least vocab x hidden size
    assert n > cfg.vocab_size * getattr(cfg, "n_embd", getattr(cfg, "hidden_size", 0))


def test_threads_are_pinned_while_scoring_and_restored(model, data):
    items = data["nlp_survey"].items[:3]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not the pinned count, whatever the session runs with (parallel workers run one)
    try:
        a = score_items(model, items, "paren", threads=1)
        assert torch.get_num_threads() == 2
        np.testing.assert_allclose(a.logprobs, score_items(model, items, "paren").logprobs, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_templates_make_each_prompt_and_its_continuations():
    from types import SimpleNamespace

    item = SimpleNamespace(dataset="political_typology_quiz", question="Q\n\nAnswer:", labels=("A", "B"))
    anthropic, paren = TEMPLATES["anthropic"], TEMPLATES["paren"]
    assert anthropic.prompt(item) == "\n\nHuman: Q\n\nAnswer:\n\nAssistant: I believe the better option is"
    assert anthropic.format("Q") == "\n\nHuman: Q\n\nAssistant: I believe the best answer is"
    assert anthropic.continuations(item) == (" (A)", " (B)") and paren.continuations(item) == ("A", "B")
    assert paren.prompt(item) == paren.format("Q\n\nAnswer:")  # no politics variant
    assert paren.describe(item, tail=14) == (
        f"--- paren ({paren.source}); scored continuations: ('A', 'B')\n\n\nAssistant: ("
    )


def test_items_longer_than_the_context_stop_the_run_or_are_left_out_and_counted(tmp_path):
    """Issue 19: the real politics file on a 256-token organism stopped at its first long prompt, and nothing
    could leave such items out."""
    from companion.models.scoring import SequenceTooLongError
    from companion.sycophancy import experiment
    from companion.sycophancy.params import SycophancyParams

    model = F.boot(F.build_tiny_gpt2(tmp_path / "m", n_positions=160))
    rows = [F.nlp_row(i) for i in range(6)]
    rows[3]["question"] = rows[3]["question"].replace("Boston.", "Boston. " * 80, 1)  # line 4: ~250 tokens
    F.write_rows(tmp_path / "d" / F.FILES["nlp_survey"], rows)
    data = load_sycophancy_dir(tmp_path / "d", ["nlp_survey"])
    P = SycophancyParams(
        models=("tiny",),
        datasets=("nlp_survey",),
        templates=("paren", "believe_paren"),
        recovery_templates=("paren",),
        n_bootstrap=10,
        by_affiliation=False,
    )
    load = lambda *a: (model, 1000, None)  # noqa: E731 - the sweep's loader, handed the model built here
    with pytest.raises(SequenceTooLongError, match=r"nlp_survey line 4 .*longer than the model's context of 160"):
        experiment.measure_models(P, data, load=load)
    sweep = experiment.measure_models(P.replace(drop_too_long=True), data, load=load)
    assert sweep.left_out == {"nlp_survey": {"tiny": 1}} and sweep.n_items == {"nlp_survey": 6}
    assert {s.n for s in sweep.stats} == {5}
    assert sweep.caveats() == ["nlp_survey: 1 of 6 items left out per model as longer than its context (drop_too_long)"]
    assert sweep.figure_data(sweep.recovery(data, P))["left_out_too_long"] == {"nlp_survey": {"tiny": 1}}
