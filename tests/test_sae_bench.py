"""The step benchmark (benchmarks/bench_sae.py) still runs, and its state and equality check mean what they say.

Not a timing test: it runs at a tiny size with peers disabled."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_sae
    finally:
        sys.path.pop(0)
    return bench_sae


def test_benchmark_state_is_sparse_and_ours_matches_autograd():
    b = _bench()
    sae, x = b.make_state("gated", 512, 4096, 256)  # the benchmark's d and M (the threshold is set for them)
    with torch.no_grad():
        density = float((sae.encode(x) > 0).float().mean())
    assert 0.002 < density < 0.05, "the benchmark must time the sparse regime of a trained SAE"
    loss_err, grad_err, l0 = b.check_equal("baseline", 64, 512, 256, lam=1.0)
    assert loss_err < 1e-5 and grad_err < 1e-4 and l0 > 0


def test_benchmark_script_runs_small():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sae.py"), "--d", "32", "--latents", "256",
                          "--batch", "128", "--rounds", "1", "--no-peers"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("speed-up of ours") == 2 and "reference" in out.stdout
