"""Notebook 05's recovery metrics on tiny cases with known answers, and AUROC against scikit-learn."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from companion.features import metrics as fm


def _labels(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n, dtype=torch.bool)
    y[torch.randperm(n, generator=g)[: n // 2]] = True
    return y


def test_auroc_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(1)
    y = _labels(60)
    # Sparse-code-like columns: many exact zeros (ties), a few integer-valued ties, a continuous one.
    cols = torch.stack(
        [
            torch.relu(torch.randn(60, generator=g)) * (torch.rand(60, generator=g) < 0.3),
            torch.randint(0, 3, (60,), generator=g).double(),
            torch.randn(60, generator=g),
        ],
        1,
    )
    got = fm.auroc_columns(cols, y)
    want = [roc_auc_score(y.numpy(), cols[:, j].numpy()) for j in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_auroc_by_hand():
    # positives 3, 1 ; negatives 2, 1: pairs (3>2)=1, (3>1)=1, (1<2)=0, (1=1)=½ -> 2.5 / 4
    assert fm.auroc(torch.tensor([3.0, 1.0, 2.0, 1.0]), torch.tensor([1, 1, 0, 0])) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="both classes"):
        fm.auroc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1]))


def test_a_latent_equal_to_the_variable_scores_one_and_a_random_one_about_half():
    n = 4000
    y = _labels(n)
    g = torch.Generator().manual_seed(2)
    noise = torch.relu(torch.randn(n, 7, generator=g))
    codes = torch.cat([noise[:, :3], y[:, None].float(), noise[:, 3:]], 1)
    sel, score = fm.stratified_split(y, 0.5, 0)
    best = fm.best_single_latent(codes[sel], y[sel], codes[score], y[score])
    assert best.index == 3 and best.sign == 1 and best.auroc == 1.0
    # The negated variable marks it just as well: oriented, it scores 1 too.
    flipped = fm.best_single_latent(-codes[sel], y[sel], -codes[score], y[score])
    assert flipped.index == 3 and flipped.sign == -1 and flipped.auroc == 1.0
    # Only random latents: whichever is chosen, it scores chance on the other split.
    rnd = fm.best_single_latent(noise[sel], y[sel], noise[score], y[score])
    assert abs(rnd.auroc - 0.5) < 0.04
    rec = fm.recovery(codes, y, sel, score, ks=(1, 2))
    assert rec.latent == 3 and rec.auroc == 1.0 and rec.accuracy == {1: 1.0, 2: 1.0}
    rec0 = fm.recovery(noise, y, sel, score, ks=(1, 5))
    assert all(abs(a - 0.5) < 0.05 for a in rec0.accuracy.values())


def test_mean_difference_selection_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    n, m, k = 40, 8, 3
    y = _labels(n, 3)
    codes = torch.relu(torch.randn(n, m, generator=g) + 0.8 * y[:, None].float() * torch.randn(m, generator=g))
    got = set(fm.mean_difference_topk(codes, y, k).tolist())

    def separation(cols):  # the total |class-mean difference| a subset of latents carries
        return sum(abs(float(codes[y, j].mean() - codes[~y, j].mean())) for j in cols)

    best = max(itertools.combinations(range(m), k), key=separation)
    assert got == set(best)
    with pytest.raises(ValueError, match="k must lie"):
        fm.mean_difference_topk(codes, y, m + 1)


def test_k_sparse_probe_is_sklearn_on_the_selected_latents():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(4)
    n = 200
    y = _labels(n, 4)
    codes = torch.randn(n, 10, generator=g) + torch.outer(y.float(), torch.linspace(0, 1, 10))
    sel, score = fm.stratified_split(y, 0.5, 1)
    got = fm.k_sparse_probe(codes[sel], y[sel], codes[score], y[score], k=2)
    idx = fm.mean_difference_topk(codes[sel], y[sel], 2).numpy()
    sc = StandardScaler().fit(codes[sel][:, idx].numpy())
    lr = LogisticRegression(max_iter=2000).fit(sc.transform(codes[sel][:, idx].numpy()), y[sel].numpy())
    want = (lr.predict(sc.transform(codes[score][:, idx].numpy())) == y[score].numpy()).mean()
    assert got.accuracy == pytest.approx(want)
    assert 0.5 < got.accuracy <= 1


def test_dense_probe_ceiling_and_random_floor():
    g = torch.Generator().manual_seed(5)
    n, d = 400, 16
    y = _labels(n, 5)
    direction = torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g) + 1.5 * torch.outer(y.float() * 2 - 1, direction / direction.norm())
    sel, score = fm.stratified_split(y, 0.5, 0)
    ceiling = fm.dense_probe(x[sel], y[sel], x[score], y[score])
    assert ceiling.accuracy > 0.85 and ceiling.auroc > 0.9
    r1, r2 = fm.random_codes(x, 32, seed=7), fm.random_codes(x, 32, seed=7)
    assert torch.equal(r1, r2) and r1.shape == (n, 32)
    floor = fm.recovery(r1, y, sel, score, ks=(1,))
    assert floor.auroc <= ceiling.auroc + 1e-9


def test_stratified_split_is_disjoint_balanced_and_seeded():
    y = _labels(20)
    a, b = fm.stratified_split(y, 0.5, 9)
    assert not set(a.tolist()) & set(b.tolist()) and len(a) + len(b) == 20
    assert int(y[a].sum()) == 5 and int(y[b].sum()) == 5
    assert torch.equal(a, fm.stratified_split(y, 0.5, 9)[0])
    with pytest.raises(ValueError, match="too few"):
        fm.stratified_split(torch.tensor([1, 0, 0, 0]), 0.5, 0)


def test_selection_and_probe_beside_saebench_own_functions():
    """SAEBench's sparse-probing functions (installed by make setup) on the same codes and split: the same latents,
    and on standardised-scale latents the same accuracy (SAEBench's probe does not standardise; ours does)."""
    from companion.features.peers import compare_k_sparse, saebench_k_sparse

    g = torch.Generator().manual_seed(6)
    n, m = 300, 40
    y = _labels(n, 6)
    codes = torch.relu(torch.randn(n, m, generator=g) + torch.outer(y.float(), torch.randn(m, generator=g)))
    sel, score = fm.stratified_split(y, 0.5, 2)
    for k in (1, 2, 5):
        got = compare_k_sparse(codes, y, sel, score, k)
        assert got.same_latents, k
        assert 0.5 < got.saebench <= 1 and abs(got.ours - got.saebench) <= 0.05
    # Latents already on unit scale: standardising changes nothing the probe predicts.
    z = (codes - codes[sel].mean(0)) / codes[sel].std(0, unbiased=False)
    ours = fm.k_sparse_probe(z[sel], y[sel], z[score], y[score], 5).accuracy
    theirs, _ = saebench_k_sparse(z[sel], y[sel], z[score], y[score], 5)
    assert ours == pytest.approx(theirs, abs=1.5 / len(score))
