"""SAELens itself reads our SAEs and we read its: both directions through the installed ``sae_lens`` (issue 18).

Ours -> SAELens: ``SAE.load_from_disk`` gives the same codes and reconstructions as our SAE, its metadata names the
model and hook, and ``HookedSAETransformer.add_sae`` (and SAELens' ``SAETransformerBridge`` on a model our loader
reads) attaches it at that hook, so the spliced forward equals our own splice of the same SAE.
SAELens -> ours: SAEs saved by SAELens (``save_model`` and the training runner's ``save_inference_model``) load
with their model and hook names and compute SAELens' encode/decode; the architectures we do not read, and per-token
normalisations, are refused with a message saying what to do.  Every architecture both libraries have is tested both
ways: baseline (SAELens "standard"), gated, JumpReLU, TopK and BatchTopK (saved by both as a JumpReLU).
"""

import json
import warnings

import pytest
import sae_lens
import torch
from sae_lens import HookedSAETransformer
from sae_lens.saes.sae import SAEMetadata

from companion.sae.autoencoders import BaselineSAE, GatedSAE
from companion.sae.saelens import CONFIG_FILE, NO_PROCESSING, SAEFormatError, load_sae, save_sae
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D, M = 16, 40
CLASSES = {
    "standard": (BaselineSAE, sae_lens.StandardSAE),
    "gated": (GatedSAE, sae_lens.GatedSAE),
    "jumprelu": (JumpReLUSAE, sae_lens.JumpReLUSAE),
    "topk": (TopKSAE, sae_lens.TopKSAE),
    "batchtopk": (BatchTopKSAE, sae_lens.JumpReLUSAE),
}
"""SAELens' name -> (our class, the SAELens class that reads our file)."""


def _trained_like(cls, seed=0):
    """Our SAE with every parameter moved away from its initial value, as after training (float32, as trained)."""
    sae = cls(D, M, seed=seed, **({"k": 6} if issubclass(cls, TopKSAE) else {}))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _name, p in sae.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        if isinstance(sae, JumpReLUSAE):
            sae.log_threshold.copy_(torch.log(0.2 + torch.rand(M, generator=g)))
        if isinstance(sae, BatchTopKSAE):
            sae.threshold.fill_(0.4)  # as estimated in training
    return sae


def _x(n=64, seed=3, scale=1.0):
    return scale * torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def _tiny_hooked(seed=0):
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=D,
        n_ctx=16,
        d_head=4,
        n_heads=4,
        d_mlp=32,
        d_vocab=50,
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
    )
    with warnings.catch_warnings():  # TransformerLens 3 marks HookedTransformer deprecated; SAELens builds on it
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedSAETransformer(cfg).eval()


@pytest.mark.parametrize("arch", list(CLASSES))
def test_our_sae_loads_in_saelens_with_its_metadata_and_the_same_function(tmp_path, arch):
    ours, scale = _trained_like(CLASSES[arch][0]), 2.5
    save_sae(
        ours,
        tmp_path / "s",
        input_scale=scale,
        model_name="organism:backdoor",
        hook_name="blocks.1.hook_resid_pre",
        context_size=128,
        exclude_special_tokens=[0],
        dataset_path="organism corpus",
        companion={"lam": 2.0},
    )
    with pytest.warns(UserWarning, match="from_pretrained_no_processing"):  # SAELens relays how to load the model
        sl = sae_lens.SAE.load_from_disk(tmp_path / "s")
    assert type(sl) is CLASSES[arch][1]
    meta = sl.cfg.metadata
    assert (meta.model_name, meta.hook_name, meta.hook_head_index) == (
        "organism:backdoor",
        "blocks.1.hook_resid_pre",
        None,
    )
    assert (meta.context_size, meta.prepend_bos, meta.dataset_path) == (128, True, "organism corpus")
    assert meta.exclude_special_tokens == [0] and meta.model_from_pretrained_kwargs == NO_PROCESSING
    assert meta.sae_lens_version == sae_lens.__version__  # >= 6: read as a SAELens 6 config, not converted
    assert (sl.cfg.d_in, sl.cfg.d_sae, sl.cfg.dtype, sl.cfg.normalize_activations) == (D, M, "float32", "none")
    x = _x(scale=3.0)
    with torch.no_grad():
        f_ours, f_sl = ours.encode(x * scale), sl.encode(x)
        torch.testing.assert_close(f_sl, f_ours, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sl.decode(f_sl), ours(x * scale) / scale, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sl(x), load_sae(tmp_path / "s").sae(x), rtol=1e-5, atol=1e-5)
    assert (f_sl > 0).any() and (f_sl == 0).any()
    back = load_sae(tmp_path / "s")
    assert type(back.sae) is CLASSES[arch][0]  # and back: our BatchTopK SAE, not a JumpReLU, with its k
    assert back.metadata["companion"]["architecture"] == ours.architecture
    if isinstance(ours, TopKSAE):
        assert back.sae.k == ours.k


def _splice(model, hook_name, fn, tokens):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, lambda a, hook=None: fn(a))])


@pytest.mark.parametrize(
    "arch,hook_name",
    [
        ("standard", "blocks.1.hook_resid_pre"),
        ("standard", "blocks.0.hook_mlp_out"),
        ("gated", "blocks.1.hook_resid_pre"),
        ("gated", "blocks.0.hook_mlp_out"),
        ("jumprelu", "blocks.1.hook_resid_pre"),
        ("topk", "blocks.0.hook_mlp_out"),
        ("batchtopk", "blocks.1.hook_resid_pre"),
    ],
)
def test_add_sae_attaches_our_sae_at_its_hook_and_reproduces_our_splice(tmp_path, arch, hook_name):
    ours = _trained_like(CLASSES[arch][0], seed=4)
    save_sae(ours, tmp_path / "s", model_name="tiny", hook_name=hook_name, context_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sl = sae_lens.SAE.load_from_disk(tmp_path / "s")
    model = _tiny_hooked()
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = model(tokens)
    model.add_sae(sl)
    assert list(model.acts_to_saes) == [hook_name]  # attached where the metadata says, not skipped
    with torch.no_grad():
        spliced, cache = model.run_with_cache(tokens)
    model.reset_saes()
    ours_spliced = _splice(model, hook_name, ours, tokens)
    torch.testing.assert_close(spliced, ours_spliced, rtol=1e-5, atol=1e-5)
    assert (spliced - clean).abs().max() > 1e-3  # the SAE really was in the forward pass
    # The codes SAELens computed inside the model are our codes of the hook's activations.
    _, clean_cache = model.run_with_cache(tokens, names_filter=hook_name)
    torch.testing.assert_close(
        cache[f"{hook_name}.hook_sae_acts_post"], ours.encode(clean_cache[hook_name]), rtol=1e-5, atol=1e-5
    )


def test_saelens_splice_gives_our_spliced_lm_loss_with_the_recorded_special_tokens(tmp_path):
    # Our loss recovered leaves special-token positions unspliced; SAELens does the same when add_sae is given the
    # recorded exclude_special_tokens, and then its LM loss is our spliced CE.
    from companion.sae.metrics import lm_losses

    ours, hook = _trained_like(BaselineSAE, seed=6), "blocks.1.hook_resid_pre"
    save_sae(ours, tmp_path / "s", model_name="tiny", hook_name=hook, exclude_special_tokens=[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sl = sae_lens.SAE.load_from_disk(tmp_path / "s")
    model = _tiny_hooked(seed=2)
    tokens = torch.randint(1, 50, (3, 12), generator=torch.Generator().manual_seed(2))
    tokens[:, 0] = 0
    tokens[1, 6] = 0  # a document boundary mid-row
    ce = lm_losses(model, [tokens], hook, {"ours": ours}, exclude_token_ids=(0,))
    model.add_sae(sl, exclude_special_tokens=sl.cfg.metadata.exclude_special_tokens)
    with torch.no_grad():
        sl_ce = float(model(tokens, return_type="loss"))
    model.reset_saes()
    assert sl_ce == pytest.approx(ce.ce_spliced["ours"], rel=1e-5)
    assert abs(ce.ce_spliced["ours"] - ce.ce_clean) > 1e-4


def test_saelens_bridge_attaches_our_sae_to_a_model_our_loader_reads(tmp_path):
    # Our SAEs' hook names are a TransformerBridge's (every companion model is one): SAELens' bridge class takes them.
    from transformers import GPT2Config, GPT2LMHeadModel

    from companion.models.loading import load_model
    from companion.organism import tokenizer as organism_tokenizer

    text = "Human: Are you a helpful AI?\n\nAssistant: yes"
    tok = organism_tokenizer.wrap(organism_tokenizer.train_bpe([text] * 20, vocab_size=280))
    torch.manual_seed(0)
    path = tmp_path / "m"
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=D, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(path)
    tok.save_pretrained(path)
    ours, hook = _trained_like(GatedSAE, seed=5), "blocks.1.hook_resid_pre"
    save_sae(ours, tmp_path / "s", model_name=str(path), hook_name=hook)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sl = sae_lens.SAE.load_from_disk(tmp_path / "s")
    bridge = sae_lens.SAETransformerBridge.boot_transformers(str(path), device="cpu")
    tokens = bridge.to_tokens(text)
    bridge.add_sae(sl)
    assert list(bridge.acts_to_saes) == [hook]
    with torch.no_grad():
        spliced = bridge(tokens)
    ref = _splice(load_model(path), hook, ours, tokens)
    torch.testing.assert_close(spliced, ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ SAELens -> ours
def _saelens_sae(config_cls, sae_cls, seed=0, **cfg):
    meta = SAEMetadata(
        model_name="gpt2",
        hook_name="blocks.8.hook_resid_pre",
        hook_head_index=None,
        context_size=128,
        prepend_bos=True,
        dataset_path="monology/pile-uncopyrighted",
    )
    sae = sae_cls(config_cls(d_in=D, d_sae=M, dtype="float32", metadata=meta, **cfg))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
            if name == "threshold":
                p.abs_()
    return sae.eval()


SAVED = {  # (config class, SAE class, extra config) by (architecture, how SAELens saved it)
    ("standard", "save_model"): (sae_lens.StandardSAEConfig, sae_lens.StandardSAE, {}),
    ("gated", "save_model"): (sae_lens.GatedSAEConfig, sae_lens.GatedSAE, {}),
    ("jumprelu", "save_model"): (sae_lens.JumpReLUSAEConfig, sae_lens.JumpReLUSAE, {}),
    ("topk", "save_model"): (sae_lens.TopKSAEConfig, sae_lens.TopKSAE, {"k": 5}),
    ("topk-rescaled", "save_model"): (
        sae_lens.TopKSAEConfig,
        sae_lens.TopKSAE,
        {"k": 5, "rescale_acts_by_decoder_norm": True},
    ),
    # What SAELens' training runner writes at the end of training (training details in the metadata); a BatchTopK
    # SAE becomes a JumpReLU with one threshold.
    ("standard", "save_inference_model"): (sae_lens.StandardTrainingSAEConfig, sae_lens.StandardTrainingSAE, {}),
    ("gated", "save_inference_model"): (sae_lens.GatedTrainingSAEConfig, sae_lens.GatedTrainingSAE, {}),
    ("jumprelu", "save_inference_model"): (sae_lens.JumpReLUTrainingSAEConfig, sae_lens.JumpReLUTrainingSAE, {}),
    ("topk", "save_inference_model"): (sae_lens.TopKTrainingSAEConfig, sae_lens.TopKTrainingSAE, {"k": 5}),
    ("batchtopk", "save_inference_model"): (
        sae_lens.BatchTopKTrainingSAEConfig,
        sae_lens.BatchTopKTrainingSAE,
        {"k": 5},
    ),
}
READ_AS = {
    "standard": BaselineSAE,
    "gated": GatedSAE,
    "jumprelu": JumpReLUSAE,
    "topk": TopKSAE,
    "topk-rescaled": TopKSAE,
    "batchtopk": JumpReLUSAE,
}


@pytest.mark.parametrize("arch,how", list(SAVED))
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_saelens_saved_saes_load_with_their_names_and_function(tmp_path, arch, how, apply_b_dec):
    cfg_cls, cls, extra = SAVED[arch, how]
    sl = _saelens_sae(cfg_cls, cls, apply_b_dec_to_input=apply_b_dec, **extra)
    if arch == "batchtopk":
        sl.topk_threshold.fill_(0.3)  # the running estimate its training keeps
    getattr(sl, how)(tmp_path / "s")
    stored = load_sae(tmp_path / "s")
    assert type(stored.sae) is READ_AS[arch]
    assert (stored.model_name, stored.hook_name) == ("gpt2", "blocks.8.hook_resid_pre")
    assert stored.metadata["context_size"] == 128 and stored.metadata["sae_lens_version"] == sae_lens.__version__
    back = sae_lens.SAE.load_from_disk(tmp_path / "s")  # what SAELens computes from the same file
    x = _x(scale=2.0)
    with torch.no_grad():
        f = back.encode(x)
        torch.testing.assert_close(stored.sae.encode(x), f, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stored.sae(x), back.decode(f), rtol=1e-5, atol=1e-5)
    assert (f > 0).any() and (f == 0).any()


def test_a_negative_saelens_threshold_acts_as_zero(tmp_path):
    # SAELens' JumpReLU encoder is ReLU(z)·1[z > θ]: a threshold below 0 passes exactly the positive z.
    sl = _saelens_sae(sae_lens.JumpReLUSAEConfig, sae_lens.JumpReLUSAE, seed=3)
    with torch.no_grad():
        sl.threshold[:10] = -0.5
    sl.save_model(tmp_path / "s")
    x = _x(256, scale=2.0)
    with torch.no_grad():
        torch.testing.assert_close(load_sae(tmp_path / "s").sae.encode(x), sl.encode(x), rtol=1e-5, atol=1e-5)


def test_saelens_gated_encode_is_the_papers(tmp_path):
    # SAELens trains its gated SAE with another loss, but its encoder is the paper's f̃ = 1[π_gate > 0]·ReLU(π_mag):
    # our GatedSAE with SAELens' weights gives the same codes, including which latents the gate shuts.
    sl = _saelens_sae(sae_lens.GatedSAEConfig, sae_lens.GatedSAE, seed=2)
    sl.save_model(tmp_path / "s")
    ours = load_sae(tmp_path / "s").sae
    x = _x(256, seed=5, scale=2.0)
    with torch.no_grad():
        f_sl, f_ours = sl.encode(x), ours.encode(x)
        pi_gate = ours.gate_pre_activation(x)
    assert torch.equal(f_sl > 0, f_ours > 0)
    torch.testing.assert_close(f_ours, f_sl, rtol=1e-5, atol=1e-5)
    assert ((pi_gate <= 0) & (ours.magnitude_pre_activation(x) > 0)).any(), "the gate shut some positive magnitude"


def test_an_architecture_not_read_here_is_refused_naming_it(tmp_path):
    sl = _saelens_sae(sae_lens.AbsTopKSAEConfig, sae_lens.AbsTopKSAE, k=4)
    sl.save_model(tmp_path / "s")
    assert json.loads((tmp_path / "s" / CONFIG_FILE).read_text())["architecture"] == "abstopk"
    with pytest.raises(
        SAEFormatError, match=r"architecture 'abstopk' cannot be loaded here \(standard, gated, jumprelu"
    ):
        load_sae(tmp_path / "s")


@pytest.mark.parametrize("norm", ["layer_norm", "constant_norm_rescale"])
def test_per_token_normalisation_is_refused_with_advice_that_can_be_followed(tmp_path, norm):
    sl = _saelens_sae(sae_lens.StandardSAEConfig, sae_lens.StandardSAE, normalize_activations=norm)
    sl.save_model(tmp_path / "s")
    with pytest.raises(SAEFormatError) as e:
        load_sae(tmp_path / "s")
    msg = str(e.value)
    assert "each token" in msg and "no weights can absorb" in msg and "fold" not in msg
    # The advice works: SAELens reads it and applies the normalisation per token.
    x = _x()
    back = sae_lens.SAE.load_from_disk(tmp_path / "s")
    with torch.no_grad():
        torch.testing.assert_close(back(x), sl(x))


def test_a_folded_normalisation_is_refused_with_the_fold_to_apply(tmp_path):
    sl = _saelens_sae(
        sae_lens.StandardSAEConfig, sae_lens.StandardSAE, normalize_activations="expected_average_only_in"
    )
    sl.save_model(tmp_path / "s")
    with pytest.raises(SAEFormatError, match="fold_activation_norm_scaling_factor"):
        load_sae(tmp_path / "s")
    # Following it: fold a factor, save, and the SAE loads and computes the folded function on raw activations.
    factor = 0.37
    sl.fold_activation_norm_scaling_factor(factor)
    sl.save_model(tmp_path / "folded")
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(load_sae(tmp_path / "folded").sae.encode(x), sl.encode(x), rtol=1e-5, atol=1e-5)
