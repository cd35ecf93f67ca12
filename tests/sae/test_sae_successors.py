"""JumpReLU, TopK and BatchTopK SAE losses and gradients (companion.sae.successors) against independent
implementations on tiny tensors: by-hand formulas written from each paper, SAELens' training SAEs where they compute
the same maths, and dictionary_learning's trainers (their autograd functions and auxiliary losses)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from companion.sae.autoencoders import SAELoss
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE, rectangle

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import peers  # noqa: E402

sys.path.pop(0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D, M, B = 6, 16, 24
F64 = torch.float64


def _x(n=B, seed=1, dtype=F64):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _moved(sae, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed + 50)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name != "log_threshold":
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
        sae.normalize_decoder_()
    return sae


def _grads(sae, loss):
    sae.zero_grad(set_to_none=True)
    loss.backward()
    out = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    return out


def _close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------ JumpReLU
def _jumprelu(seed=0, bandwidth=0.3):
    sae = _moved(JumpReLUSAE(D, M, seed=seed, dtype=F64, bandwidth=bandwidth, init_threshold=0.05), seed)
    with torch.no_grad():  # thresholds spread over the pre-activations' range, so some z fall in each band
        sae.log_threshold.copy_(torch.log(torch.linspace(0.2, 1.5, M, dtype=F64)))
    return sae


def _jumprelu_by_hand(sae, x, lam):
    """The paper's loss and its pseudo-gradients, written out: rectangle kernel K, bandwidth ε (arXiv:2407.14435 §4)."""
    W, b, Wd, bd = sae.W_enc.detach(), sae.b_enc.detach(), sae.W_dec.detach(), sae.b_dec.detach()
    theta, eps, n = torch.exp(sae.log_threshold.detach()), sae.bandwidth, x.shape[0]
    z = x @ W.T + b
    on = (z > theta).to(F64)
    f = z * on
    r = f @ Wd.T + bd - x  # x̂ − x
    rec = (r**2).sum() / n
    l0 = on.sum() / n
    g_f = 2 / n * r @ Wd  # ∂rec/∂f
    K = ((z - theta).abs() < eps / 2).to(F64)  # K((z − θ)/ε)
    d_theta = (g_f * (-theta / eps) * K).sum(0) + lam / n * (-K / eps).sum(0)
    d_z = g_f * on
    grads = {
        "W_enc": d_z.T @ x,
        "b_enc": d_z.sum(0),
        "W_dec": (2 / n * r).T @ f,
        "b_dec": 2 / n * r.sum(0),
        "log_threshold": theta * d_theta,
    }
    return rec, lam * l0, l0, grads


@pytest.mark.parametrize("lam", [0.0, 0.8])
def test_jumprelu_loss_and_gradients_equal_the_papers_by_hand(lam):
    sae, x = _jumprelu(), _x()
    L = sae.loss(x, lam)
    rec, sparsity, l0, ref = _jumprelu_by_hand(sae, x, lam)
    _close(L.reconstruction.detach(), rec)
    _close(L.sparsity.detach(), torch.as_tensor(sparsity, dtype=F64))
    assert float(L.l0) == pytest.approx(float(l0))
    grads = _grads(sae, L.total)
    for n, g in ref.items():
        _close(grads[n], g)
    assert ref["log_threshold"].abs().sum() > 0, "some pre-activations must fall in the kernel's band"


def test_jumprelu_equals_saelens_deepmind_mode():
    # SAELens' JumpReLU training SAE with the paper's settings (no input centring, "step" L0, the STE to θ only)
    # computes the same loss; it trains θ itself, so its θ gradient times θ is our log θ gradient.
    import sae_lens
    from sae_lens.saes.sae import TrainStepInput

    lam, ours, x = 0.8, _jumprelu(seed=2), _x(seed=4)
    sl = sae_lens.JumpReLUTrainingSAE(
        sae_lens.JumpReLUTrainingSAEConfig(
            d_in=D,
            d_sae=M,
            dtype="float64",
            apply_b_dec_to_input=False,
            jumprelu_bandwidth=ours.bandwidth,
            jumprelu_sparsity_loss_mode="step",
            jumprelu_ste_to_input=False,
            l0_coefficient=lam,
        )
    )
    with torch.no_grad():
        sl.W_enc.copy_(ours.W_enc.T)
        sl.b_enc.copy_(ours.b_enc)
        sl.W_dec.copy_(ours.W_dec.T)
        sl.b_dec.copy_(ours.b_dec)
        sl.threshold.data = ours.threshold.detach().clone()  # SAELens keeps θ in float32 by design; set it exactly
    out = sl.training_forward_pass(
        TrainStepInput(
            sae_in=x, coefficients={"l0": lam}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False
        )
    )
    out.loss.backward()
    L = ours.loss(x, lam)
    g = _grads(ours, L.total)
    _close(L.total.detach(), out.loss.detach().to(F64), 1e-6)
    for mine, theirs in [
        ("W_enc", sl.W_enc.grad.T),
        ("b_enc", sl.b_enc.grad),
        ("W_dec", sl.W_dec.grad.T),
        ("b_dec", sl.b_dec.grad),
    ]:
        _close(g[mine], theirs, 1e-6)
    _close(g["log_threshold"], ours.threshold.detach() * sl.threshold.grad.to(F64), 1e-5)


def test_jumprelu_straight_through_functions_equal_dictionary_learnings():
    # dictionary_learning's JumpReLUFunction and StepFunction are the paper's estimators; composed into the paper's
    # loss (λ·Σ H(z − θ) on the pre-activations) they give our gradients.
    dl = peers.dictionary_learning()
    from dictionary_learning.trainers.jumprelu import JumpReLUFunction, StepFunction

    lam, ours, x = 0.8, _jumprelu(seed=3), _x(seed=5)
    W, b, Wd, bd = (p.detach().clone().requires_grad_() for p in (ours.W_enc, ours.b_enc, ours.W_dec, ours.b_dec))
    theta = ours.threshold.detach().clone().requires_grad_()
    z = x @ W.T + b
    f = JumpReLUFunction.apply(z, theta, ours.bandwidth)
    loss = (x - (f @ Wd.T + bd)).pow(2).sum(-1).mean() + lam * StepFunction.apply(z, theta, ours.bandwidth).sum(
        -1
    ).mean()
    loss.backward()
    L = ours.loss(x, lam)
    g = _grads(ours, L.total)
    assert dl is not None
    _close(L.total.detach(), loss.detach(), 1e-6)  # their step function returns float32
    for mine, t in [("W_enc", W), ("b_enc", b), ("W_dec", Wd), ("b_dec", bd)]:
        _close(g[mine], t.grad)
    _close(g["log_threshold"], theta.detach() * theta.grad, 1e-6)


def test_jumprelu_bandwidth_is_relative_to_the_input_scale():
    # The paper's ε = 0.001 at E‖x‖² = 1; our inputs have E‖x‖² = d, or the RMS norm the trainer measured.
    assert JumpReLUSAE(16, 4).bandwidth == pytest.approx(0.004)
    sae = JumpReLUSAE(16, 4, bandwidth=0.01, init_threshold=0.02, input_rms=3.0)
    assert sae.bandwidth == pytest.approx(0.03) and torch.allclose(sae.threshold, torch.full((4,), 0.06))
    assert float(rectangle(torch.tensor(0.49))) == 1.0 and float(rectangle(torch.tensor(0.5))) == 0.0


# ------------------------------------------------------------------------------------------ TopK
def _topk(cls=TopKSAE, seed=0, k=3, aux_k=4, n_dead=8, **kw):
    sae = _moved(cls(D, M, seed=seed, dtype=F64, k=k, aux_k=aux_k, dead_tokens=100, **kw), seed)
    with torch.no_grad():
        # The last n_dead latents are dead: small encoder rows and a positive bias, so on every token their
        # pre-activations are positive (each of their top k_aux is > 0) but below the live latents' top k.
        dead = torch.arange(M) >= M - n_dead
        sae.W_enc[dead] *= 0.01
        sae.W_enc[~dead] *= 3
        sae.b_enc[dead] = 0.1 + 0.01 * torch.arange(int(dead.sum()), dtype=F64)
        sae.tokens_since_fired.copy_(torch.where(dead, 1000, 0))
    return sae, dead


def _topk_by_hand(sae, x, dead, alpha):
    """f = ReLU(top-k of z) per token; L = ‖x − x̂‖² + α‖e − ê‖², ê from the top-k_aux dead latents, no bias."""
    W, b, Wd, bd = sae.W_enc.detach(), sae.b_enc.detach(), sae.W_dec.detach(), sae.b_dec.detach()
    z = (x - bd) @ W.T + b
    f = torch.zeros_like(z)
    f_aux = torch.zeros_like(z)
    for t in range(z.shape[0]):
        order = sorted(range(M), key=lambda i: -float(z[t, i]))
        for i in order[: sae.k]:
            f[t, i] = max(float(z[t, i]), 0.0)
        for i in [i for i in order if dead[i]][: sae.aux_k]:
            f_aux[t, i] = max(float(z[t, i]), 0.0)
    e = x - (f @ Wd.T + bd)
    rec = (e**2).sum(-1).mean()
    aux = alpha * ((e - f_aux @ Wd.T) ** 2).sum(-1).mean()
    return f, rec, aux


def test_topk_loss_equals_the_papers_by_hand():
    sae, dead = _topk()
    x = _x()
    L = sae.loss(x)
    f, rec, aux = _topk_by_hand(sae, x, dead, sae.aux_alpha)
    _close(L.reconstruction.detach(), rec)
    _close(L.auxiliary.detach(), aux)
    assert float(L.auxiliary.detach()) > 0 and float(L.l0) == pytest.approx(float((f > 0).sum(-1).double().mean()))
    _close(sae.encode(x), f)
    with pytest.raises(ValueError, match="no sparsity penalty"):
        sae.loss(x, 0.5)


def test_topk_equals_saelens_with_every_dead_top_activation_positive():
    # SAELens' TopK training SAE (decoder-norm rescaling off) is the same loss when enough latents are dead that its
    # k_aux scale min(n_dead / k_aux, 1) is 1 and no dead latent's top pre-activation is negative (it skips the ReLU).
    import sae_lens
    from sae_lens.saes.sae import TrainStepInput

    ours, dead = _topk(k=3, aux_k=D // 2, n_dead=8)
    x = _x(seed=2)
    sl = sae_lens.TopKTrainingSAE(
        sae_lens.TopKTrainingSAEConfig(
            d_in=D,
            d_sae=M,
            k=3,
            dtype="float64",
            rescale_acts_by_decoder_norm=False,
            aux_loss_coefficient=ours.aux_alpha,
        )
    )
    with torch.no_grad():
        for n in ("W_enc", "W_dec"):
            getattr(sl, n).copy_(getattr(ours, n).T)
        sl.b_enc.copy_(ours.b_enc)
        sl.b_dec.copy_(ours.b_dec)
    out = sl.training_forward_pass(
        TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False)
    )
    out.loss.backward()
    L = ours.loss(x)
    g = _grads(ours, L.total)
    _close(L.reconstruction.detach(), out.losses["mse_loss"].detach())
    _close(L.auxiliary.detach(), out.losses["auxiliary_reconstruction_loss"].detach())
    for mine, theirs in [
        ("W_enc", sl.W_enc.grad.T),
        ("b_enc", sl.b_enc.grad),
        ("W_dec", sl.W_dec.grad.T),
        ("b_dec", sl.b_dec.grad),
    ]:
        _close(g[mine], theirs)


def _dl_trainer(kind, ours, dead):
    peers.dictionary_learning()
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer
    from dictionary_learning.trainers.top_k import TopKTrainer

    cls = TopKTrainer if kind == "topk" else BatchTopKTrainer
    tr = cls(
        steps=10,
        activation_dim=D,
        dict_size=M,
        k=ours.k,
        layer=0,
        lm_name="tiny",
        lr=1e-3,
        device="cpu",
        seed=0,
        warmup_steps=1,
    )
    tr.ae.to(F64)
    tr.top_k_aux = ours.aux_k
    tr.dead_feature_threshold = ours.dead_tokens
    with torch.no_grad():
        tr.ae.encoder.weight.copy_(ours.W_enc)
        tr.ae.encoder.bias.copy_(ours.b_enc)
        tr.ae.decoder.weight.copy_(ours.W_dec)
        tr.ae.b_dec.copy_(ours.b_dec)
    tr.num_tokens_since_fired = torch.where(dead, 10**6, 0)
    return tr


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_topk_and_batchtopk_equal_dictionary_learning(kind):
    # dictionary_learning divides its AuxK term by the variance of the (detached) residual, a constant for the
    # gradients: our loss with α / that variance is its loss, value and every gradient.
    # It counts this batch's firing before it picks the dead latents, we count the batches before: in this state no
    # dead latent fires, so the two agree on which are dead.
    cls = TopKSAE if kind == "topk" else BatchTopKSAE
    ours, dead = _topk(cls=cls, k=2, aux_k=4, n_dead=6)
    x = _x(seed=3)
    assert not (ours.train_code(x)[:, dead] > 0).any()
    tr = _dl_trainer(kind, ours, dead)
    theirs = tr.loss(x, step=0)
    theirs.backward()
    with torch.no_grad():
        e = x - ours.decode(ours.train_code(x))
        var = (e - e.mean(0)).pow(2).sum(-1).mean()
    ours.aux_alpha = tr.auxk_alpha / float(var)
    L = ours.loss(x)
    g = _grads(ours, L.total)
    tol = 1e-6  # it computes the AuxK term in float32
    _close(L.total.detach(), theirs.detach(), tol)
    _close(L.auxiliary.detach() / ours.aux_alpha, torch.as_tensor(tr.pre_norm_auxk_loss, dtype=F64).detach(), tol)
    assert float(L.auxiliary.detach()) > 0
    for mine, t in [
        ("W_enc", tr.ae.encoder.weight),
        ("b_enc", tr.ae.encoder.bias),
        ("W_dec", tr.ae.decoder.weight),
        ("b_dec", tr.ae.b_dec),
    ]:
        _close(g[mine], t.grad, tol)


# ------------------------------------------------------------------------------------------ BatchTopK
def test_batchtopk_keeps_the_k_times_b_largest_of_the_batch_and_infers_with_one_threshold():
    sae, _ = _topk(cls=BatchTopKSAE, k=3, n_dead=0)
    x = _x()
    with torch.no_grad():
        z = sae.pre_activation(x)
        f = sae.train_code(x)
    a = torch.relu(z).flatten()
    kept = a.sort(descending=True).values[: 3 * B]
    assert int((f > 0).sum()) == int((kept > 0).sum()) and torch.equal(
        f.flatten().sort(descending=True).values[: 3 * B], kept
    )
    per_token = (f > 0).sum(-1)
    assert per_token.min() < per_token.max(), "a token's L0 varies; the batch mean is k"
    with pytest.raises(ValueError, match="no inference threshold yet"):
        sae.encode(x)
    # Inference: one threshold for every latent and token (a JumpReLU map); at the batch's own smallest kept value it
    # reproduces the batch-level code.
    L = sae.loss(x)
    assert float(L.batch_threshold) == float(kept[kept > 0].min())
    sae.observe((f > 0).sum(0).double(), B, L)
    with torch.no_grad():
        sae.threshold.fill_(float(L.batch_threshold) - 1e-12)
        torch.testing.assert_close(sae.encode(x), f)
        one = sae.encode(x[:1])
    torch.testing.assert_close(one, sae.encode(x)[:1])  # per token: no batch dependence at inference


def test_batchtopk_threshold_is_the_moving_average_dictionary_learning_and_saelens_keep():
    peers.dictionary_learning()
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    sae = BatchTopKSAE(D, M, seed=0, dtype=F64, k=3, threshold_momentum=0.9)
    tr = BatchTopKTrainer(
        steps=10,
        activation_dim=D,
        dict_size=M,
        k=3,
        layer=0,
        lm_name="tiny",
        device="cpu",
        threshold_beta=0.9,
        seed=0,
        warmup_steps=1,
    )
    sl = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D, d_sae=M, k=3, topk_threshold_lr=0.1))
    sl.topk_threshold.fill_(0.0)
    expected_sl = 0.0
    for seed in range(3):
        f = torch.relu(_x(seed=seed) @ torch.randn(D, M, generator=torch.Generator().manual_seed(seed), dtype=F64))
        f = f * (f > 0.8)
        zero = torch.zeros((), dtype=F64)  # a loss record carrying this batch's smallest kept value
        sae.observe(torch.zeros(M), B, SAELoss(zero, zero, zero, zero, zero, zero, batch_threshold=f[f > 0].min()))
        tr.update_threshold(f.float())
        sl.update_topk_threshold(f)
        expected_sl = 0.9 * expected_sl + 0.1 * float(f[f > 0].min())
        assert float(sae.threshold) == pytest.approx(float(tr.ae.threshold), rel=1e-6)
    # SAELens starts its average at 0 instead of at the first batch's value; otherwise the same update.
    assert float(sl.topk_threshold) == pytest.approx(expected_sl, rel=1e-12)
    assert math.isfinite(float(sae.threshold)) and float(sae.threshold) > 0.8
