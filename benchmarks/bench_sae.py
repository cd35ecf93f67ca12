"""Benchmark: one SAE training step of every architecture, at code densities from sparse to half dense, against the
peer implementations, on the same batch, width and input dimension (default d = 512, dictionary 4096, batch 4096,
fp32, CPU).

Architectures: baseline (ReLU + L1) and gated (Rajamanoharan et al. 2024, arXiv:2404.16014), JumpReLU
(arXiv:2407.14435), TopK (arXiv:2406.04093), BatchTopK (arXiv:2412.06410).  Implementations, timed round-robin in one
process under the same environment settings so that load changes hit every one alike:

* ``ours``       — companion.sae.step.loss_and_grads (the hand-derived step) + Adam + unit-norm decoder (+ the
  architecture's training statistics), what companion.sae.training runs;
* ``reference``  — autograd on the architecture's ``loss`` (companion.sae.autoencoders / .successors), the same
  optimiser and projection (timed with ``--reference``; not a peer);
* ``dictionary_learning`` — its trainer's ``update`` (StandardTrainer, GatedSAETrainer, JumpReluTrainer, TopKTrainer,
  BatchTopKTrainer), if installed (``make setup`` installs it, benchmarks/peers.py);
* ``SAELens``    — its SAETrainer ``_train_step`` on the architecture's training SAE (decoder-norm rescaling off for
  TopK/BatchTopK, no input centring for JumpReLU: our maths); ``SAELens sparse`` — TopK with its sparse activations.

Every implementation starts from the same weights and batch.  The density is set in the state: for baseline, gated
and JumpReLU a bias (or threshold) is placed at the quantile of the pre-activations that lets that fraction of the
B·M code entries fire; for TopK and BatchTopK k = density·M.  The batch is made of ~20 active dictionary directions
per token.  Nothing is dead, so TopK's AuxK term is not exercised.

How it is timed, so that a shared, loaded machine does not decide the verdict:

* **Work, not waiting.**  Each step is timed by this process's CPU time (``--clock cpu``, the default) on one
  intra-op thread (``--threads 1``, the default): then the time is the step's work, whatever else the machine runs
  (with several threads, a thread preempted by another process leaves the others spin-waiting, which counts as
  CPU time; ``--threads 0 --clock wall`` times what a user with the machine to themselves sees).  The garbage
  collector runs before each step, not during it.
* **Interleaved.**  Each round times every implementation once, the order rotated each round (ours, peer, …;
  peer, …, ours; …), so drifts of the load and of the CPU's clock hit all of them alike.
* **Paired.**  Ours against a peer is the median over rounds of the peer's time over ours in the same round, with a
  95% bootstrap interval over rounds (``--rounds`` rounds, default 8).  A peer is faster where the whole interval
  is below 1, ours where it is above 1; while an interval holds 1, rounds go on (up to ``--max-rounds``, 24), and
  one that still holds 1 is a tie the measurement cannot break.  (Stopping once an interval excludes 1 makes its
  coverage somewhat below 95%; the rounds each cell took are reported.)
* **Screened.**  The first ``--screen`` rounds (default 1) time every implementation; after them only ours and the
  peers that can still be the fastest (median within ``--margin``, 1.3x, of the fastest peer's) are timed.  The
  autograd reference and the screened-out peers are reported with their screening medians (marked ``*``).  The
  default sweep (5 architectures x 4 densities) takes ~15 minutes of CPU time.

Reported per architecture and density: the 1-minute load average when it was measured, the median ms/step of each
implementation and ours against the fastest peer (> 1: ours is faster) with its interval; ours is checked against
autograd on the same state (losses and every gradient, fp32).  The last line says whether any peer is faster
anywhere.

Environment: ``THP_MEM_ALLOC_ENABLE=1`` (transparent huge pages for torch's CPU allocator) is set before torch is
imported, for every implementation alike.  Numerics (``--numerics``): ``native`` (default) runs every implementation
on the CPU's own code paths, as the peers run in their users' processes (``COMPANION_NATIVE_NUMERICS=1``);
``pinned`` runs all of them under companion's vendor-neutral pinning (what companion's training runs: MKL's
``COMPATIBLE`` branch, which halves the speed of the peers' MKL products, and oneDNN for ours; see
:mod:`companion.models.numerics`).  ``python benchmarks/bench_sae.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import gc
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# Decided before companion (imported below) pins the numerics at its import.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--numerics", choices=("native", "pinned"), default="native")
if _pre.parse_known_args()[0].numerics == "native":
    os.environ["COMPANION_NATIVE_NUMERICS"] = "1"

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from companion.backbone.environment import numerics  # noqa: E402
from companion.models.numerics import Adam  # noqa: E402
from companion.sae.architectures import make_sae  # noqa: E402
from companion.sae.step import Workspace, loss_and_grads  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import available_peers, peers_of  # noqa: E402
from timing import fmt_ms, load_average, paired_ratio, report, time_round_robin  # noqa: E402

warnings.filterwarnings("ignore")

ARCHS = ("baseline", "gated", "jumprelu", "topk", "batchtopk")
DENSITIES = (0.01, 0.05, 0.2, 0.5)


# ------------------------------------------------------------------------------------------------ the state
def _kth_largest(v: torch.Tensor, n: int) -> float:
    """The n-th largest entry of ``v`` (torch.quantile refuses tensors of more than 2^24 entries)."""
    flat = v.reshape(-1)
    return float(flat.kthvalue(flat.numel() - n + 1).values)


def make_state(arch: str, d: int, m: int, b: int, density: float = 0.01, seed: int = 0, active: int = 20):
    """An SAE of ``arch`` and a batch ``x [b, d]`` on which about ``density`` of its code's entries are non-zero."""
    k = max(1, round(density * m))
    sae = make_sae(arch, d, m, seed=seed, **({"k": k} if arch in ("topk", "batchtopk") else {}))
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randint(0, m, (b, active), generator=g)
    mag = torch.rand(b, active, generator=g) * 2
    code = torch.zeros(b, m).scatter_add_(1, idx, mag)
    with torch.no_grad():
        x = code @ sae.W_dec.T + 0.05 * torch.randn(b, d, generator=g)
        n_on = max(1, round(density * b * m))
        if arch in ("baseline", "gated"):
            enc = sae.W_enc if arch == "baseline" else sae.W_gate
            t = _kth_largest((x - sae.b_dec) @ enc.T, n_on)
            (sae.b_enc if arch == "baseline" else sae.b_gate).fill_(-t)
            if arch == "gated":  # every open gate has a positive magnitude: the code's density is the gate's
                sae.b_mag.fill_(-t + 0.1)
        elif arch == "jumprelu":
            z = x @ sae.W_enc.T
            t = _kth_largest(z, n_on)
            sae.b_enc.fill_(0.1 - t)  # z + b_enc > θ = 0.1  ⇔  z > t
            sae.log_threshold.fill_(torch.log(torch.tensor(0.1)).item())
    return sae, x


def matmul_gflops(b: int, d: int, m: int, reps: int = 5) -> float:
    """Median GFLOP/s of torch.mm for the encoder's shape [B, d] x [d, M] (output buffer reused)."""
    x, w, out = torch.randn(b, d), torch.randn(m, d), torch.empty(b, m)
    torch.mm(x, w.T, out=out)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(x, w.T, out=out)
        ts.append(time.perf_counter() - t0)
    return 2 * b * d * m / statistics.median(ts) / 1e9


def _lam(arch: str, lam: float) -> float:
    return lam if arch in ("baseline", "gated", "jumprelu") else 0.0


# ------------------------------------------------------------------------------------------------ steps
class Ours:
    name = "ours"

    def __init__(self, sae, arch, lam, lr, batch):
        self.sae, self.lam, self.ws = sae, _lam(arch, lam), Workspace()
        self.opt = Adam(sae.parameters(), lr=lr, betas=(0.0, 0.999))  # training's optimiser

    def loss(self, x) -> float:
        return float(loss_and_grads(self.sae, x, self.lam, workspace=self.ws).total)

    def step(self, x):
        fired = torch.zeros(self.sae.n_latents, dtype=torch.float64)
        out = loss_and_grads(self.sae, x, self.lam, workspace=self.ws, fire_counts=fired)
        self.sae.remove_parallel_decoder_grad_()
        self.opt.step()
        self.sae.normalize_decoder_()
        self.sae.observe(fired, x.shape[0], out)


class Reference:
    name = "reference"

    def __init__(self, sae, arch, lam, lr, batch):
        self.sae, self.lam = sae, _lam(arch, lam)
        self.opt = Adam(sae.parameters(), lr=lr, betas=(0.0, 0.999))

    def loss(self, x) -> float:
        with torch.no_grad():
            return float(self.sae.loss(x, self.lam).total)

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        out = self.sae.loss(x, self.lam)
        out.total.backward()
        self.sae.remove_parallel_decoder_grad_()
        self.opt.step()
        self.sae.normalize_decoder_()
        with torch.no_grad():
            fired = (self.sae.train_code(x) > 0).sum(0, dtype=torch.float64)
        self.sae.observe(fired, x.shape[0], out)


# ------------------------------------------------------------------------------------------------ checks
def check_equal(arch, d, m, b, lam, density=0.01):
    """Max relative differences between ours and autograd on the same state (losses, every gradient), and L0."""
    sae, x = make_state(arch, d, m, b, density)
    lam = _lam(arch, lam)
    ref = sae.loss(x, lam)
    ref.total.backward()
    ref_g = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    out = loss_and_grads(sae, x, lam)
    terms = [k for k in ("total", "reconstruction", "sparsity", "auxiliary") if float(getattr(ref, k).detach()) != 0]
    loss_err = max(
        abs(float(getattr(out, k)) - float(getattr(ref, k).detach())) / abs(float(getattr(ref, k).detach()))
        for k in terms
    )
    grad_err = max(
        float((p.grad - ref_g[n]).norm() / ref_g[n].norm().clamp_min(1e-30))
        for n, p in sae.named_parameters()
        if float(ref_g[n].norm()) > 0
    )
    return loss_err, grad_err, float(out.l0)


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--latents", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument(
        "--rounds", type=int, default=8, help="timed rounds (after 1 warm-up step); each times every implementation"
    )
    ap.add_argument(
        "--max-rounds",
        type=int,
        default=24,
        help="rounds go on past --rounds, up to this many, while ours against a peer is a tie (interval holds 1)",
    )
    ap.add_argument(
        "--screen",
        type=int,
        default=1,
        help="rounds that time every implementation; then only ours and the peers that may be the fastest",
    )
    ap.add_argument(
        "--margin",
        type=float,
        default=1.3,
        help="after screening, peers slower than this times the fastest peer's median are not timed any more",
    )
    ap.add_argument("--reference", action="store_true", help="also time autograd on our loss (screening rounds)")
    ap.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for every implementation (0: torch's default)"
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="cpu",
        help="cpu: this process's CPU time (the step's work, steady on a machine others load); wall: elapsed time",
    )
    ap.add_argument(
        "--numerics",
        choices=("native", "pinned"),
        default="native",
        help="native: the CPU's own code paths for every implementation (as peers run elsewhere); "
        "pinned: companion's vendor-neutral pinning for every implementation",
    )
    a = ap.parse_args()
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    if a.threads:
        torch.set_num_threads(a.threads)
    d, m, b = a.d, a.latents, a.batch
    print(
        f"SAE training step: d={d}, M={m}, B={b}, fp32, CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}, "
        f"{a.clock} clock, {a.rounds} rounds ({a.screen} screening)"
    )
    n = numerics()
    print(
        f"numerics: {a.numerics} (MKL branch {n.get('mkl_branch')}, our products by {n.get('dense_product')}, "
        f"torch CPU capability {n.get('cpu_capability')})"
    )
    print(f"load average before: {load_average():.2f} (1 min, {os.cpu_count()} CPUs)")
    print(f"torch.mm [{b},{d}]x[{d},{m}]: {matmul_gflops(b, d, m):.1f} GFLOP/s")
    available = [] if a.no_peers else available_peers()
    table = []
    frozen = False
    for arch in a.archs:
        for density in a.densities:
            loss_err, grad_err, l0 = check_equal(arch, d, m, b, a.lam, density)
            impls = []
            for cls in [Ours, *([Reference] if a.reference else []), *peers_of(arch, available)]:
                sae, x = make_state(arch, d, m, b, density)
                try:
                    impls.append((cls(sae, arch, a.lam, a.lr, b), x))
                except Exception as e:  # noqa: BLE001
                    print(f"  [{arch} {density:.0%}] {cls.name}: could not be set up ({type(e).__name__}: {e})")
            if not frozen:
                # What is loaded by now (torch, the peers, the imports their set-up made) lives to the end: frozen
                # out of the collector's way, the collection before each step walks only what the steps leave
                # (otherwise ~0.15 s a step).
                gc.collect()
                gc.freeze()
                frozen = True
            load = load_average()
            times, full = time_round_robin(impls, a.rounds, a.screen, clock, a.margin, a.max_rounds)
            del impls
            med = {k: statistics.median(v) for k, v in times.items() if v}
            peer_names = [k for k in med if k not in ("ours", "reference")]
            fastest = min(peer_names, key=med.get) if peer_names else None
            # Ours against each peer timed in every round; the binding one is the lowest ratio.
            ratios = {p: paired_ratio(times[p], times["ours"]) for p in peer_names if p in full}
            bind = min(ratios, key=lambda p: ratios[p][0]) if ratios else None
            table.append(
                dict(
                    arch=arch,
                    density=density,
                    l0=l0 / m,
                    load=load,
                    med=med,
                    full=full,
                    bind=bind,
                    ratio=ratios.get(bind) if bind else None,
                    ratios=ratios,
                    rounds=len(times["ours"]),
                    fastest=fastest,
                    loss_err=loss_err,
                    grad_err=grad_err,
                )
            )
            line = ", ".join(f"{k} {fmt_ms(v)}{'' if k in full else '*'} ms" for k, v in med.items())
            if bind:
                q, lo, hi = ratios[bind]
                line += f"; ours vs fastest peer ({bind}) {q:.2f}× [{lo:.2f}, {hi:.2f}]"
            print(
                f"  {arch:<9} density {density:>4.0%} (L0/M {l0 / m:.3f}, load {load:.1f}, "
                f"{len(times['ours'])} rounds): {line}; "
                f"ours vs autograd: loss {loss_err:.1e}, gradients {grad_err:.1e}",
                flush=True,
            )
    report(table, a)


if __name__ == "__main__":
    main()
