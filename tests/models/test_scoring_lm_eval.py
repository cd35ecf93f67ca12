"""Notebook 04's scorer agrees with a peer library: lm-evaluation-harness's multiple-choice log-likelihoods on the
same (locally built, GPT-NeoX) model and the same items, through benchmarks/bench_lm_eval.py at a tiny size.

Not a timing test: `make bench` prints the throughput of both at pythia-70m's shape."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("lm_eval", reason="lm-evaluation-harness is installed by make setup (the bench extra)")


def test_every_log_likelihood_equals_lm_evaluation_harness(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_lm_eval
    finally:
        sys.path.pop(0)
    r = bench_lm_eval.compare(4, ("paren", "believe_paren", "anthropic"), batch_size=5, small=True, workdir=tmp_path)
    # 4 items per dataset x 3 datasets x 3 templates; PhilPapers items have 2 or 3 choices.
    assert r.n_items == 36 and r.ours.shape == r.lm_eval.shape and r.ours.size >= 72
    assert np.isfinite(r.ours).all() and (r.ours < 0).all()
    np.testing.assert_allclose(r.ours, r.lm_eval, atol=1e-5, rtol=0)
    assert torch.is_grad_enabled()  # the comparison leaves autograd as it found it (later tests train)
