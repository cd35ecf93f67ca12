"""Timing and statistics of the SAE step benchmark (benchmarks/bench_sae.py, whose docstring says how and why).

* :func:`timed_step` — one step of an implementation on this process's chosen clock, the garbage collector run
  before it and off during it;
* :func:`time_round_robin` — rounds that time every implementation once in a rotated order, screened after the first
  rounds to ours and the peers that may be the fastest, and continued while a comparison is a tie;
* :func:`paired_ratio` / :func:`undecided` — ours against a peer: the median over rounds of the peer's time over ours
  in the same round with its 95% percentile-bootstrap interval, and the peers whose interval still holds 1;
* :func:`report` — the table of medians and speed-ups, and the verdict line (is any peer faster anywhere).

An implementation is any object with a ``name`` and a ``step(x)``; a table row is the dict bench_sae's ``main`` builds.
"""

from __future__ import annotations

import gc
import os
import random
import statistics

import torch


def fmt_ms(seconds: float) -> str:
    """Milliseconds as printed: whole above 100 ms, three significant digits below."""
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def load_average() -> float:
    """The 1-minute load average (nan where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def timed_step(impl, x, clock) -> float:
    """One step of ``impl`` on ``x``: its time on ``clock``, the garbage collector run before it and off during it."""
    gc.collect()
    gc.disable()
    try:
        t0 = clock()
        impl.step(x)
        return clock() - t0
    finally:
        gc.enable()


def paired_ratio(peer: list[float], ours: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median over rounds of peer[r] / ours[r] (> 1: ours is faster) and its 95% percentile-bootstrap interval."""
    r = [p / o for p, o in zip(peer, ours, strict=True)]
    med = statistics.median(r)
    if len(r) < 3:
        return med, float("nan"), float("nan")
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(r, k=len(r))) for _ in range(n_boot))
    return med, boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


def undecided(times: dict[str, list[float]], peers_: list[str]) -> list[str]:
    """The peers whose paired interval against ours holds 1 (neither measurably faster nor slower)."""
    out = []
    for p in peers_:
        _, lo, hi = paired_ratio(times[p], times["ours"])
        if not (lo >= 1 or hi < 1):
            out.append(p)
    return out


def time_round_robin(impls, rounds: int, screen: int, clock, margin: float = 1.3, max_rounds: int = 0):
    """Times per implementation name over ``rounds`` rotated rounds (after one untimed warm-up step each), and the
    names timed in every round; after ``screen`` rounds only ours and the peers within ``margin`` of the fastest peer's
    median are timed.  While a peer's paired interval against ours holds 1, rounds go on, up to ``max_rounds``."""
    names = [impl.name for impl, _ in impls]
    for impl, x in impls:  # warm-up: first-call costs, allocator and caches
        timed_step(impl, x, clock)
    times: dict[str, list[float]] = {n: [] for n in names}
    active = list(range(len(impls)))
    r = 0
    while r < rounds or (
        r < max_rounds and undecided(times, [names[i] for i in active if names[i] not in ("ours", "reference")])
    ):
        if r == screen and r > 0:
            med = {n: statistics.median(times[n]) for n in names}
            peers_ = [n for n in names if n not in ("ours", "reference")]
            best = min((med[n] for n in peers_), default=None)
            active = [
                i
                for i in active
                if names[i] == "ours" or (names[i] in peers_ and best is not None and med[names[i]] <= margin * best)
            ]
        k = r % len(active)
        for i in active[k:] + active[:k]:
            impl, x = impls[i]
            times[impl.name].append(timed_step(impl, x, clock))
        r += 1
    full = {names[i] for i in active}
    return times, full


def report(table: list[dict], a) -> None:
    """Print the benchmark's table, a row per architecture and density (``a``: the parsed arguments, for the clock and
    the screening rounds), and the verdict line: whether any peer is faster anywhere."""
    names = list(dict.fromkeys(k for row in table for k in row["med"]))
    print(
        f"\nms per training step (median of the rounds, {a.clock} clock, {torch.get_num_threads()} thread(s); "
        f"* = the {a.screen} screening round(s) only); speed-up: the fastest peer's time over ours, median of the "
        "rounds' ratios [95% bootstrap interval] (> 1: ours is faster)"
    )
    print(
        f"{'architecture':<12} {'density':>7} {'load':>5} {'rounds':>6} "
        + " ".join(f"{n:>19}" for n in names)
        + f" {'speed-up':>20}  fastest peer"
    )
    slower, ties, worst = [], [], None
    for row in table:
        cells = " ".join(
            f"{fmt_ms(row['med'][n]):>18}{' ' if n in row['full'] else '*'}" if n in row["med"] else f"{'-':>19}"
            for n in names
        )
        for peer, (q, lo, hi) in row.get("ratios", {}).items():
            where = f"{row['arch']} at {row['density']:.0%} ({peer} {q:.2f}× [{lo:.2f}, {hi:.2f}])"
            if hi < 1:
                slower.append(where)
            elif not lo >= 1:
                ties.append(where)
        if row["ratio"] is not None:
            q, lo, hi = row["ratio"]
            speed = f"{q:.2f} [{lo:.2f}, {hi:.2f}]"
            if worst is None or q < worst[0]:
                worst = (q, lo, hi, row)
        else:
            speed = "-"
        print(
            f"{row['arch']:<12} {row['density']:>7.0%} {row['load']:>5.1f} {row.get('rounds', 0):>6} {cells} "
            f"{speed:>20}  {row['bind'] or '-'}"
        )
    print(f"load average after: {load_average():.2f} (1 min)")
    if worst is None:
        print("\nno peer was timed: nothing to compare")
        return
    q, lo, hi, row = worst
    at = (
        f"{row['arch']} at {row['density']:.0%} density, {q:.2f}× [{lo:.2f}, {hi:.2f}] the fastest peer ({row['bind']})"
    )
    if slower:
        print(f"\nverdict: a peer is faster at {'; '.join(slower)}")
    elif ties:
        print(
            f"\nverdict: no peer is measurably faster anywhere, but ours is not measurably faster at {'; '.join(ties)}"
        )
    else:
        print(f"\nverdict: no peer is faster anywhere; ours is faster at every point (slowest relative point: {at})")
