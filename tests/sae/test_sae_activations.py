"""The activation store: bounded shuffled buffer, determinism, disk shards, special-token exclusion."""

from __future__ import annotations

import pytest
import torch

from companion.models.scoring import hook_block
from companion.sae.activations import ActivationStore, keep_mask, model_chunks, shard_chunks, write_shards

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _chunks(n_chunks=10, rows=37, d=3):
    """Chunks whose rows carry their global index in column 0 (site "a") and −index (site "b")."""
    k = 0
    for _ in range(n_chunks):
        ids = torch.arange(k, k + rows, dtype=torch.float32)
        k += rows
        yield {"a": ids[:, None].repeat(1, d), "b": -ids[:, None]}


def _ids(batches):
    return torch.cat([b["a"][:, 0] for b in batches]).long()


def test_store_yields_full_batches_each_row_at_most_once_and_shuffled():
    store = ActivationStore(_chunks(), batch_size=16, buffer_size=64, seed=0)
    batches = list(store)
    assert all(b["a"].shape == (16, 3) and b["b"].shape == (16, 1) for b in batches)
    ids = _ids(batches)
    assert len(set(ids.tolist())) == len(ids), "a row was emitted twice"
    assert len(ids) == 370 // 16 * 16 - 0 or len(ids) >= 370 - 16 * 2, "too many rows lost"
    assert len(ids) > 370 - 2 * 16
    assert not torch.equal(ids, torch.sort(ids).values), "stream order was not shuffled"
    for b in batches:  # one permutation for all sites: row i of every site is the same token
        assert torch.equal(b["a"][:, 0], -b["b"][:, 0])


def test_store_memory_is_bounded_by_the_buffer_plus_one_chunk():
    store = ActivationStore(_chunks(rows=50), batch_size=8, buffer_size=40, seed=0)
    for _ in store:
        pass
    assert store.peak_rows <= 40 + 50


def test_store_is_deterministic_for_a_seed_and_mixes_across_chunks():
    a = _ids(ActivationStore(_chunks(), batch_size=16, buffer_size=128, seed=3))
    b = _ids(ActivationStore(_chunks(), batch_size=16, buffer_size=128, seed=3))
    c = _ids(ActivationStore(_chunks(), batch_size=16, buffer_size=128, seed=4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    first = a[:16]
    assert (first // 37).unique().numel() > 1, "a batch should mix rows of several source chunks"


def test_store_max_rows_and_validation():
    store = ActivationStore(_chunks(), batch_size=10, buffer_size=40, seed=0, max_rows=100)
    ids = _ids(list(store))
    assert ids.max() < 100 and store.rows_read == 100
    with pytest.raises(ValueError, match="two batches"):
        ActivationStore(_chunks(), batch_size=10, buffer_size=15)


def test_shards_roundtrip_gives_the_same_store(tmp_path):
    index = write_shards(_chunks(), tmp_path, rows_per_shard=50)
    assert index["rows"] == 370 and [s["rows"] for s in index["shards"]] == [50] * 7 + [20]
    back = torch.cat([c["a"] for c in shard_chunks(tmp_path)])
    assert torch.equal(back, torch.cat([c["a"] for c in _chunks()]))
    a = _ids(ActivationStore(_chunks(), batch_size=16, buffer_size=64, seed=1))
    b = _ids(ActivationStore(shard_chunks(tmp_path), batch_size=16, buffer_size=64, seed=1))
    assert torch.equal(a, b)


def test_keep_mask_and_hook_block():
    t = torch.tensor([[0, 5, 6, 0, 7], [0, 1, 2, 3, 9]])
    assert keep_mask(t, (0, 9)).tolist() == [[False, True, True, False, True], [False, True, True, True, False]]
    assert hook_block("blocks.3.hook_resid_post") == 3 and hook_block("hook_embed") is None


def test_model_chunks_drop_special_tokens_on_a_tiny_model(tmp_path):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=16, vocab_size=20)).save_pretrained(tmp_path)
    model = TransformerBridge.boot_transformers(str(tmp_path), device="cpu")
    toks = torch.randint(1, 20, (2, 8), generator=torch.Generator().manual_seed(0))
    toks[:, 0] = 0
    chunk = next(model_chunks(model, [toks], ["blocks.0.mlp.hook_post", "blocks.1.hook_resid_pre"], (0,)))
    assert chunk["blocks.0.mlp.hook_post"].shape == (14, 64)
    assert chunk["blocks.1.hook_resid_pre"].shape == (14, 16)
    with torch.no_grad():
        _, cache = model.run_with_cache(toks, names_filter=["blocks.1.hook_resid_pre"])
    assert torch.allclose(chunk["blocks.1.hook_resid_pre"], cache["blocks.1.hook_resid_pre"][:, 1:].reshape(-1, 16))
