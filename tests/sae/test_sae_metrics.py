"""SAE metrics (companion.sae.metrics) against brute force and hand-computed values; the γ asymmetry of the
corrected paper (Rajamanoharan et al. 2024, Eqs. 9/10); splicing on a tiny real TransformerBridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from companion.sae import metrics as sm
from companion.sae.toy import WORKED_NOISE_POWER, gamma_worked_case, near_perpendicular_case

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rand_pair(seed=0, n=500, d=16, scale=0.7, noise=0.4):
    g = torch.Generator().manual_seed(seed)
    # Rows of very different norms, so per-token ratios and aggregated ratios differ.
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.rand(n, 1, generator=g, dtype=torch.float64) * 3
    x_hat = scale * x + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, x_hat


def _argmin(obj, lo=0.01, hi=5.0, n=2000):
    """Brute force: a grid over (lo, hi) then a bounded scalar minimisation around the best grid point."""
    grid = np.linspace(lo, hi, n)
    vals = [obj(g) for g in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    return minimize_scalar(obj, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}).x


@pytest.mark.parametrize("seed,scale", [(0, 0.7), (1, 1.2), (2, 0.3)])
def test_gamma_closed_forms_equal_brute_force_argmins(seed, scale):
    x, xh = _rand_pair(seed, scale=scale)
    X, XH = x.numpy(), xh.numpy()
    corrected = _argmin(lambda g: np.mean(np.sum((XH / g - X) ** 2, axis=1)))
    first = _argmin(lambda g: np.mean(np.sum((XH - g * X) ** 2, axis=1)))
    rescale = _argmin(lambda s: np.mean(np.sum((s * XH - X) ** 2, axis=1)))
    assert sm.relative_reconstruction_bias(x, xh) == pytest.approx(corrected, rel=1e-6)
    assert sm.first_version_gamma(x, xh) == pytest.approx(first, rel=1e-6)
    assert sm.optimal_rescaling(x, xh) == pytest.approx(rescale, rel=1e-6)
    # The corrected γ is exactly the reciprocal of the best rescaling; the first version's is not.
    assert sm.relative_reconstruction_bias(x, xh) * sm.optimal_rescaling(x, xh) == pytest.approx(1.0, rel=1e-12)
    assert abs(1 / sm.first_version_gamma(x, xh) - rescale) > 1e-3


def test_gamma_aggregates_expectations_before_dividing():
    x, xh = _rand_pair(3)
    aggregated = float((xh * xh).sum() / (x * xh).sum())
    per_token = float(((xh * xh).sum(1) / (x * xh).sum(1)).mean())
    assert sm.relative_reconstruction_bias(x, xh) == pytest.approx(aggregated, rel=1e-12)
    assert abs(per_token - aggregated) > 1e-3, "fixture must make the two definitions differ"


def test_worked_case_separates_the_two_definitions():
    # x̂ = 0.8x + noise with E‖noise‖² = 0.0512 E‖x‖²: γ₁ = 0.800, corrected γ = (0.64 + 0.0512)/0.8 = 0.864.
    x, xh = gamma_worked_case(n=20000, d=64, seed=0)
    assert sm.first_version_gamma(x, xh) == pytest.approx(0.800, abs=0.002)
    assert sm.relative_reconstruction_bias(x, xh) == pytest.approx(0.864, abs=0.002)
    assert (0.64 + WORKED_NOISE_POWER) / 0.8 == pytest.approx(0.864)
    # Brute force on the same data agrees with the corrected closed form, not with the first version.
    X, XH = x.numpy(), xh.numpy()
    bf = _argmin(lambda g: float(np.mean(np.sum((XH / g - X) ** 2, axis=1))), 0.3, 2.0, 171)
    assert bf == pytest.approx(sm.relative_reconstruction_bias(x, xh), rel=1e-6)
    assert abs(bf - 0.800) > 0.05


def test_near_perpendicular_both_rescalings_vanish():
    x, xh = near_perpendicular_case(parallel=0.05)
    g1 = sm.first_version_gamma(x, xh)
    s = sm.optimal_rescaling(x, xh)
    assert g1 == pytest.approx(0.05, rel=1e-6)
    assert s == pytest.approx(0.05 / (0.05**2 + 1), rel=1e-3)
    assert g1 < 0.06 and s < 0.06
    assert 1 / g1 > 15, "the first version's claimed rescaling 1/γ₁ is far from the best one"
    assert sm.relative_reconstruction_bias(x, xh) > 15


def test_unbiased_but_imperfect_reconstruction_has_gamma_one_and_smaller_norm():
    # x̂ = projection of x onto a subspace: E[x·x̂] = E‖x̂‖², so γ = 1, yet E‖x̂‖² = E‖x‖² − E‖x̂ − x‖² < E‖x‖².
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 8, generator=g, dtype=torch.float64)
    xh = x.clone()
    xh[:, 5:] = 0
    assert sm.relative_reconstruction_bias(x, xh) == pytest.approx(1.0, abs=1e-12)
    assert float((xh**2).sum()) == pytest.approx(float((x**2).sum() - ((x - xh) ** 2).sum()), rel=1e-12)
    assert sm.first_version_gamma(x, xh) < 0.8


def test_fvu_is_about_the_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g, dtype=torch.float64) + 10.0  # large mean: variance about 0 would be wrong
    xh = x + 0.1 * torch.randn(200, 4, generator=g, dtype=torch.float64)
    X, XH = x.numpy(), xh.numpy()
    expected = np.sum((X - XH) ** 2) / np.sum((X - X.mean(0)) ** 2)
    assert sm.fraction_variance_unexplained(x, xh) == pytest.approx(expected, rel=1e-12)
    assert sm.fraction_variance_unexplained(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(1.0)
    assert sm.fraction_variance_unexplained(x, x) == 0.0


def test_sparsity_metrics_on_a_hand_example():
    f = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert sm.l0(f) == pytest.approx((2 + 1 + 1 + 1) / 4)
    freq = sm.firing_frequencies(f)
    assert freq.tolist() == [0.0, 1.0, 0.0, 0.25]
    assert sm.dead_fraction(freq) == 0.5
    assert sm.dense_fraction(freq, threshold=0.5) == 0.25
    assert sm.dense_fraction(freq, threshold=0.2) == 0.5


def test_streaming_stats_equal_full_batch_functions():
    x, xh = _rand_pair(4, n=300)
    f = torch.relu(torch.randn(300, 10, generator=torch.Generator().manual_seed(9)))
    st = sm.ReconstructionStats()
    for i in range(0, 300, 64):
        st.update(x[i : i + 64], xh[i : i + 64], f[i : i + 64])
    s = st.summary()
    assert s.gamma == pytest.approx(sm.relative_reconstruction_bias(x, xh), rel=1e-12)
    assert s.gamma_first_version == pytest.approx(sm.first_version_gamma(x, xh), rel=1e-12)
    assert s.rescaling == pytest.approx(sm.optimal_rescaling(x, xh), rel=1e-12)
    assert s.fvu == pytest.approx(sm.fraction_variance_unexplained(x, xh), rel=1e-10)
    assert s.l0 == pytest.approx(sm.l0(f))
    assert torch.allclose(s.frequencies, sm.firing_frequencies(f))


def test_streaming_stats_need_a_batch():
    with pytest.raises(ValueError, match="no batch was added"):
        sm.ReconstructionStats().summary()


def test_loss_recovered_formula():
    assert sm.loss_recovered(2.0, 2.0, 5.0) == 1.0
    assert sm.loss_recovered(2.0, 5.0, 5.0) == 0.0
    assert sm.loss_recovered(2.0, 2.75, 5.0) == pytest.approx(0.75)
    assert sm.loss_recovered(2.0, 6.5, 5.0) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="zero-ablation"):
        sm.loss_recovered(2.0, 2.5, 1.9)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="same shape"):
        sm.relative_reconstruction_bias(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="undefined"):
        sm.relative_reconstruction_bias(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError):
        sm.l0(torch.zeros(4))


# ----------------------------------------------------------------------------------------------- on a real model
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_gpt2_sae")
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=32, vocab_size=50, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(path)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(50)}, unk_token="w1"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="w0", eos_token="w0", unk_token="w1").save_pretrained(path)
    model = TransformerBridge.boot_transformers(str(path), device="cpu")
    model.eval()
    return model


def _tokens(seed=0, b=3, s=12):
    t = torch.randint(1, 50, (b, s), generator=torch.Generator().manual_seed(seed))
    t[:, 0] = 0  # BOS
    t[1, 5] = 0  # a document boundary mid-row
    return t


@pytest.mark.parametrize("site", ["blocks.0.mlp.hook_post", "blocks.1.hook_resid_pre", "blocks.0.attn.hook_z"])
def test_lm_losses_identity_splice_is_clean_and_zero_matches_manual_hook(tiny_model, site):
    toks = [_tokens(0), _tokens(1)]
    seen = []

    def identity(a):
        seen.append(a.shape[0])
        return a.clone()

    res = sm.lm_losses(tiny_model, toks, site, {"id": identity, "half": lambda a: 0.5 * a}, exclude_token_ids=(0,))
    assert res.ce_spliced["id"] == pytest.approx(res.ce_clean, abs=1e-6)
    assert res.delta_lm_loss("half") == pytest.approx(res.ce_spliced["half"] - res.ce_clean)
    assert seen == [int((t != 0).sum()) for t in toks], "only non-special positions are handed to the SAE"
    assert res.n_tokens == sum(t.shape[0] * (t.shape[1] - 1) for t in toks)
    # Zero ablation by hand: zero every non-BOS position of the site, mean CE over all predictions.
    tot = 0.0
    for t in toks:
        keep = t != 0

        def hook(a, hook=None, keep=keep):
            flat = a.reshape(a.shape[0], a.shape[1], -1).clone()
            flat[keep] = 0
            return flat.reshape(a.shape)

        with torch.no_grad():
            tot += float(
                tiny_model.run_with_hooks(t, return_type="loss", loss_per_token=True, fwd_hooks=[(site, hook)]).sum()
            )
    assert res.ce_zero == pytest.approx(tot / res.n_tokens, rel=1e-6)
    assert abs(res.ce_zero - res.ce_clean) > 1e-4, "zero ablation must change the loss (else nothing was spliced)"
    if res.ce_zero > res.ce_clean:  # an untrained model need not be hurt by ablation; the formula is tested above
        assert res.loss_recovered("id") == pytest.approx(1.0, abs=1e-5)


def test_lm_losses_clean_ce_equals_model_loss(tiny_model):
    t = _tokens(2)
    res = sm.lm_losses(tiny_model, [t], "blocks.0.hook_mlp_out", {})
    with torch.no_grad():
        assert res.ce_clean == pytest.approx(float(tiny_model(t, return_type="loss")), rel=1e-6)


def test_lm_losses_refuses_a_site_the_model_does_not_have(tiny_model):
    # TransformerLens 3's bridge skips an unknown hook name in run_with_hooks: the "spliced" loss would be the clean one.
    with pytest.raises(KeyError, match="does not exist"):
        sm.lm_losses(tiny_model, [_tokens(3)], "blocks.0.hook_mlp_output", {"id": lambda a: a})
