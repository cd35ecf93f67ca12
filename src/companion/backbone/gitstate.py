"""The git state a figure records: the checkout's commit and whether its inputs differ from that commit.

*Dirty* means the code or notebooks differ from the commit: a tracked file modified outside the figure folders, or
an untracked (not ignored) file under ``src/`` or ``notebooks/`` (a new module).  The figure folders and ``build/``
are outputs, never inputs: figures written earlier in a run, or by an earlier run, do not make later figures
"dirty".  A fork (``companion fork``: an untracked notebook carrying ``metadata.companion.lineage``) is lineage, not
dirt: it changes no other notebook, and its own figures record its lineage and the hash of its code instead
(:func:`companion.backbone.runtime.notebook_lineage`), so forking does not mark every later figure dirty.

The runner reads the state once, before it starts any kernel, and hands it to the kernels in ``$COMPANION_GIT``
(every figure of one run records the same state, and ``save_figure`` never waits for git); interactive sessions
read it at each ``save_figure`` (milliseconds once the index is fresh, which ``make setup`` ensures).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

GIT_ENV = "COMPANION_GIT"
"""JSON ``{"commit": ..., "dirty": ...}`` set by the runner for the kernels it starts."""
INPUT_DIRS = ("src", "notebooks")
"""Where an untracked file is an input (and so makes the tree dirty)."""
TIMEOUT_S = 20
"""A query that takes longer records ``null`` rather than stall a run."""


def output_dirs(root: Path) -> list[str]:
    """Folders (relative to ``root``) whose changes never make the tree dirty: ``build`` and every figure folder."""
    from companion.backbone.profiles import ProfileError, available_profiles, load_profile

    dirs = {"build"}
    for name in available_profiles():
        try:
            dirs.add(load_profile(name).figures_dir.strip("/"))
        except ProfileError:  # a broken profile is reported where it is used, not by every figure's git query
            continue
    extra = os.environ.get("COMPANION_FIGURES_DIR")
    if extra:
        try:
            dirs.add(Path(extra).resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            pass
    return sorted(d for d in dirs if d and d != ".")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=TIMEOUT_S, check=True
    ).stdout


def read_git_state(root: str | os.PathLike) -> dict[str, Any]:
    """Ask git: ``{"commit": sha or None, "dirty": bool or None}`` (None where it is not a checkout or git fails)."""
    root = Path(root)
    try:
        commit = _git(root, "rev-parse", "--verify", "HEAD").strip() or None
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    excludes = [f":(exclude){d}" for d in output_dirs(root)]
    try:
        status = _git(root, "status", "--porcelain", "-z", "--untracked-files=no", "--", ".", *excludes)
        tracked = [e for e in status.split("\0") if e.strip() and not _only_outputs(root, e)]
        inputs = [d for d in INPUT_DIRS if (root / d).is_dir()]
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", *inputs) if inputs else ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": commit, "dirty": None}
    untracked_inputs = [f for f in untracked.splitlines() if f.strip() and not is_fork(root / f)]
    return {"commit": commit, "dirty": bool(tracked or untracked_inputs)}


def _only_outputs(root: Path, entry: str) -> bool:
    """Whether a ``git status --porcelain -z`` entry is a notebook changed only where the git filter does not look
    (outputs, counts, the kernel metadata JupyterLab writes): its cleaned text (:mod:`companion.backbone.nbclean`) is
    the staged one.  Git itself lists such a notebook as modified, having compared file sizes, not contents."""
    if entry[:2] != " M" or not entry.endswith(".ipynb"):
        return False
    path = entry[3:]
    try:
        from companion.backbone.nbclean import clean_text

        return clean_text((root / path).read_text()) == _git(root, "show", f":{path}")
    except (OSError, ValueError, subprocess.SubprocessError, ImportError):
        return False


def is_fork(path: Path) -> bool:
    """Whether ``path`` is a notebook made by ``companion fork`` (it carries ``metadata.companion.lineage``)."""
    if path.suffix != ".ipynb":
        return False
    try:
        meta = json.loads(path.read_text()).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False
    return bool((meta.get("companion") or {}).get("lineage"))


def git_state(root: str | os.PathLike) -> dict[str, Any]:
    """The state of this run: the runner's (``$COMPANION_GIT``) when set, else read now."""
    env = os.environ.get(GIT_ENV)
    if env:
        try:
            state = json.loads(env)
            return {"commit": state.get("commit"), "dirty": state.get("dirty")}
        except (ValueError, AttributeError):
            pass
    return read_git_state(root)
