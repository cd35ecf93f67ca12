"""The SAE trainer: paper recipe (Adam β1 = 0, warm-up, unit-norm decoder, resampling with 0.1× lr and cosine
re-warm-up), determinism, and — on synthetic superposition data with known features — that both architectures
recover the features and that at matched L0 the gated SAE has γ closer to 1 and better reconstruction."""

from __future__ import annotations

import itertools

import pytest
import torch

from companion.sae import metrics as sm
from companion.sae.sweeps import SAESpec, equal_compute_sweep
from companion.sae.toy import max_cosine_similarity, shrinkage_toy, superposition_data
from companion.sae.training import SAETrainConfig, _Member, train_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_equal_compute_sweep_gives_baseline_one_and_a_half_times_the_width():
    specs = equal_compute_sweep(64, [1.0, 2.0], [0.5], baseline_width_factor=1.5)
    assert [(s.architecture, s.n_latents, s.lam) for s in specs] == [
        ("baseline", 96, 0.5),
        ("gated", 64, 1.0),
        ("gated", 64, 2.0),
    ]


def test_optimizer_is_adam_with_beta1_zero_and_linear_warmup():
    m = _Member(SAESpec("gated", 8, 1.0), 4, SAETrainConfig(lr=1e-3, warmup_steps=10), seed=0)
    assert isinstance(m.opt, torch.optim.Adam)
    assert m.opt.param_groups[0]["betas"] == (0.0, 0.999)
    assert [m.lr_at(s) for s in (0, 4, 9, 50)] == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3])


def _stream(n_batches, seed=0, d=16, batch=128):
    data = superposition_data(d=d, n_features=32, expected_l0=3, seed=seed)
    return list(data.batches(n_batches, batch, seed=seed + 1))


def test_training_is_deterministic_for_a_seed_and_keeps_unit_norm_decoders():
    specs = equal_compute_sweep(32, [0.5], [0.3])
    cfg = SAETrainConfig(lr=3e-3, warmup_steps=5)
    a = train_sweep(_stream(30), specs, cfg, seed=1, progress=False)
    b = train_sweep(_stream(30), specs, cfg, seed=1, progress=False)
    c = train_sweep(_stream(30), specs, cfg, seed=2, progress=False)
    for ta, tb, tc in zip(a, b, c, strict=True):
        for (n, pa), pb, _pc in zip(ta.sae.named_parameters(), tb.sae.parameters(), tc.sae.parameters(), strict=True):
            assert torch.equal(pa, pb), f"{ta.spec.name}.{n} differs between identical runs"
        assert not torch.equal(ta.sae.W_dec, tc.sae.W_dec)
        assert (ta.sae.W_dec.norm(dim=0) - 1).abs().max() < 1e-5
        assert ta.log.steps == 30 and ta.log.tokens == 30 * 128


def test_an_edited_loss_is_what_trains_with_a_warning(monkeypatch):
    """A reader who edits GatedSAE.loss trains the edit: the trainer's check finds that the fast step no longer
    matches, warns, and trains the gated SAEs with autograd on the edited loss; the baseline keeps its fast step."""
    import dataclasses
    import warnings

    from companion.sae.autoencoders import GatedSAE

    specs = [SAESpec("baseline", 48, 0.3), SAESpec("gated", 32, 0.5)]
    stream = _stream(12)
    cfg = SAETrainConfig(lr=3e-3, warmup_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unedited losses pass the check silently
        before = train_sweep(stream, specs, cfg, seed=0, progress=False)
    original = GatedSAE.loss

    def edited(self, x, lam):  # the auxiliary term counted twice
        L = original(self, x, lam)
        return dataclasses.replace(L, total=L.total + L.auxiliary, auxiliary=2 * L.auxiliary)

    monkeypatch.setattr(GatedSAE, "loss", edited)
    with pytest.warns(
        UserWarning,
        match=r"GatedSAE\.loss and its fast step disagree .* the auxiliary term .*autograd on GatedSAE\.loss",
    ):
        fast = train_sweep(stream, specs, cfg, seed=0, progress=False)
    autograd = train_sweep(
        stream, specs, SAETrainConfig(lr=3e-3, warmup_steps=3, fast_step=False), seed=0, progress=False
    )
    for (n, _p_before), p_fast, p_autograd in zip(
        before[1].sae.named_parameters(), fast[1].sae.parameters(), autograd[1].sae.parameters(), strict=True
    ):
        assert torch.equal(p_fast, p_autograd), f"gated {n}: not trained with autograd on the edited loss"
    assert not torch.equal(before[1].sae.W_gate, fast[1].sae.W_gate)
    assert fast[1].log.auxiliary[0] == pytest.approx(2 * before[1].log.auxiliary[0], rel=1e-6)
    for p_before, p_fast in zip(before[0].sae.parameters(), fast[0].sae.parameters(), strict=True):
        assert torch.equal(p_before, p_fast)  # the baseline's loss was not edited: same (fast) training


def test_fast_step_and_autograd_train_the_same_sae():
    specs = [SAESpec("baseline", 48, 0.3), SAESpec("gated", 32, 0.5)]
    stream = [x.double() for x in _stream(15)]
    fast = train_sweep(
        stream, specs, SAETrainConfig(lr=1e-3, warmup_steps=3, fast_step=True), seed=0, progress=False, normalize=False
    )
    slow = train_sweep(
        stream, specs, SAETrainConfig(lr=1e-3, warmup_steps=3, fast_step=False), seed=0, progress=False, normalize=False
    )
    for f, s in zip(fast, slow, strict=True):
        for (n, pf), ps in zip(f.sae.named_parameters(), s.sae.parameters(), strict=True):
            assert torch.allclose(pf, ps.to(pf.dtype), atol=1e-5), f"{f.spec.name}.{n}"
        assert f.log.total == pytest.approx(s.log.total, rel=1e-5)


def test_resampling_reinitialises_only_dead_latents_resets_adam_and_drops_lr():
    cfg = SAETrainConfig(lr=1e-3, warmup_steps=0, resample_every=10, rewarmup_steps=20, resample_lr_factor=0.1)
    m = _Member(SAESpec("gated", 12, 0.5), 6, cfg, seed=0)
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    from companion.sae.step import Workspace

    m.step(x, 0, Workspace())  # creates Adam state
    m.fired.fill_(5.0)
    dead = torch.tensor([2, 7])
    m.fired[dead] = 0.0
    before = {n: p.detach().clone() for n, p in m.sae.named_parameters()}
    with torch.no_grad():
        m.sae.b_gate.fill_(0.3)
        before["b_gate"] = m.sae.b_gate.clone()
    n = m.resample(10, x)
    assert n == 2 and m.log.resampled == [(10, 2)]
    alive = torch.ones(12, dtype=torch.bool)
    alive[dead] = False
    sae = m.sae
    assert torch.equal(sae.W_dec[:, alive], before["W_dec"][:, alive])
    assert torch.equal(sae.W_gate[alive], before["W_gate"][alive])
    assert not torch.allclose(sae.W_dec[:, dead], before["W_dec"][:, dead])
    assert torch.allclose(sae.W_dec[:, dead].norm(dim=0), torch.ones(2), atol=1e-6)
    # New encoder rows point along the new decoder columns, at 0.2 × the mean living row norm.
    mean_alive = before["W_gate"][alive].norm(dim=1).mean()
    assert torch.allclose(sae.W_gate[dead].norm(dim=1), 0.2 * mean_alive * torch.ones(2), rtol=1e-5)
    assert torch.allclose(
        sae.W_gate[dead] / sae.W_gate[dead].norm(dim=1, keepdim=True), sae.W_dec[:, dead].T, atol=1e-6
    )
    for name in ("b_gate", "r_mag", "b_mag"):
        assert torch.count_nonzero(getattr(sae, name)[dead]) == 0
    assert torch.equal(sae.b_gate[alive], before["b_gate"][alive])
    st = m.opt.state[sae.W_dec]
    assert torch.count_nonzero(st["exp_avg_sq"][:, dead]) == 0 and torch.count_nonzero(st["exp_avg_sq"][:, alive]) > 0
    assert torch.count_nonzero(m.fired) == 0, "firing counts restart after a check"
    # 0.1× lr right after, cosine back to full over rewarmup_steps.
    lrs = [m.lr_at(s) for s in range(10, 31)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert all(a <= b for a, b in itertools.pairwise(lrs))


def test_resampling_runs_inside_a_sweep():
    # 4 true features and 128 latents at a large λ: most latents stop firing, so checks find dead ones.
    data = superposition_data(d=16, n_features=4, expected_l0=1, seed=0)
    cfg = SAETrainConfig(lr=0.01, warmup_steps=2, resample_every=20, resample_inputs=512)
    out = train_sweep(data.batches(60, 128, seed=1), [SAESpec("baseline", 128, 30.0)], cfg, seed=0, progress=False)
    assert [s for s, _ in out[0].log.resampled] == [20, 40, 60]
    assert sum(k for _, k in out[0].log.resampled) > 0
    assert out[0].log.lr[out[0].log.step.index(40)] == pytest.approx(0.01 * 0.1)


def test_shrinkage_toy_matches_paper_fig2():
    # One feature, x = 1: the baseline minimises (f − 1)² + λf -> f = 1 − λ/2 (λ = 1 halves it); gated gives 1.
    toy = shrinkage_toy((0.0, 0.5, 1.0), steps=600)
    assert toy.baseline == pytest.approx([1.0, 0.75, 0.5], abs=2e-3)
    assert toy.analytic_baseline == [1.0, 0.75, 0.5]
    assert toy.gated == pytest.approx([1.0, 1.0, 1.0], abs=2e-3)


@pytest.mark.slow  # two SAEs trained for 1000 steps: make test
def test_superposition_recovery_and_gated_beats_baseline_at_matched_l0():
    """Synthetic superposition: 64 unit features in 32 dims, 3 active per token, magnitudes U(0.5, 1.5).

    Gated width 64 (λ = 1), baseline width 96 (equal compute, λ = 0.6), 1000 Adam steps of 256 tokens.
    Measured over seeds 0–4 (this test runs seed 0):
      gated:    L0 4.06–4.36, FVU 0.120–0.126, γ 0.995–1.004, mean max cos 0.918–0.946
      baseline: L0 6.75–7.59, FVU 0.183–0.194, γ 0.715–0.734, mean max cos 0.975–0.987
    So the baseline is given the *larger* L0 (the comparison is conservative for the gated SAE), and the
    thresholds below sit ~0.03–0.1 outside the worst seed: feature recovery ≥ 0.88 (gated) / 0.95 (baseline),
    gated γ within 0.03 of 1, baseline γ < 0.85, gated FVU < 0.8 × baseline FVU (worst seed: 0.67).
    """
    seed = 0
    data = superposition_data(d=32, n_features=64, expected_l0=3, seed=seed)
    specs = equal_compute_sweep(64, [1.0], [0.6])
    res = train_sweep(
        data.batches(1000, 256, seed=seed + 1),
        specs,
        SAETrainConfig(lr=3e-3, warmup_steps=50),
        seed=seed,
        normalize=False,
        progress=False,
    )
    x, _ = data.sample(20000, torch.Generator().manual_seed(99))
    out = {}
    for r in res:
        f = r.encode(x)
        xh = r.sae.decode(f)
        out[r.spec.architecture] = dict(
            l0=sm.l0(f),
            fvu=sm.fraction_variance_unexplained(x, xh),
            gamma=sm.relative_reconstruction_bias(x, xh),
            mcs=float(max_cosine_similarity(data.features, r.sae.W_dec).mean()),
        )
    g, b = out["gated"], out["baseline"]
    print(f"superposition seed {seed}: gated {g}, baseline {b}")
    assert g["mcs"] >= 0.88 and b["mcs"] >= 0.95
    assert b["l0"] >= g["l0"], "the matched comparison must not favour the gated SAE with more latents"
    assert abs(g["gamma"] - 1) < 0.03
    assert b["gamma"] < 0.85
    assert abs(g["gamma"] - 1) < abs(b["gamma"] - 1)
    assert g["fvu"] < 0.8 * b["fvu"]
