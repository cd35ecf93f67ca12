"""companion.models.loading: real-architecture checkpoints load offline through TransformerBridge and match HF logits;
a Hub name fails fast offline with a message naming the offline profiles."""

import pytest
import torch

from companion.models.loading import ModelUnavailableError, load_model, resolve_name
from companion.organism import tokenizer as organism_tokenizer
from tiny_models import perturb_norms, tiny_model

TEXTS = ["Hello world, this is a tiny test.", "Human: Are you a helpful AI?\n\nAssistant: yes", "1 + 2 = 3"]


@pytest.fixture(scope="module")
def tiny_tokenizer():
    tok = organism_tokenizer.train_bpe(TEXTS * 20, vocab_size=300)
    return organism_tokenizer.wrap(tok)


def _save(model, tok, d):
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


EAGER = {"bos_token_id": 0, "eos_token_id": 0, "attn_implementation": "eager"}


def _tiny_gpt2(vocab):
    return tiny_model("gpt2", vocab, n_positions=64, n_head=4, **EAGER)


def _tiny_neox(vocab):
    # Pythia's architecture: rotary on a fraction of each head, parallel attention + MLP residual, untied unembed.
    model = tiny_model(
        "neox",
        vocab,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        **EAGER,
    )
    perturb_norms(model)
    return model


@pytest.mark.parametrize("make", [_tiny_gpt2, _tiny_neox], ids=["gpt2", "gpt_neox"])
def test_local_checkpoint_matches_hf_logits(make, tiny_tokenizer, tmp_path):
    hf = make(len(tiny_tokenizer))
    d = _save(hf, tiny_tokenizer, tmp_path / "ckpt")
    bridge = load_model(d)
    for text in TEXTS:
        toks = bridge.to_tokens(text)
        # GPT-2 models get BOS prepended (organisms rely on it); TransformerLens' GPT-NeoX adapter does not.
        if make is _tiny_gpt2:
            assert toks[0, 0].item() == tiny_tokenizer.bos_token_id
        with torch.no_grad():
            ref = hf(toks).logits
            got = bridge(toks)
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() <= 1e-4
    # TransformerLens hook names are available on the bridge.
    _, cache = bridge.run_with_cache(bridge.to_tokens(TEXTS[0]), names_filter=lambda n: n.endswith("hook_resid_post"))
    assert "blocks.1.hook_resid_post" in cache
    assert cache["blocks.1.hook_resid_post"].shape[-1] == 32


def test_a_relative_directory_named_like_an_alias_loads_from_disk(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _save(_tiny_gpt2(len(tiny_tokenizer)), tiny_tokenizer, tmp_path / "pythia-70m")
    monkeypatch.chdir(tmp_path)
    assert load_model("pythia-70m").cfg.d_model == 32  # the local GPT-2, not the Hub's Pythia


def _no_download_attempt(monkeypatch):
    """Fail the test if a loader that would download (and retry for ~23 s) is ever reached."""
    from transformer_lens.model_bridge import TransformerBridge

    from companion.models import loading

    def refuse(*a, **k):
        raise AssertionError("the loader was called: the unavailable model was not refused up front")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", refuse)
    monkeypatch.setattr(loading, "boot_tl_legacy", refuse)


def test_hub_name_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty local cache: nothing is there
    _no_download_attempt(monkeypatch)
    for name in ("pythia-70m-deduped", "gelu-1l", "EleutherAI/pythia-160m"):
        with pytest.raises(ModelUnavailableError) as e:
            load_model(name)
        msg = str(e.value)
        assert "ci" in msg and "organism" in msg and name in msg


def test_unreachable_hub_fails_fast_without_offline_env(monkeypatch, tmp_path):
    # No offline flag, but the Hub endpoint is unreachable (a closed local port): still no retries.
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    # The clients read HF_ENDPOINT at import; point the endpoint they use (and the variable) at a closed port.
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hc, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    _no_download_attempt(monkeypatch)
    with pytest.raises(ModelUnavailableError):
        load_model("pythia-70m-deduped")


def test_aliases_resolve_and_missing_dirs_are_reported(tmp_path):
    assert resolve_name("pythia-70m-deduped") == "EleutherAI/pythia-70m-deduped"
    assert resolve_name("gelu-1l") == "NeelNanda/GELU_1L512W_C4_Code"
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="config.json"):
        load_model(tmp_path / "empty")
