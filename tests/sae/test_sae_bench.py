"""The step benchmark (benchmarks/bench_sae.py) still runs, its states have the code densities it reports, and ours
matches autograd on them; its rounds, paired ratios and verdict line (benchmarks/timing.py) do what they say.

Not a timing test: it runs at a tiny size with peers disabled."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench(module: str = "bench_sae"):
    """A module of benchmarks/: bench_sae (the states, the check against autograd) or timing (rounds, ratios, verdict)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


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


@pytest.mark.slow  # the benchmark script in an interpreter of its own
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
            "--reference",
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


def test_paired_ratio_and_rotated_rounds():
    b = _bench("timing")
    ours = [1.0, 1.1, 0.9, 1.0, 1.2, 1.0, 0.95, 1.05]
    q, lo, hi = b.paired_ratio([1.5 * t for t in ours], ours)  # a load that moves both alike cancels
    assert q == pytest.approx(1.5) and lo == pytest.approx(1.5) and hi == pytest.approx(1.5)
    q, lo, hi = b.paired_ratio([1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0], [1.0] * 8)
    assert lo <= q <= hi and lo == 1.0 and hi == 2.0

    calls, now = [], [0.0]

    class Impl:
        def __init__(self, name, cost):
            self.name, self.cost = name, cost

        def step(self, x):
            calls.append(self.name)
            now[0] += self.cost

    costs = {"ours": 1.0, "reference": 3.0, "fast peer": 1.2, "slow peer": 5.0}
    impls = [(Impl(n, c), None) for n, c in costs.items()]
    times, full = b.time_round_robin(impls, rounds=4, screen=1, clock=lambda: now[0])
    assert calls[:8] == list(costs) * 2  # warm-up, then the screening round: everyone
    # Then ours and the peers within 1.5x of the fastest peer, in an order rotated every round.
    assert calls[8:] == ["fast peer", "ours", "ours", "fast peer", "fast peer", "ours"]
    assert full == {"ours", "fast peer"} and times["slow peer"] == [5.0] and times["ours"] == [1.0] * 4


def test_rounds_go_on_while_ours_against_a_peer_is_a_tie():
    b = _bench("timing")
    now = [0.0]

    class Impl:
        def __init__(self, name, costs):
            self.name, self.costs, self.n = name, costs, 0

        def step(self, x):
            now[0] += self.costs[self.n % len(self.costs)]
            self.n += 1

    for peer_costs, expected in [([0.9, 1.1], 10), ([1.5], 4)]:
        impls = [(Impl("ours", [1.0]), None), (Impl("peer", peer_costs), None)]
        times, _ = b.time_round_robin(impls, rounds=4, screen=1, clock=lambda: now[0], max_rounds=10)
        assert len(times["ours"]) == len(times["peer"]) == expected


def _row(arch, ratio, bind="dictionary_learning"):
    return dict(
        arch=arch,
        density=0.5,
        l0=0.5,
        load=1.0,
        med={"ours": 1.0, bind: ratio[0]},
        full={"ours", bind},
        bind=bind,
        ratio=ratio,
        ratios={bind: ratio},
        rounds=8,
        fastest=bind,
        loss_err=0.0,
        grad_err=0.0,
    )


@pytest.mark.parametrize(
    "ratios,verdict",
    [
        ([(1.2, 1.1, 1.3), (1.5, 1.4, 1.6)], "verdict: no peer is faster anywhere; ours is faster at every point"),
        ([(1.2, 1.1, 1.3), (1.02, 0.97, 1.08)], "verdict: no peer is measurably faster anywhere, but ours is not"),
        ([(1.2, 1.1, 1.3), (0.9, 0.85, 0.95)], "verdict: a peer is faster at gated at 50%"),
    ],
)
def test_the_verdict_line_says_whether_a_peer_is_faster(capsys, ratios, verdict):
    b = _bench("timing")

    class Args:
        rounds, screen, clock = 8, 1, "cpu"

    b.report([_row("baseline", ratios[0]), _row("gated", ratios[1])], Args)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(verdict), last
