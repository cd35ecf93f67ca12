"""Baseline and Gated SAE losses (Rajamanoharan et al. 2024 §2, §3) against independent computations,
gradient-flow checks of the gated loss, and the unit-norm decoder constraint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.sae.architectures import make_sae
from companion.sae.autoencoders import BaselineSAE, GatedSAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _perturbed(cls, d=5, m=7, seed=0):
    """A small SAE in float64 with every parameter moved off its initial value (biases non-zero)."""
    sae = cls(d, m, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.4 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        sae.normalize_decoder_()
    return sae


def _x(n=6, d=5, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _np(t):
    return t.detach().numpy().astype(np.float64)


def _baseline_loss_loops(sae, x, lam):
    """Element-by-element evaluation of ‖x − (W_dec f + b_dec)‖² + λ‖f‖₁, f = ReLU(W_enc(x − b_dec) + b_enc)."""
    We, be, Wd, bd = _np(sae.W_enc), _np(sae.b_enc), _np(sae.W_dec), _np(sae.b_dec)
    X = _np(x)
    rec = l1 = l0 = 0.0
    for xv in X:
        f = [max(0.0, sum(We[i, j] * (xv[j] - bd[j]) for j in range(len(xv))) + be[i]) for i in range(len(be))]
        xh = [sum(Wd[j, i] * f[i] for i in range(len(f))) + bd[j] for j in range(len(xv))]
        rec += sum((xv[j] - xh[j]) ** 2 for j in range(len(xv)))
        l1 += sum(f)
        l0 += sum(v > 0 for v in f)
    n = len(X)
    return rec / n, lam * l1 / n, l0 / n


def _gated_loss_loops(sae, x, lam):
    """Element-by-element evaluation of the gated loss with W_mag = exp(r_mag) ⊙ W_gate (paper §3.2)."""
    Wg, bg, r, bm, Wd, bd = (
        _np(sae.W_gate),
        _np(sae.b_gate),
        _np(sae.r_mag),
        _np(sae.b_mag),
        _np(sae.W_dec),
        _np(sae.b_dec),
    )
    X = _np(x)
    M, d = Wg.shape
    rec = l1 = aux = l0 = 0.0
    for xv in X:
        c = [xv[j] - bd[j] for j in range(d)]
        pg = [sum(Wg[i, j] * c[j] for j in range(d)) + bg[i] for i in range(M)]
        pm = [sum(math.exp(r[i]) * Wg[i, j] * c[j] for j in range(d)) + bm[i] for i in range(M)]
        ft = [(1.0 if pg[i] > 0 else 0.0) * max(0.0, pm[i]) for i in range(M)]
        ga = [max(0.0, v) for v in pg]
        xh = [sum(Wd[j, i] * ft[i] for i in range(M)) + bd[j] for j in range(d)]
        xa = [sum(Wd[j, i] * ga[i] for i in range(M)) + bd[j] for j in range(d)]
        rec += sum((xv[j] - xh[j]) ** 2 for j in range(d))
        aux += sum((xv[j] - xa[j]) ** 2 for j in range(d))
        l1 += sum(ga)
        l0 += sum(v > 0 for v in ft)
    n = len(X)
    return rec / n, lam * l1 / n, aux / n, l0 / n


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_baseline_loss_matches_loops(lam):
    sae, x = _perturbed(BaselineSAE), _x()
    L = sae.loss(x, lam)
    rec, sp, l0 = _baseline_loss_loops(sae, x, lam)
    assert float(L.reconstruction.detach()) == pytest.approx(rec, rel=1e-12)
    assert float(L.sparsity.detach()) == pytest.approx(sp, rel=1e-12, abs=1e-15)
    assert float(L.auxiliary.detach()) == 0.0
    assert float(L.total.detach()) == pytest.approx(rec + sp, rel=1e-12)
    assert float(L.l0.detach()) == pytest.approx(l0)
    assert 0 < l0 < 7, "fixture should have some but not all latents active"


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_gated_loss_matches_loops(lam):
    sae, x = _perturbed(GatedSAE), _x()
    L = sae.loss(x, lam)
    rec, sp, aux, l0 = _gated_loss_loops(sae, x, lam)
    assert float(L.reconstruction.detach()) == pytest.approx(rec, rel=1e-12)
    assert float(L.sparsity.detach()) == pytest.approx(sp, rel=1e-12, abs=1e-15)
    assert float(L.auxiliary.detach()) == pytest.approx(aux, rel=1e-12)
    assert float(L.total.detach()) == pytest.approx(rec + sp + aux, rel=1e-12)
    assert float(L.l0.detach()) == pytest.approx(l0)


def test_gated_encode_is_jumprelu_with_paper_threshold():
    # App. E: with tied weights f̃_i = π_mag,i · 1[π_mag,i > θ_i], θ = b_mag − exp(r_mag) ⊙ b_gate.
    sae, x = _perturbed(GatedSAE, m=9), _x(n=40)
    with torch.no_grad():
        pm = sae.magnitude_pre_activation(x)
        theta = sae.jumprelu_threshold()
        jump = pm * (pm > theta) * (pm > 0)
        assert torch.allclose(sae.encode(x), jump, atol=1e-12)


def test_l1_is_on_the_gate_only_and_puts_no_gradient_on_the_magnitude_path():
    sae, x = _perturbed(GatedSAE), _x()
    L = sae.loss(x, 1.0)
    grads = torch.autograd.grad(
        L.sparsity, [sae.r_mag, sae.b_mag, sae.W_dec, sae.W_gate, sae.b_gate], allow_unused=True
    )
    for name, g in zip(["r_mag", "b_mag", "W_dec"], grads[:3], strict=True):
        assert g is None or torch.count_nonzero(g) == 0, f"L1 leaked gradient into {name}"
    assert grads[3] is not None and torch.count_nonzero(grads[3]) > 0, "L1 must train W_gate"
    assert grads[4] is not None and torch.count_nonzero(grads[4]) > 0, "L1 must train b_gate"
    # The L1 is of ReLU(π_gate), not of f̃: doubling exp(r_mag) leaves it unchanged.
    with torch.no_grad():
        sae.r_mag.add_(math.log(2.0))
    assert float(sae.loss(x, 1.0).sparsity.detach()) == pytest.approx(float(L.sparsity.detach()), rel=1e-12)


def test_reconstruction_puts_no_gradient_on_b_gate():
    # The Heaviside step has no gradient: b_gate learns only from the sparsity and auxiliary terms.
    sae, x = _perturbed(GatedSAE), _x()
    (g,) = torch.autograd.grad(sae.loss(x, 1.0).reconstruction, [sae.b_gate], allow_unused=True)
    assert g is None or torch.count_nonzero(g) == 0


def test_auxiliary_term_puts_no_gradient_on_decoder_weights_or_output_bias():
    sae, x = _perturbed(GatedSAE), _x()
    L = sae.loss(x, 0.5)
    g_wdec, g_bdec, g_wgate = torch.autograd.grad(L.auxiliary, [sae.W_dec, sae.b_dec, sae.W_gate], allow_unused=True)
    assert g_wdec is None or torch.count_nonzero(g_wdec) == 0
    assert g_wgate is not None and torch.count_nonzero(g_wgate) > 0, "the auxiliary task must train the gate"
    # b_dec still gets the input-centring gradient (x − b_dec inside π_gate), and only that:
    # ∂aux/∂b_dec = −Σ_b (∂aux/∂π_gate,b) W_gate with ∂aux/∂π_gate = (2/B)(x̂_aux − x) W_dec ⊙ 1[π_gate > 0].
    with torch.no_grad():
        pg = sae.gate_pre_activation(x)
        x_aux = torch.relu(pg) @ sae.W_dec.T + sae.b_dec
        d_pg = (2.0 / x.shape[0]) * ((x_aux - x) @ sae.W_dec) * (pg > 0)
        expected = -(d_pg.sum(0) @ sae.W_gate)
        output_bias_path = (2.0 / x.shape[0]) * (x_aux - x).sum(0)  # what an undetached output bias would add
    assert torch.allclose(g_bdec, expected, atol=1e-12)
    assert not torch.allclose(g_bdec, expected + output_bias_path, atol=1e-6), "fixture cannot tell the two apart"


def test_tied_magnitude_encoder():
    sae = _perturbed(GatedSAE)
    assert torch.allclose(sae.W_mag, torch.exp(sae.r_mag)[:, None] * sae.W_gate)
    assert not hasattr(sae, "W_mag_free"), "the magnitude encoder has no weights of its own"
    assert {n for n, _ in sae.named_parameters()} == {"W_dec", "b_dec", "W_gate", "b_gate", "r_mag", "b_mag"}


def test_init_is_unit_norm_decoder_and_transposed_encoder():
    for cls, enc in [(BaselineSAE, "W_enc"), (GatedSAE, "W_gate")]:
        sae = cls(16, 40, seed=3)
        assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(40), atol=1e-6)
        assert torch.equal(getattr(sae, enc), sae.W_dec.T)
        assert torch.equal(cls(16, 40, seed=3).W_dec, sae.W_dec), "init must be deterministic for a seed"
    assert torch.count_nonzero(GatedSAE(4, 6, seed=0).r_mag) == 0, "r_mag starts at 0 (W_mag = W_gate)"


@pytest.mark.parametrize("cls", [BaselineSAE, GatedSAE])
def test_parallel_gradient_removed_and_unit_norm_kept_through_adam_steps(cls):
    sae = _perturbed(cls, d=8, m=12)
    opt = torch.optim.Adam(sae.parameters(), lr=0.05, betas=(0.0, 0.999))
    x = _x(n=32, d=8)
    for _ in range(20):
        opt.zero_grad()
        sae.loss(x, 0.3).total.backward()
        sae.remove_parallel_decoder_grad_()
        along = (sae.W_dec.grad * sae.W_dec).sum(0)
        assert along.abs().max() < 1e-12, "gradient component along each decoder column must be removed"
        opt.step()
        drift = (sae.W_dec.norm(dim=0) - 1).abs().max()
        assert drift > 1e-9, "a step should move columns off the sphere (else the test checks nothing)"
        sae.normalize_decoder_()
        assert (sae.W_dec.norm(dim=0) - 1).abs().max() < 1e-12


def test_bad_inputs_raise_clear_errors():
    sae = BaselineSAE(4, 6)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        sae.loss(torch.zeros(3, 5), 1.0)
    with pytest.raises(ValueError, match="λ"):
        sae.loss(torch.zeros(3, 4), -1.0)
    with pytest.raises(TypeError):
        sae.encode(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="architecture"):
        make_sae("matryoshka", 4, 6)
