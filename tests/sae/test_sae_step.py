"""The hand-derived training step (companion.sae.step) must give the same losses and gradients as autograd on
the one definition of each loss (the ``loss`` methods of companion.sae.autoencoders), in both its sparse and dense
code paths; and the check the trainer runs before training must catch an edited loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from companion.sae.architectures import ARCHITECTURES
from companion.sae.autoencoders import BaselineSAE, GatedSAE
from companion.sae.step import Workspace, fast_step_disagreement, loss_and_grads

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMPONENTS = ("total", "reconstruction", "sparsity", "auxiliary", "l1", "l0")


def _sae(cls, d, m, seed, shift):
    sae = cls(d, m, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        # Shift the (gate) bias so that only a fraction of latents fire, as in a trained SAE.
        (sae.b_enc if cls is BaselineSAE else sae.b_gate).sub_(shift)
        sae.normalize_decoder_()
    return sae


def _reference(sae, x, lam):
    sae.zero_grad(set_to_none=True)
    L = sae.loss(x, lam)
    L.total.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    counts = (sae.train_code(x) > 0).sum(0).double()
    return L, grads, counts


@pytest.mark.parametrize("cls", [BaselineSAE, GatedSAE])
@pytest.mark.parametrize("path", ["sparse", "dense"])
@pytest.mark.parametrize("lam,shift", [(0.0, 0.0), (0.7, 0.5), (3.0, 1.5)])
def test_fast_step_equals_autograd(cls, path, lam, shift):
    sae = _sae(cls, d=12, m=48, seed=int(lam * 10) + 3, shift=shift)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    L, ref, counts = _reference(sae, x, lam)
    # max_sparse_density 1 forces the sparse path, 0 the dense one (unless the code is empty).
    fired = torch.zeros(sae.n_latents, dtype=torch.float64)
    F = loss_and_grads(
        sae, x, lam, workspace=Workspace(), max_sparse_density=1.0 if path == "sparse" else 0.0, fire_counts=fired
    )
    for k in COMPONENTS:
        assert float(getattr(F, k)) == pytest.approx(float(getattr(L, k).detach()), rel=1e-11, abs=1e-12), k
    for n, p in sae.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape
        assert torch.allclose(p.grad, ref[n], rtol=1e-10, atol=1e-12), f"{n}: max err {(p.grad - ref[n]).abs().max()}"
    assert torch.equal(fired, counts)


@pytest.mark.parametrize("cls", [BaselineSAE, GatedSAE])
def test_fast_step_with_no_active_latent(cls):
    sae = _sae(cls, d=6, m=10, seed=0, shift=100.0)  # nothing fires
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    L, ref, _ = _reference(sae, x, 1.0)
    F = loss_and_grads(sae, x, 1.0)
    assert float(F.l0) == 0.0 and float(F.total) == pytest.approx(float(L.total.detach()), rel=1e-12)
    for n, p in sae.named_parameters():
        assert torch.allclose(p.grad, ref[n], atol=1e-12), n


@pytest.mark.parametrize("cls", [BaselineSAE, GatedSAE])
def test_fast_step_float32_close_to_autograd(cls):
    # The benchmark's precision: identical maths, rounding order differs.
    sae = _sae(cls, d=32, m=256, seed=5, shift=0.8).float()
    x = torch.randn(256, 32, generator=torch.Generator().manual_seed(2))
    L, ref, _ = _reference(sae, x, 0.5)
    F = loss_and_grads(sae, x, 0.5, max_sparse_density=1.0)
    assert float(F.total) == pytest.approx(float(L.total.detach()), rel=1e-5)
    for n, p in sae.named_parameters():
        scale = ref[n].abs().max().clamp_min(1e-6)
        assert (p.grad - ref[n]).abs().max() / scale < 1e-4, n


def test_fast_step_rejects_bad_input():
    sae = BaselineSAE(4, 8)
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        loss_and_grads(sae, torch.zeros(2, 3, 4), 1.0)
    with pytest.raises(ValueError, match="fire_counts"):
        loss_and_grads(sae, torch.zeros(2, 4), 1.0, fire_counts=torch.zeros(3))


@pytest.mark.parametrize("cls", sorted(ARCHITECTURES.values(), key=lambda c: c.__name__))
def test_the_trainers_check_finds_every_fast_step_equal_to_its_loss(cls):
    assert fast_step_disagreement(cls) is None


def _doubled(term):
    """A reader's edit of a loss: one of its terms counted twice."""

    def edit(original):
        def loss(self, x, lam):
            L = original(self, x, lam)
            return dataclasses.replace(L, total=L.total + getattr(L, term), **{term: 2 * getattr(L, term)})

        return loss

    return edit


def _aux_decoder_unfrozen(original):
    """The paper's Fig. 8 ablation: the gated auxiliary path's decoder trains (same values, other gradients)."""

    def loss(self, x, lam):
        L = original(self, x, lam)
        x_aux = torch.relu(self.gate_pre_activation(x)) @ self.W_dec.T + self.b_dec
        aux = (x - x_aux).pow(2).sum(-1).mean()
        return dataclasses.replace(L, total=L.total - L.auxiliary + aux, auxiliary=aux)

    return loss


@pytest.mark.parametrize(
    "cls,edit,what",
    [
        (BaselineSAE, _doubled("sparsity"), "sparsity term"),
        (BaselineSAE, _doubled("reconstruction"), "reconstruction term"),
        (GatedSAE, _doubled("auxiliary"), "auxiliary term"),
        (GatedSAE, _aux_decoder_unfrozen, "gradient of W_dec"),
    ],
)
def test_an_edited_loss_makes_the_check_fail(monkeypatch, cls, edit, what):
    monkeypatch.setattr(cls, "loss", edit(cls.loss))
    problem = fast_step_disagreement(cls)
    assert problem is not None and f"{cls.__name__}.loss" in problem and what in problem, problem


def test_an_edited_encoder_makes_the_check_fail(monkeypatch):
    # The gate opens at π_gate > −0.5 instead of > 0: encode and the loss change together, the fast step does not.
    monkeypatch.setattr(
        GatedSAE,
        "gated_code",
        lambda self, x, pi: (pi > -0.5).to(x.dtype) * torch.relu(self.magnitude_pre_activation(x)),
    )
    assert fast_step_disagreement(GatedSAE) is not None


# ------------------------------------------------------------------------------------------ the successors' steps
def _successor(cls, seed, dead_fraction):
    from companion.sae.successors import JumpReLUSAE

    opts = {"bandwidth": 0.3, "init_threshold": 0.2} if cls is JumpReLUSAE else {"k": 5, "aux_k": 4, "dead_tokens": 10}
    sae = cls(12, 48, seed=seed, dtype=torch.float64, **opts)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        sae.normalize_decoder_()
    if cls is not JumpReLUSAE:
        sae.tokens_since_fired.copy_(torch.where(torch.rand(48, generator=g) < dead_fraction, 10, 0))
    return sae


@pytest.mark.parametrize("name", ["jumprelu", "topk", "batchtopk"])
@pytest.mark.parametrize("path", ["sparse", "dense"])
@pytest.mark.parametrize("seed,dead_fraction", [(0, 0.0), (1, 0.3), (2, 0.9)])
def test_successor_fast_steps_equal_autograd(name, path, seed, dead_fraction):
    from companion.sae.architectures import ARCHITECTURES

    cls = ARCHITECTURES[name]
    sae = _successor(cls, seed, dead_fraction)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    lam = 0.6 if name == "jumprelu" else 0.0
    L, ref, counts = _reference(sae, x, lam)
    fired = torch.zeros(48, dtype=torch.float64)
    F = loss_and_grads(sae, x, lam, max_sparse_density=1.0 if path == "sparse" else 0.0, fire_counts=fired)
    for k in COMPONENTS:
        assert float(getattr(F, k)) == pytest.approx(float(getattr(L, k).detach()), rel=1e-11, abs=1e-12), k
    for n, p in sae.named_parameters():
        assert torch.allclose(p.grad, ref[n], rtol=1e-10, atol=1e-12), f"{n}: max err {(p.grad - ref[n]).abs().max()}"
    assert torch.equal(fired, counts)
    if name == "jumprelu":
        assert ref["log_threshold"].abs().sum() > 0, "the band must hold some entries"
    elif dead_fraction > 0:
        assert float(L.auxiliary.detach()) > 0
    if name == "batchtopk":
        assert float(F.batch_threshold) == float(L.batch_threshold)


def _ste_to_input(original):
    """Anthropic's JumpReLU variant (SAELens' jumprelu_ste_to_input): the L0 term's estimator also reaches z."""

    def loss(self, x, lam):
        L = original(self, x, lam)
        z = self.pre_activation(x)
        eps = self.bandwidth
        K = ((z - self.threshold).abs() < eps / 2).to(z.dtype).detach()
        extra = lam * (z * K / eps).sum(-1).mean()  # d/dz = λ K / ε, the value of the loss unchanged
        return dataclasses.replace(L, total=L.total + extra - extra.detach())

    return loss


def _aux_not_detached(original):
    """AuxK reconstructing e = x − x̂ without the stop-gradient: the same value, gradients through the main code."""

    def loss(self, x, lam):
        L = original(self, x, lam)
        z = self.pre_activation(x)
        dead = self.dead()
        e = x - self.decode(self.code_of(z))
        aux = self.aux_alpha * (e - self.aux_code(z, dead) @ self.W_dec.T).pow(2).sum(-1).mean()
        return dataclasses.replace(L, total=L.total - L.auxiliary + aux, auxiliary=aux)

    return loss


@pytest.mark.parametrize(
    "name,edit,what",
    [
        ("jumprelu", _ste_to_input, "gradient of W_enc"),
        ("jumprelu", _doubled("sparsity"), "sparsity term"),
        ("topk", _aux_not_detached, "gradient of"),
        ("batchtopk", _doubled("auxiliary"), "auxiliary term"),
    ],
)
def test_an_edited_successor_loss_makes_the_check_fail(monkeypatch, name, edit, what):
    from companion.sae.architectures import ARCHITECTURES

    cls = ARCHITECTURES[name]
    monkeypatch.setattr(cls, "loss", edit(cls.loss))
    problem = fast_step_disagreement(cls)
    assert problem is not None and f"{cls.__name__}.loss" in problem and what in problem, problem


# ------------------------------------------------------------------------------------------ selection helpers
def test_nth_largest_is_kthvalue_on_sampled_tied_skewed_and_adversarial_tensors():
    from companion.sae.sparse import nth_largest, sample_stride

    g = torch.Generator().manual_seed(0)
    B, M = 1024, 2048  # 2^21 entries: the sampled path
    adversarial = torch.randn(B, M, generator=g)
    adversarial.view(-1)[:: sample_stride(B * M, M)] += 50.0  # every sampled entry far above the rest: brackets miss
    cases = {
        "normal": torch.randn(B, M, generator=g),
        "ties": torch.randint(0, 40, (B, M), generator=g).float(),
        "column scales": torch.randn(B, M, generator=g) * torch.logspace(-3, 3, M),
        "adversarial": adversarial,
        "small": torch.randn(37, 5, generator=g),
    }
    for name, a in cases.items():
        N = a.numel()
        for n in sorted({1, 2, 17, N // 100, N // 3, N // 2, N - 3, N}):
            want = a.reshape(-1).kthvalue(N - n + 1).values
            assert nth_largest(a, n).item() == want.item(), (name, n)
    with pytest.raises(ValueError, match="n must be"):
        nth_largest(torch.zeros(4), 5)


def _batchtopk(k, twins=False, seed=3):
    from companion.sae.successors import BatchTopKSAE

    sae = _successor(BatchTopKSAE, seed, 0.0 if twins else 0.3)  # (twins would tie in the AuxK selection too)
    sae.k = k
    if twins:  # latents 2i and 2i+1 share encoder row and bias: every z comes in equal pairs
        with torch.no_grad():
            sae.W_enc[1::2] = sae.W_enc[0::2]
            sae.b_enc[1::2] = sae.b_enc[0::2]
    return sae


@pytest.mark.parametrize("path", ["sparse", "dense"])
@pytest.mark.parametrize("case", ["fewer positive z than k·B", "a tie at the k·B-th largest z"])
def test_batchtopk_fast_step_at_its_selections_edge_cases(path, case):
    # k·B = 41·40 > the 40·48 / 2 or so positive z: every positive z is kept, the ReLU zeroes the rest kept.  Or,
    # with twin latents and k·B odd, the k·B-th largest z has an equal twin only one of which is kept.
    sae = _batchtopk(41) if case.startswith("fewer") else _batchtopk(5, twins=True)
    B = 40 if case.startswith("fewer") else 41
    x = torch.randn(B, 12, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    L, ref, counts = _reference(sae, x, 0.0)
    if case.startswith("fewer"):
        assert float(L.l0) < sae.k
    else:
        z = sae.pre_activation(x).detach()
        v = z.reshape(-1).kthvalue(z.numel() - sae.k * B + 1).values
        assert v > 0 and int((z >= v).sum()) != sae.k * B
    fired = torch.zeros(48, dtype=torch.float64)
    F = loss_and_grads(sae, x, 0.0, max_sparse_density=1.0 if path == "sparse" else 0.0, fire_counts=fired)
    for k in COMPONENTS:
        assert float(getattr(F, k)) == pytest.approx(float(getattr(L, k).detach()), rel=1e-11, abs=1e-12), k
    for n, p in sae.named_parameters():
        assert torch.allclose(p.grad, ref[n], rtol=1e-10, atol=1e-12), f"{n}: max err {(p.grad - ref[n]).abs().max()}"
    assert torch.equal(fired, counts)
    assert float(F.batch_threshold) == float(L.batch_threshold)
