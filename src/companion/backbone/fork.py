"""Fork a numbered notebook as a new experiment, recording its lineage.

``companion fork 01 my-idea`` copies ``notebooks/01_*.ipynb`` to the next free number
(``notebooks/06_my-idea.ipynb``), keeps its parameters cell, and writes into the new notebook's metadata the
parent notebook, the parent's git commit (and whether the tree was dirty) and the parent's resolved
parameters under ``--profile`` (default: the default profile).  The fork saves its figures under its own number, so
it never overwrites the parent's, and ``make figures`` runs it like any other notebook.  A fork is lineage, not dirt
(:mod:`companion.backbone.gitstate`): its figures record in their sidecar's ``lineage`` the parent, the hash of the
fork's code, the profile they were made on and the parent's parameters under that same profile
(:func:`companion.backbone.runtime.notebook_lineage`).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from companion.backbone.atomic import atomic_write_text
from companion.backbone.gitstate import read_git_state
from companion.backbone.plan import (
    NOTEBOOK_RE,
    RunnerError,
    discover,
    load_params_class,
    params_class_path,
    read_notebook,
)
from companion.backbone.profiles import load_profile, project_root
from companion.backbone.runtime import resolve_params


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_\-]+", "-", name.strip()).strip("-_").lower()
    if not slug:
        raise RunnerError(f"fork name {name!r} has no letters or digits")
    return slug


def fork_notebook(
    parent: str, name: str, *, root: Path | None = None, notebooks_dir: Path | None = None, profile: str | None = None
) -> Path:
    """Create ``NN_<name>.ipynb`` from the notebook selected by ``parent`` (a number or stem); returns its path."""
    root = (root or project_root()).resolve()
    nb_dir = notebooks_dir or root / "notebooks"
    matches = discover(nb_dir, parent)
    if len(matches) != 1:
        raise RunnerError(f"fork: {parent!r} must select exactly one notebook, got {[m.name for m in matches]}")
    parent_path = matches[0]
    nb = read_notebook(parent_path)
    cls_path = params_class_path(nb, parent_path)
    params = resolve_params(load_params_class(cls_path), load_profile(profile))
    numbers = [int(p.name[:2]) for p in nb_dir.glob("*.ipynb") if NOTEBOOK_RE.match(p.name)]
    nxt = max(numbers, default=-1) + 1
    if nxt > 99:
        raise RunnerError("fork: notebook numbers are exhausted (99 is the last)")
    slug = _slug(name)
    clash = [p.name for p in nb_dir.glob(f"[0-9][0-9]_{slug}.ipynb")]
    if clash:
        raise RunnerError(f"fork: a notebook named {slug!r} already exists ({clash[0]}); choose another name")
    dest = nb_dir / f"{nxt:02d}_{slug}.ipynb"
    git = read_git_state(root)
    new = copy.deepcopy(nb)
    meta = new.setdefault("metadata", {}).setdefault("companion", {})
    meta["lineage"] = {
        "parent": parent_path.name,
        "parent_commit": git["commit"],
        "parent_tree_dirty": git["dirty"],
        "parent_params": params.to_dict(),
        "parent_profile": load_profile(profile).name,
        "parent_lineage": nb.get("metadata", {}).get("companion", {}).get("lineage"),
    }
    for cell in new.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    where = f"at commit `{git['commit'][:10]}`" if git["commit"] else "outside any git commit"
    banner = {
        "cell_type": "markdown",
        "metadata": {},
        "source": [
            f"> **Fork of `{parent_path.name}`** {where}"
            f"{' (dirty tree)' if git['dirty'] else ''}. Change the parameters cell or the code below; "
            f"figures from this notebook are saved as `{nxt:02d}_*` and never overwrite the parent's."
        ],
    }
    if new["nbformat"] >= 4 and new.get("nbformat_minor", 0) >= 5:
        banner["id"] = f"fork-{nxt:02d}"
    new["cells"].insert(0, banner)
    atomic_write_text(dest, json.dumps(new, indent=1, ensure_ascii=False) + "\n")
    return dest
