"""Notebook 05's tables and generated prose: recovery per variable against its ceiling and floor, and which metric
separates which architectures beyond the reseed noise.

A metric *separates* two architectures at a target only when every seed of one lies beyond every seed of the other
(their ranges over the SAE seeds do not overlap): the gap then exceeds the reseed spread.  Any other ordering can
flip with the seed and is reported as within reseed noise.  No number in the text is typed by hand: every sentence
is written from a :class:`~companion.features.experiment.RecoveryRun`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from companion.features.experiment import RecoveryRun

BASE_METRICS = ("l0", "loss_recovered", "gamma")
"""The reconstruction metrics reported with their reseed spread beside the recovery metrics."""

LABELS = {"l0": "L0", "loss_recovered": "loss recovered", "gamma": "γ"}


def metric_names(run: RecoveryRun) -> list[str]:
    """Every metric of the reseed table: L0, loss recovered, γ, then per variable AUROC and k-sparse accuracy."""
    out = list(BASE_METRICS)
    for v in run.variables:
        out += [f"auroc:{v}"] + [f"acc_k{k}:{v}" for k in run.ks]
    return out


def label(metric: str) -> str:
    """A metric's name for tables and figures: "AUROC · deployment", "k=5 acc · kind:code"."""
    if metric in LABELS:
        return LABELS[metric]
    what, v = metric.split(":", 1)
    return f"AUROC · {v}" if what == "auroc" else f"k={what[5:]} acc · {v}"


def seed_values(run: RecoveryRun) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """target -> metric -> architecture -> {"setting", "seeds", "values", "mean", "spread"} for the SAEs retrained at
    several seeds (the sweep's own SAE at the chosen setting and its retrainings); spread = max − min over seeds."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for target, choice in run.reseed.items():
        per: dict[str, dict[str, dict[str, Any]]] = {}
        for arch, setting in choice.items():
            rows = [r for r in run.rows if r.target == target and r.architecture == arch and r.setting == setting]
            seeds = sorted({r.init_seed for r in rows})
            if len(seeds) < 2:
                continue
            for m in metric_names(run):
                vals = []
                for s in seeds:
                    rs = [r for r in rows if r.init_seed == s]
                    if m in BASE_METRICS:
                        vals.append(float(getattr(rs[0], m)))
                    else:
                        what, v = m.split(":", 1)
                        r = next(r for r in rs if r.variable == v)
                        vals.append(r.auroc if what == "auroc" else r.accuracy[int(what[5:])])
                per.setdefault(m, {})[arch] = {
                    "setting": setting,
                    "seeds": seeds,
                    "values": vals,
                    "mean": float(np.mean(vals)),
                    "spread": float(np.ptp(vals)),
                }
        out[target] = per
    return out


def separates(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """+1 when every seed of ``a`` is above every seed of ``b``, −1 when below, 0 when their ranges overlap."""
    if min(a["values"]) > max(b["values"]):
        return 1
    if max(a["values"]) < min(b["values"]):
        return -1
    return 0


def separation(values: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, str]]:
    """For one target's :func:`seed_values`: metric -> "A vs B" -> "A > B", "A < B" or "" (within reseed noise)."""
    out: dict[str, dict[str, str]] = {}
    for m, per in values.items():
        archs = list(per)
        out[m] = {}
        for a, b in itertools.combinations(archs, 2):
            s = separates(per[a], per[b])
            out[m][f"{a} vs {b}"] = f"{a} > {b}" if s > 0 else f"{a} < {b}" if s < 0 else ""
    return out


def separation_frame(run: RecoveryRun):
    """The table of which metric separates which architectures beyond reseed noise: one row per (target, metric),
    one column per pair of architectures; an empty cell is a gap within the reseed spread."""
    import pandas as pd

    rows = []
    for target, values in seed_values(run).items():
        for m, pairs in separation(values).items():
            rows.append(
                {"target": target, "metric": label(m), **pairs, "separated pairs": sum(bool(c) for c in pairs.values())}
            )
    return pd.DataFrame(rows)


def spread_frame(run: RecoveryRun):
    """Per target, metric and architecture: the value at each seed, the mean and the spread (max − min)."""
    import pandas as pd

    rows = []
    for target, values in seed_values(run).items():
        for m, per in values.items():
            for arch, d in per.items():
                rows.append(
                    {
                        "target": target,
                        "metric": label(m),
                        "architecture": arch,
                        "setting": d["setting"],
                        **{f"seed #{i + 1}": v for i, v in enumerate(d["values"])},
                        "mean": d["mean"],
                        "spread": d["spread"],
                    }
                )
    return pd.DataFrame(rows)


def _span(v, digits: int = 2) -> str:
    lo, hi = f"{min(v):.{digits}f}", f"{max(v):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def recovery_sentences(run: RecoveryRun) -> list[str]:
    """Per target and variable: the sweep's best-latent AUROC and top-k accuracy against the ceiling and floor."""
    kmax = max(run.ks)
    out = []
    for ref in run.references:
        rows = [r for r in run.rows if r.target == ref.target and r.variable == ref.variable and not r.reseed]
        au = [r.auroc for r in rows]
        acc = [r.accuracy[kmax] for r in rows]
        above = sum(a > max(ref.floor_auroc) for a in au)
        site = ref.target.split("@", 1)[1]
        out.append(
            f"`{site}` · **{ref.variable}**: best single latent AUROC {_span(au)} over the {len(rows)} SAEs "
            f"({above} above the random-direction floor {_span(ref.floor_auroc)}; dense-probe ceiling "
            f"{ref.dense_auroc:.2f}); {kmax}-sparse probe accuracy {_span(acc)} (floor up to "
            f"{max(ref.floor_accuracy[kmax]):.2f}, ceiling {ref.dense_accuracy:.2f})."
        )
    return out


def separation_sentences(run: RecoveryRun) -> list[str]:
    """Per target: which metrics separate architectures beyond the reseed spread, and which separate none."""
    out = []
    for target, values in seed_values(run).items():
        sep = separation(values)
        n_seeds = max(len(d["seeds"]) for per in values.values() for d in per.values())
        archs = sorted({a for per in values.values() for a in per})
        n_pairs = len(archs) * (len(archs) - 1) // 2
        strong = {m: [c for c in pairs.values() if c] for m, pairs in sep.items()}
        some = [f"{label(m)} ({len(c)} of {n_pairs}: {', '.join(c)})" for m, c in strong.items() if c]
        none = [label(m) for m, c in strong.items() if not c]
        site = target.split("@", 1)[1]
        text = f"`{site}`, each architecture's chosen SAE at {n_seeds} seeds: "
        text += (
            "separated beyond the reseed spread by " + "; ".join(some) + "."
            if some
            else "no metric separates any two architectures beyond the reseed spread."
        )
        if none:
            text += f" Within reseed noise for every pair (the ordering can flip with the seed): {', '.join(none)}."
        chance = 2 / math.comb(2 * n_seeds, n_seeds)
        text += (
            f" With {n_seeds} seeds each, two architectures that do not differ still have non-overlapping ranges "
            f"with probability {chance:.2f} (any order of their {2 * n_seeds} values equally likely), so a "
            f"lone separated pair on one metric is weak evidence."
        )
        out.append(text)
    return out


def findings(run: RecoveryRun) -> str:
    """The notebook's findings as Markdown, written from the run's numbers."""
    lines = ["**Recovery against ceiling and floor**", ""] + [f"- {s}" for s in recovery_sentences(run)]
    lines += ["", "**Beyond reseed noise**", ""] + [f"- {s}" for s in separation_sentences(run)]
    return "\n".join(lines)
