"""The step benchmark (benchmarks/bench_sae.py) still runs, its states have the code densities it reports, and ours
matches autograd on them.

Not a timing test: it runs at a tiny size with peers disabled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_sae
    finally:
        sys.path.pop(0)
    return bench_sae


def test_benchmark_state_is_sparse_and_ours_matches_autograd():
    b = _bench()
    sae, x = b.make_state("gated", 512, 4096, 256)  # the benchmark's d and M at its sparsest density
    with torch.no_grad():
        density = float((sae.encode(x) > 0).float().mean())
    assert 0.002 < density < 0.05, "the benchmark must time the sparse regime of a trained SAE"
    loss_err, grad_err, l0 = b.check_equal("baseline", 64, 512, 256, lam=1.0)
    assert loss_err < 1e-5 and grad_err < 1e-4 and l0 > 0


@pytest.mark.parametrize("arch", ["baseline", "gated", "jumprelu", "topk", "batchtopk"])
@pytest.mark.parametrize("density", [0.05, 0.5])
def test_benchmark_states_have_the_density_they_report(arch, density):
    b = _bench()
    loss_err, grad_err, l0 = b.check_equal(arch, 32, 256, 128, lam=1.0, density=density)
    assert l0 / 256 == pytest.approx(density, rel=0.1)
    assert loss_err < 1e-5 and grad_err < 1e-4


def test_benchmark_script_runs_small():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_sae.py"),
            "--d",
            "32",
            "--latents",
            "256",
            "--batch",
            "128",
            "--rounds",
            "1",
            "--densities",
            "0.05",
            "0.5",
            "--no-peers",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    table = out.stdout.split("ms per training step (median")[1].splitlines()
    rows = [
        line.split()
        for line in table
        if line.split() and line.split()[0] in ("baseline", "gated", "jumprelu", "topk", "batchtopk")
    ]
    assert [(r[0], r[1]) for r in rows] == [
        (a, d) for a in ("baseline", "gated", "jumprelu", "topk", "batchtopk") for d in ("5%", "50%")
    ]
    assert "reference" in table[1] and "ours" in table[1]
