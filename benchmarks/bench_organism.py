"""How fast an organism trains, against what this CPU core can do: tokens/s and the fraction of matmul throughput.

    python benchmarks/bench_organism.py [--profile organism] [--steps 20]

One training step of each distinct organism size of the profile (single-threaded, as ``prepare_organisms`` trains),
timed over ``--steps`` steps after a warm-up: ms/step (wall and CPU time; the CPU time is the steadier figure on
a shared machine), tokens/s, the model FLOPs it does (6 x matmul parameters x tokens, plus attention) per second,
and that as a fraction of the throughput of the dense product training uses (``companion.models.numerics.conv1d``)
on this core at the same shapes. A fraction near 1 would mean per-step overheads are negligible; the rest of the
step is attention, GELU, log-softmax and the optimiser. Importing companion pins the numeric paths the organisms
are trained under (``companion.PINNED_NUMERICS``); ``COMPANION_NATIVE_NUMERICS=1`` measures the CPU's own instead.
The script prints the numerics in force. Shared machines inflate the times: compare runs made under the same load.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="organism")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()

    import torch

    import companion  # noqa: F401  (pins the numeric paths before torch computes anything)
    from companion.backbone.environment import numerics
    from companion.models.numerics import AdamW, conv1d
    from companion.organism.build import organism_names, organism_spec
    from companion.organism.training import gpt2_forward, make_model

    torch.set_num_threads(1)
    n = numerics()
    print(
        f"torch {torch.__version__}, CPU capability {n['cpu_capability']}, MKL branch {n['mkl_branch']}, "
        f"dense products {n['dense_product']} (pinned: {n['pinned'] or 'no'})"
    )
    sizes = {}
    for n in organism_names(a.profile):
        sp = organism_spec(n, a.profile)
        sizes.setdefault(
            (
                sp.model.d_model,
                sp.model.n_head,
                sp.model.n_layer,
                sp.train.batch_size,
                sp.train.seq_len,
                sp.tokenizer.vocab_size,
                sp.train.steps,
            ),
            n,
        )
    for (d, h, L, B, T, V, steps), name in sorted(sizes.items()):
        torch.manual_seed(0)
        model = make_model(organism_spec(name, a.profile).model, V, 0)
        opt = AdamW(model.parameters(), lr=1e-3)
        x = torch.randint(0, V, (B, T + 1))

        def step() -> None:
            logits = gpt2_forward(model, x[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        for _ in range(3):
            step()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            step()
        dt = (time.perf_counter() - t0) / a.steps
        cpu = (time.process_time() - c0) / a.steps
        flops = 6 * (L * 12 * d * d + d * V) * B * T + 3 * L * 4 * B * T * T * d / 2  # causal attention ~ half
        u, w = torch.randn(B * T, d), torch.randn(d, 4 * d)
        for _ in range(3):
            conv1d(u, w)
        t0 = time.perf_counter()
        k = 50
        for _ in range(k):
            conv1d(u, w)
        mm = 2 * B * T * d * 4 * d * k / (time.perf_counter() - t0)
        print(
            f"{name} (d_model {d}, {h} heads, {L} blocks, batch {B} x {T}, vocab {V}): {dt * 1000:.0f} ms/step "
            f"({cpu * 1000:.0f} ms CPU), {B * T / dt:,.0f} tokens/s, {flops / dt / 1e9:.1f} GFLOP/s = "
            f"{flops / dt / mm:.0%} of the dense product's ({mm / 1e9:.1f} GFLOP/s); {steps} steps ~ {steps * dt:.0f} s"
        )


if __name__ == "__main__":
    main()
