"""SAEs trained elsewhere, read by companion.sae.formats: dictionary_learning folders (ae.pt + config.json, saved by
dictionary_learning's own classes) compute dictionary_learning's encode and decode, with the model and hook the config
names; and a bad source is refused saying what was expected.  (SAELens releases through the Hub are tested against
the loopback Hub in tests/paper/test_rehearsal_hub.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from companion.sae.autoencoders import BaselineSAE, GatedSAE
from companion.sae.formats import read_sae
from companion.sae.saelens import SAEFormatError, save_sae
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import peers  # noqa: E402

sys.path.pop(0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D, M = 12, 30


def _dl_autoencoder(dict_class: str):
    peers.dictionary_learning()
    from dictionary_learning.dictionary import AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE as DLBatchTopK
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    ae = {
        "AutoEncoder": lambda: AutoEncoder(D, M),
        "GatedAutoEncoder": lambda: GatedAutoEncoder(D, M),
        "JumpReluAutoEncoder": lambda: JumpReluAutoEncoder(D, M),
        "AutoEncoderTopK": lambda: AutoEncoderTopK(D, M, 5),
        "BatchTopKSAE": lambda: DLBatchTopK(D, M, 5),
    }[dict_class]()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in ae.named_parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g) + (p if "weight" in name or "W_" in name else 0))
        if dict_class == "JumpReluAutoEncoder":
            ae.threshold.copy_(0.1 + 0.3 * torch.rand(M, generator=g))
        if dict_class == "BatchTopKSAE":
            ae.threshold.fill_(0.25)
    return ae


def _save(ae, dict_class, path, submodule="resid_post_layer_3"):
    path.mkdir(parents=True)
    torch.save({k: v.cpu() for k, v in ae.state_dict().items()}, path / "ae.pt")
    trainer = {
        "dict_class": dict_class,
        "trainer_class": "X",
        "activation_dim": D,
        "dict_size": M,
        "layer": 3,
        "lm_name": "EleutherAI/pythia-70m-deduped",
        "submodule_name": submodule,
        "k": 5,
    }
    (path / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"ctx_len": 128}}))


@pytest.mark.parametrize(
    "dict_class,ours",
    [
        ("AutoEncoder", BaselineSAE),
        ("GatedAutoEncoder", GatedSAE),
        ("JumpReluAutoEncoder", JumpReLUSAE),
        ("AutoEncoderTopK", TopKSAE),
        ("BatchTopKSAE", BatchTopKSAE),
    ],
)
def test_dictionary_learning_folders_compute_dictionary_learnings_function(tmp_path, dict_class, ours):
    ae = _dl_autoencoder(dict_class)
    _save(ae, dict_class, tmp_path / "trainer_0")
    stored = read_sae(tmp_path / "trainer_0")
    assert type(stored.sae) is ours
    assert (stored.model_name, stored.hook_name) == ("EleutherAI/pythia-70m-deduped", "blocks.3.hook_resid_post")
    assert stored.metadata["context_size"] == 128 and not stored.metadata["hook_name_assumed"]
    x = 2 * torch.randn(64, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f = ae.encode(x)  # BatchTopKSAE: its inference encoder (the threshold) by default
        torch.testing.assert_close(stored.sae.encode(x), f, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stored.sae(x), ae.decode(f), rtol=1e-5, atol=1e-5)
    assert (f > 0).any() and (f == 0).any()
    # And on to SAELens' layout and back: the same function.
    save_sae(stored.sae, tmp_path / "saelens", model_name=stored.model_name, hook_name=stored.hook_name)
    with torch.no_grad():
        torch.testing.assert_close(read_sae(tmp_path / "saelens").sae(x), ae.decode(f), rtol=1e-5, atol=1e-5)


def test_the_hook_falls_back_to_saelens_reading_and_says_so(tmp_path):
    _save(_dl_autoencoder("AutoEncoder"), "AutoEncoder", tmp_path / "t", submodule=None)
    stored = read_sae(tmp_path / "t")
    assert stored.hook_name == "blocks.3.hook_resid_post" and stored.metadata["hook_name_assumed"]


def test_bad_sources_say_what_was_expected(tmp_path):
    with pytest.raises(SAEFormatError, match="neither a SAELens folder"):
        read_sae(tmp_path)
    with pytest.raises(SAEFormatError, match="nor a SAELens release written '<release>:<sae id>'"):
        read_sae(tmp_path / "missing")
    _save(_dl_autoencoder("AutoEncoder"), "MatryoshkaBatchTopKSAE", tmp_path / "m")
    with pytest.raises(SAEFormatError, match="MatryoshkaBatchTopKSAE cannot be loaded here"):
        read_sae(tmp_path / "m")
    ae = _dl_autoencoder("BatchTopKSAE")
    with torch.no_grad():
        ae.threshold.fill_(-1.0)
    _save(ae, "BatchTopKSAE", tmp_path / "b")
    with pytest.raises(SAEFormatError, match="no inference threshold"):
        read_sae(tmp_path / "b")
