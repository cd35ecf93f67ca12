"""SAEs on disk in SAELens' layout: ours round-trip exactly (with the training scale folded in), and SAELens-format
SAEs made elsewhere load and compute SAELens' formulas, written out independently here."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from companion.sae.autoencoders import BaselineSAE, GatedSAE
from companion.sae.saelens import CONFIG_FILE, WEIGHTS_FILE, SAEFormatError, load_sae, save_sae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_like(cls, d=6, m=10, seed=0):
    """An SAE with every parameter away from its initial value (as after training)."""
    sae = cls(d, m, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return sae


@pytest.mark.parametrize("cls", [BaselineSAE, GatedSAE])
def test_round_trip_with_the_training_scale_folded_in(tmp_path, cls):
    sae, scale = _trained_like(cls), 2.5
    save_sae(
        sae,
        tmp_path / "s",
        input_scale=scale,
        model_name="organism:backdoor",
        hook_name="blocks.1.hook_resid_pre",
        context_size=128,
        exclude_special_tokens=[0],
        companion={"lam": 2.0},
    )
    stored = load_sae(tmp_path / "s")
    x = torch.randn(50, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # The stored SAE takes raw activations: same codes as the trained SAE on scaled ones, reconstructions unscaled.
    torch.testing.assert_close(stored.sae.encode(x), sae.encode(x * scale), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stored.sae(x), sae(x * scale) / scale, rtol=1e-12, atol=1e-12)
    assert stored.model_name == "organism:backdoor" and stored.hook_name == "blocks.1.hook_resid_pre"
    cfg = json.loads((tmp_path / "s" / CONFIG_FILE).read_text())
    assert cfg["architecture"] == {"baseline": "standard", "gated": "gated"}[sae.architecture]
    assert (cfg["d_in"], cfg["d_sae"], cfg["normalize_activations"], cfg["apply_b_dec_to_input"]) == (
        6,
        10,
        "none",
        True,
    )
    meta = cfg["metadata"]  # SAELens 6's block; SAELens itself reads it in tests/sae/test_sae_saelens_interop.py
    assert (meta["hook_name"], meta["context_size"], meta["companion"]["lam"]) == ("blocks.1.hook_resid_pre", 128, 2.0)
    assert int(meta["sae_lens_version"].split(".")[0]) >= 6 and meta["sae_lens_training_version"] is None
    assert stored.metadata["exclude_special_tokens"] == [0]
    w = load_file(str(tmp_path / "s" / WEIGHTS_FILE))  # SAELens orientation: W_enc [d_in, d_sae], W_dec [d_sae, d_in]
    assert w["W_enc"].shape == (6, 10) and w["W_dec"].shape == (10, 6)
    assert set(w) == (
        {"W_enc", "W_dec", "b_dec", "b_enc"}
        if cls is BaselineSAE
        else {"W_enc", "W_dec", "b_dec", "b_gate", "r_mag", "b_mag"}
    )


def _saelens_reference(arch, w, apply_b_dec, x):
    """SAELens' encode/decode (standard_sae.py / gated_sae.py), in NumPy: codes and reconstruction of ``x``."""
    W_enc, W_dec, b_dec = (w[k].numpy() for k in ("W_enc", "W_dec", "b_dec"))
    sae_in = x - b_dec * apply_b_dec
    if arch == "standard":
        f = np.maximum(sae_in @ W_enc + w["b_enc"].numpy(), 0)
    else:
        gate = (sae_in @ W_enc + w["b_gate"].numpy()) > 0
        f = gate * np.maximum(sae_in @ (W_enc * np.exp(w["r_mag"].numpy())) + w["b_mag"].numpy(), 0)
    return f, f @ W_dec + b_dec


@pytest.mark.parametrize("arch", ["standard", "gated"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_an_sae_trained_elsewhere_computes_saelens_formulas(tmp_path, arch, apply_b_dec):
    d, m = 5, 12
    g = torch.Generator().manual_seed(7)
    w = {
        "W_enc": torch.randn(d, m, generator=g, dtype=torch.float64),  # untied, decoder rows not unit norm
        "W_dec": 0.7 * torch.randn(m, d, generator=g, dtype=torch.float64),
        "b_dec": torch.randn(d, generator=g, dtype=torch.float64),
    }
    if arch == "standard":
        w["b_enc"] = 0.5 * torch.randn(m, generator=g, dtype=torch.float64)
    else:
        w.update(
            b_gate=0.5 * torch.randn(m, generator=g, dtype=torch.float64),
            r_mag=0.3 * torch.randn(m, generator=g, dtype=torch.float64),
            b_mag=0.5 * torch.randn(m, generator=g, dtype=torch.float64),
        )
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    save_file(w, str(folder / WEIGHTS_FILE))
    # A pre-6 SAELens config: flat, model and hook at the top level.
    (folder / CONFIG_FILE).write_text(
        json.dumps(
            {
                "architecture": arch,
                "d_in": d,
                "d_sae": m,
                "dtype": "float64",
                "apply_b_dec_to_input": apply_b_dec,
                "normalize_activations": "none",
                "model_name": "gpt2",
                "hook_name": "blocks.8.hook_resid_pre",
            }
        )
    )
    stored = load_sae(folder)
    x = np.random.default_rng(0).normal(size=(40, d))
    f_ref, x_hat_ref = _saelens_reference(arch, w, apply_b_dec, x)
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(stored.sae.encode(xt).numpy(), f_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stored.sae(xt).numpy(), x_hat_ref, rtol=1e-10, atol=1e-10)
    assert (f_ref > 0).any() and (f_ref == 0).any()  # the test exercises both sides of the ReLU / gate
    assert (stored.model_name, stored.hook_name) == ("gpt2", "blocks.8.hook_resid_pre")


def test_unreadable_folders_say_why(tmp_path):
    with pytest.raises(SAEFormatError, match="needs cfg.json"):
        load_sae(tmp_path)
    save_sae(_trained_like(BaselineSAE), tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / CONFIG_FILE).read_text())
    for change, message in (
        ({"architecture": "matching_pursuit"}, "cannot be loaded here"),
        ({"architecture": "jumprelu"}, r"lacks \['threshold'\] for a jumprelu SAE"),
        ({"architecture": "topk"}, "a TopK SAE needs k"),
        ({"normalize_activations": "expected_average_only_in"}, "fold_activation_norm_scaling"),
        ({"normalize_activations": True}, "fold_activation_norm_scaling"),
        ({"normalize_activations": "layer_norm"}, "each token"),
        ({"normalize_activations": "covariance_whitening"}, "fold_activation_whitening"),
    ):
        (tmp_path / "s" / CONFIG_FILE).write_text(json.dumps({**cfg, **change}))
        with pytest.raises(SAEFormatError, match=message):
            load_sae(tmp_path / "s")


def test_saes_saved_before_the_saelens_6_metadata_block_still_load(tmp_path):
    # The layout save_sae wrote before it wrote SAELens 6's `metadata`: provenance under `meta`, no version.
    sae = _trained_like(GatedSAE)
    save_sae(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / CONFIG_FILE).read_text())
    del cfg["metadata"]
    cfg["meta"] = {
        "model_name": "organism:backdoor",
        "hook_name": "blocks.1.hook_mlp_out",
        "hook_layer": 1,
        "context_size": 128,
        "prepend_bos": True,
        "exclude_special_tokens": [0],
        "dataset_path": None,
        "companion": {"architecture": "gated", "input_scale_folded": 1.0, "lam": 1.0},
    }
    (tmp_path / "s" / CONFIG_FILE).write_text(json.dumps(cfg))
    stored = load_sae(tmp_path / "s")
    assert (stored.model_name, stored.hook_name) == ("organism:backdoor", "blocks.1.hook_mlp_out")
    assert stored.metadata["companion"]["lam"] == 1.0
    x = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(stored.sae.encode(x), sae.encode(x), rtol=1e-12, atol=1e-12)


def test_a_pre_6_scaling_factor_is_folded_into_the_decoder(tmp_path):
    # Pre-6 SAELens multiplied the codes by a per-latent `scaling_factor` before decoding.
    sae = _trained_like(BaselineSAE)
    save_sae(sae, tmp_path / "s")
    w = load_file(str(tmp_path / "s" / WEIGHTS_FILE))
    s = torch.linspace(0.5, 2.0, 10, dtype=torch.float64)
    save_file({**w, "scaling_factor": s}, str(tmp_path / "s" / WEIGHTS_FILE))
    stored = load_sae(tmp_path / "s")
    x = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = sae.encode(x)
    torch.testing.assert_close(stored.sae.encode(x), f, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stored.sae(x), sae.decode(f * s), rtol=1e-12, atol=1e-12)
