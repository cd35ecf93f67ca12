"""Figure regression: compare the numbers in fresh sidecars with the committed ones.

The longest-standing request to notebook-testing tools is comparing figures.  Pixels are brittle; the
numbers behind a figure are not.  Each sidecar carries ``data`` (the numbers the notebook says the figure
shows) and a ``tolerance`` (``rtol``/``atol``, optionally per key under ``keys``).  ``companion check-figures``
flattens both versions to ``path -> number`` and reports every number that moved beyond
``atol + rtol * |committed|``, every number that appeared or disappeared, and every figure that is new or gone.

Where bitwise equality cannot hold (another CPU architecture, a GPU), a fixed tolerance is either too tight or
meaningless.  Numbers reported across independently seeded organisms are stored as a *seed summary*
(:func:`seed_summary`: ``{"per_seed": [...], "mean", "std", "n"}``), and a number of such a summary that moved
beyond its tolerance is judged against the committed spread across seeds instead (:func:`within_seed_spread`):
it is reported as "within seed spread", apart from "moved", and does not fail the check.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_SUMMARY_KEYS = frozenset({"per_seed", "mean", "std", "n"})


def seed_summary(values) -> dict[str, Any]:
    """A number measured on several independently seeded organisms: every value, their mean, the sample standard
    deviation (0 for one seed) and the count.  ``check-figures`` judges movements of these against the spread."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("a seed summary needs at least one value")
    n = len(vals)
    mean = sum(vals) / n
    std = (sum((v - mean) ** 2 for v in vals) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return {"per_seed": vals, "mean": mean, "std": std, "n": n}


def _seed_summaries(obj: Any, prefix: str = "") -> dict[str, Mapping[str, Any]]:
    """Path -> seed summary for every seed summary inside ``obj``."""
    out: dict[str, Mapping[str, Any]] = {}
    if isinstance(obj, Mapping):
        if set(obj) == SEED_SUMMARY_KEYS:
            out[prefix] = obj
            return out
        for k, v in obj.items():
            out.update(_seed_summaries(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_seed_summaries(v, f"{prefix}/{i}" if prefix else str(i)))
    return out


def within_seed_spread(fresh: float, summary: Mapping[str, Any], leaf: str) -> bool:
    """Whether ``fresh`` (the value at ``leaf`` of a seed summary) is what reseeding the organisms could give.

    A per-seed value: inside the committed per-seed range widened by one standard deviation.  The mean: within two
    standard errors of a difference of two means of ``n`` seeds, 2·std·sqrt(2/n).  The spread itself: at most three
    times the committed one.  The number of seeds must not change.  With one seed there is no spread to judge by.
    """
    n, std, vals = int(summary["n"]), float(summary["std"]), [float(v) for v in summary["per_seed"]]
    if n < 2 or leaf == "n":
        return False
    if leaf == "mean":
        return abs(fresh - float(summary["mean"])) <= 2 * std * (2 / n) ** 0.5
    if leaf == "std":
        return 0 <= fresh <= 3 * std
    return min(vals) - std <= fresh <= max(vals) + std


@dataclass(frozen=True)
class Difference:
    """One number that differs between the committed and the fresh sidecar."""

    figure: str
    """Figure stem."""
    key: str
    """Path of the number inside ``data`` (e.g. ``sites/0/gamma``)."""
    committed: Any
    """Committed value (None when the number is new)."""
    fresh: Any
    """Fresh value (None when the number disappeared)."""
    allowed: float
    """The tolerance that applied: atol + rtol * |committed|."""
    within_seed_spread: bool = False
    """True when the number belongs to a seed summary and moved no further than reseeding explains."""

    @property
    def delta(self) -> float | None:
        if isinstance(self.committed, (int, float)) and isinstance(self.fresh, (int, float)):
            return abs(self.fresh - self.committed)
        return None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a/b/0": 1, "a/b/1": 2}`` (leaves only)."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}/{i}" if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


def _tol_for(key: str, tol: Mapping[str, Any]) -> tuple[float, float]:
    rtol, atol = float(tol.get("rtol", 1e-4)), float(tol.get("atol", 1e-6))
    for pat, t in (tol.get("keys") or {}).items():
        if fnmatch.fnmatch(key, pat):
            rtol, atol = float(t.get("rtol", rtol)), float(t.get("atol", atol))
    return rtol, atol


def compare_sidecars(committed: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[Difference]:
    """Numbers in ``data`` that moved beyond tolerance (the committed sidecar's tolerance applies)."""
    name = fresh.get("figure") or committed.get("figure") or "?"
    tol = committed.get("tolerance") or {}
    a, b = flatten(committed.get("data", {})), flatten(fresh.get("data", {}))
    summaries = _seed_summaries(committed.get("data", {}))
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        rtol, atol = _tol_for(key, tol)
        if (
            isinstance(va, (int, float))
            and isinstance(vb, (int, float))
            and not isinstance(va, bool)
            and not isinstance(vb, bool)
        ):
            allowed = atol + rtol * abs(va)
            if abs(vb - va) > allowed:
                spread = _spread_for(key, vb, summaries)
                diffs.append(Difference(name, key, va, vb, allowed, spread))
        elif va != vb:
            diffs.append(Difference(name, key, va, vb, 0.0))
    return diffs


def _spread_for(key: str, fresh: float, summaries: Mapping[str, Mapping[str, Any]]) -> bool:
    for path, summary in summaries.items():
        if key.startswith(path + "/"):
            leaf = key[len(path) + 1 :].split("/")[0]
            return within_seed_spread(fresh, summary, leaf)
    return False


def committed_sidecars(root: Path, figures_dir: str, rev: str = "HEAD") -> dict[str, dict]:
    """The sidecars as committed at ``rev`` (read through git, so the working tree may hold fresh ones).

    A ``rev`` git does not know is an error (``ValueError``); a folder that does not exist at ``rev`` holds none.
    """
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root, capture_output=True, text=True
    )
    if known.returncode:
        raise ValueError(f"--rev {rev!r} is not a commit in {root}")
    try:
        names = subprocess.run(
            ["git", "ls-tree", "--name-only", f"{rev}:{figures_dir}"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except subprocess.CalledProcessError:
        return {}
    out = {}
    for n in names:
        if n.endswith(".json"):
            txt = subprocess.run(
                ["git", "show", f"{rev}:{figures_dir}/{n}"], cwd=root, capture_output=True, text=True, check=True
            ).stdout
            out[n[:-5]] = json.loads(txt)
    return out


def fresh_sidecars(directory: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def format_table(diffs: list[Difference], missing: list[str], new: list[str], checked: int) -> str:
    lines = []
    if diffs:
        rows = [("figure", "number", "committed", "fresh", "|Δ|", "allowed", "verdict")]
        for d in diffs:
            rows.append(
                (
                    d.figure,
                    d.key,
                    _fmt(d.committed),
                    _fmt(d.fresh),
                    _fmt(d.delta) if d.delta is not None else "-",
                    _fmt(d.allowed),
                    "within seed spread" if d.within_seed_spread else "moved",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for j, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
    for m in missing:
        lines.append(f"missing: {m} is committed but was not regenerated")
    for n in new:
        lines.append(f"new: {n} has no committed sidecar to compare with")
    moved = len({d.figure for d in diffs if not d.within_seed_spread})
    spread = len(
        {d.figure for d in diffs if d.within_seed_spread} - {d.figure for d in diffs if not d.within_seed_spread}
    )
    lines.append(
        f"{checked} figures compared, {moved} moved beyond tolerance, {spread} within seed spread only, "
        f"{len(missing)} missing, {len(new)} new"
    )
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "∅" if v is None else str(v)


def check_figures(root: Path, figures_dir: str, fresh_dir: Path | None = None, rev: str = "HEAD"):
    """Compare ``fresh_dir`` (default: the profile's figures folder) with the sidecars committed at ``rev``."""
    committed = committed_sidecars(root, figures_dir, rev)
    fresh = fresh_sidecars(fresh_dir or root / figures_dir)
    diffs: list[Difference] = []
    for name in sorted(set(committed) & set(fresh)):
        diffs.extend(compare_sidecars(committed[name], fresh[name]))
    missing = sorted(set(committed) - set(fresh))
    new = sorted(set(fresh) - set(committed))
    return diffs, missing, new, len(set(committed) & set(fresh))
