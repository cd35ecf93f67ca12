"""Tables and figure data of notebooks 01 and 02, made from the evaluation rows (:class:`~companion.sae.evaluation.SAEEval`).

The paper's (Rajamanoharan et al. 2024, arXiv:2404.16014): the Pareto frontier of loss recovered against L0 (Figs.
1/5), the matched-L0 table of gated against baseline SAEs and its published numbers.  Beside them, for the successors
(JumpReLU, TopK, BatchTopK) and SAEs trained elsewhere: every series' frontier at common L0s, the measured step cost
behind the equal-compute widths, and a summary written from the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from companion.sae.architectures import ARCHITECTURES

if TYPE_CHECKING:
    from companion.sae.evaluation import SAEEval

PAPER_ARCHITECTURES = ("baseline", "gated")
"""The two architectures of the paper's figures and tables."""
NAMES = {"baseline": "baseline", "gated": "gated", "jumprelu": "JumpReLU", "topk": "TopK", "batchtopk": "BatchTopK"}
"""How the text names each architecture."""


def pareto_frontier(l0: Sequence[float], score: Sequence[float]) -> list[int]:
    """Indices of the points not dominated by another (lower-or-equal L0 and higher-or-equal score), by L0.

    "Better" is lower L0 and higher loss recovered, as in the paper's Pareto plots.
    """
    pts = sorted(range(len(l0)), key=lambda i: (l0[i], -score[i]))
    out, best = [], -math.inf
    for i in pts:
        if score[i] > best:
            out.append(i)
            best = score[i]
    return out


def interpolate_at_l0(l0: Sequence[float], score: Sequence[float], at: float) -> float:
    """The Pareto frontier's score at ``at`` by linear interpolation in log L0; NaN outside its range."""
    idx = pareto_frontier(l0, score)
    xs = np.log([l0[i] for i in idx])
    ys = np.array([score[i] for i in idx])
    if len(xs) == 0 or at <= 0 or not (xs[0] <= math.log(at) <= xs[-1]):
        return float("nan")
    return float(np.interp(math.log(at), xs, ys))


def matched_l0_table(rows: Sequence[SAEEval]):
    """The paper's table layout: per target, each gated SAE next to the baseline SAE of closest L0 (in log L0).

    Columns: target, "gated: L0 → loss recovered (γ)" and the same for the baseline, plus the baseline
    frontier interpolated at the gated L0 (NaN when the gated L0 is outside the baseline sweep's range).
    """
    import pandas as pd

    out = []
    for target in dict.fromkeys(r.target for r in rows):
        g = [r for r in rows if r.target == target and r.architecture == "gated" and not r.source]
        b = [r for r in rows if r.target == target and r.architecture == "baseline" and not r.source]
        if not g or not b:
            continue
        for rg in sorted(g, key=lambda r: r.l0):
            if rg.l0 <= 0:
                continue
            rb = min(b, key=lambda r: abs(math.log(max(r.l0, 1e-9)) - math.log(rg.l0)))
            interp = interpolate_at_l0([r.l0 for r in b], [r.loss_recovered for r in b], rg.l0)
            out.append(
                {
                    "target": target,
                    "gated λ": rg.lam,
                    "gated L0": rg.l0,
                    "gated loss rec.": rg.loss_recovered,
                    "gated γ": rg.gamma,
                    "baseline λ": rb.lam,
                    "baseline L0": rb.l0,
                    "baseline loss rec.": rb.loss_recovered,
                    "baseline γ": rb.gamma,
                    "baseline frontier at gated L0": interp,
                }
            )
    return pd.DataFrame(out)


def paper_reference_table():
    """The paper's own matched-L0 numbers (Rajamanoharan et al. 2024 tables), for reference only."""
    import pandas as pd

    nan = float("nan")
    rows = [
        ("Gemma-7B L20 attention", 18.7, 0.8655, 1.016, 18.7, 0.7838, 0.759),
        ("Gemma-7B L20 MLP", 24.4, 0.8781, nan, 24.5, 0.8267, 0.869),
        ("Pythia-2.8B L16 residual", 18.9, 0.9655, nan, 17.1, 0.9016, 0.932),
        ("Pythia-2.8B L20 MLP", 22.1, 0.9253, 1.000, 20.6, 0.9128, 0.971),
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "model, site",
            "gated L0",
            "gated loss rec.",
            "gated γ",
            "baseline L0",
            "baseline loss rec.",
            "baseline γ",
        ],
    )


def pareto_plot_data(
    rows: Sequence[SAEEval], x: str = "l0", y: str = "loss_recovered", architectures: Sequence[str] | None = None
) -> dict[str, Any]:
    """{target: {series: {"x": [...], "y": [...], "lam" or "k": [...], "frontier": [indices]}}} for the plots.

    A series is an architecture (its λ or k per point) or an SAE trained elsewhere (no setting); ``architectures``
    keeps only those architectures' SAEs trained here (``PAPER_ARCHITECTURES``: the paper's figures).
    """
    data: dict[str, Any] = {}
    for r in rows:
        if architectures is not None and (r.source or r.architecture not in architectures):
            continue
        by_k = not r.source and ARCHITECTURES[r.architecture].sparsity_setting == "k"
        setting = "k" if by_k else "lam"
        d = data.setdefault(r.target, {}).setdefault(
            r.series, {"x": [], "y": [], **({} if r.source else {setting: []})}
        )
        d["x"].append(getattr(r, x))
        d["y"].append(getattr(r, y))
        if not r.source:
            d[setting].append(r.k if by_k else r.lam)
    for target in data.values():
        for d in target.values():
            # Loss recovered: higher is better; Δ LM loss / FVU: lower is better (negate for the frontier).
            sign = 1.0 if y == "loss_recovered" else -1.0
            d["frontier"] = pareto_frontier(d["x"], [sign * v for v in d["y"]])
    return data


def frontier_table(rows: Sequence[SAEEval], y: str = "loss_recovered"):
    """Per target, at the L0 of each gated SAE: every series' Pareto frontier interpolated there (in log L0; blank
    where that L0 is outside the series' range), so the architectures meet at equal sparsity."""
    import pandas as pd

    out = []
    for target in dict.fromkeys(r.target for r in rows):
        sub = [r for r in rows if r.target == target]
        series = list(dict.fromkeys(r.series for r in sub))
        at = sorted(r.l0 for r in sub if r.architecture == "gated" and not r.source and r.l0 > 0)
        for l0 in at:
            row: dict[str, Any] = {"target": target, "L0": l0}
            for s in series:
                pts = [r for r in sub if r.series == s]
                sign = 1.0 if y == "loss_recovered" else -1.0
                v = interpolate_at_l0([r.l0 for r in pts], [sign * getattr(r, y) for r in pts], l0)
                row[NAMES.get(s, s)] = sign * v
            out.append(row)
    return pd.DataFrame(out)


def step_cost_table(rows: Sequence[SAEEval]):
    """Equal compute made explicit: per target and architecture, the width and the measured milliseconds per training
    step (mean over its sweep), and both relative to the gated SAE's."""
    import pandas as pd

    out = []
    for target in dict.fromkeys(r.target for r in rows):
        sub = [r for r in rows if r.target == target and not r.source]
        gated = [r.step_ms for r in sub if r.architecture == "gated"]
        g_ms = float(np.mean(gated)) if gated else float("nan")
        g_width = next((r.n_latents for r in sub if r.architecture == "gated"), float("nan"))
        for arch in dict.fromkeys(r.architecture for r in sub):
            ms = float(np.mean([r.step_ms for r in sub if r.architecture == arch]))
            width = next(r.n_latents for r in sub if r.architecture == arch)
            out.append(
                {
                    "target": target,
                    "architecture": NAMES.get(arch, arch),
                    "width": width,
                    "width / gated": width / g_width,
                    "ms per step": ms,
                    "step / gated step": ms / g_ms,
                }
            )
    return pd.DataFrame(out)


def successors_summary(rows: Sequence[SAEEval]) -> str:
    """A few lines of text from the numbers: per target, each series' loss recovered at the median gated SAE's L0
    (its frontier, interpolated) and its γ range."""
    lines = []
    for target in dict.fromkeys(r.target for r in rows):
        sub = [r for r in rows if r.target == target]
        gated = sorted(r.l0 for r in sub if r.architecture == "gated" and not r.source and r.l0 > 0)
        parts, gammas = [], []
        for s in dict.fromkeys(r.series for r in sub):
            pts = [r for r in sub if r.series == s]
            name = NAMES.get(s, s)
            if gated:
                l0 = gated[len(gated) // 2]
                v = interpolate_at_l0([r.l0 for r in pts], [r.loss_recovered for r in pts], l0)
                parts.append(f"{name} {v:.3f}" if math.isfinite(v) else f"{name} (outside its L0 range)")
            g = [r.gamma for r in pts]
            gammas.append(f"{name} {min(g):.3f}–{max(g):.3f}" if len(g) > 1 else f"{name} {g[0]:.3f}")
        head = (
            f"**{target}**: loss recovered at L0 = {gated[len(gated) // 2]:.1f} (the median gated SAE): "
            if gated
            else f"**{target}**: "
        )
        lines.append(head + ", ".join(parts) + "; γ " + ", ".join(gammas) + ".")
    return "\n\n".join(lines)
