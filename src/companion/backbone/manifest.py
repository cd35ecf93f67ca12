"""A notebook's inputs, as hashes: everything that can change its outputs, so that a stamp can say it is up to date.

The inputs are its code cells, the source of every ``companion`` module it imports (followed transitively,
:mod:`companion.backbone.codegraph`), the package data files, its parameters (the profile's overrides and the
command line's), every file or folder a parameter names (:func:`input_files`), the profile file and the installed
versions of the pinned packages (:func:`pinned_package_versions`).  :func:`dependency_manifest` gathers them;
:func:`describe_changes` says, readably, which of them changed since a stamp (:mod:`companion.backbone.plan`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from companion.backbone import codegraph
from companion.backbone.environment import package_versions
from companion.backbone.profiles import Profile

LOCK_FILE = "requirements.lock"
PKG_DIR = codegraph.PKG_DIR
"""The companion package whose modules are hashed (tests point it at a copy)."""


def code_cells(nb: Mapping[str, Any]) -> list[str]:
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code"
    ]


def pinned_package_versions(root: Path) -> dict[str, str | None]:
    """Installed versions of the packages pinned in the lock file (what a re-run would use)."""
    lock = root / LOCK_FILE
    names = []
    if lock.is_file():
        for line in lock.read_text().splitlines():
            line = line.split("#")[0].strip()
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==", line)
            if m:
                names.append(m.group(1))
    return package_versions(tuple(names))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BIG_FILE = 256 * 2**20
"""Files larger than this (a local model's weights) are keyed by size, modification time and their first and last
MiB rather than read whole at every plan."""


def _file_digest(p: Path) -> str:
    st = p.stat()
    if st.st_size <= BIG_FILE:
        return _sha(p.read_bytes())
    with p.open("rb") as f:
        head = f.read(2**20)
        f.seek(-(2**20), os.SEEK_END)
        tail = f.read()
    return _sha(b"%d:%d:" % (st.st_size, st.st_mtime_ns) + head + tail)


def _path_digest(p: Path) -> str:
    """The content hash of a file, or of every file under a directory (names and contents)."""
    if p.is_file():
        return _file_digest(p)
    files = sorted(q for q in p.rglob("*") if q.is_file())
    return _sha(b"".join(q.relative_to(p).as_posix().encode() + b"\0" + _file_digest(q).encode() for q in files))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def input_files(params: Mapping[str, Any], root: Path, nb_dir: Path) -> dict[str, str]:
    """Every parameter value that names an existing file or folder (a data_dir, a fit set given by path, a local
    model), with the hash of its contents: editing the data reruns the notebook, as editing the code does.

    A relative path is looked up from the project root and from the notebooks' folder (the kernels' working folder).
    """
    out = {}
    for text in _strings(params):
        if not text.strip() or "\n" in text or len(text) > 4096:
            continue
        path = Path(text).expanduser()
        for cand in [path] if path.is_absolute() else [root / path, nb_dir / path]:
            try:
                if cand.exists() and not (cand.resolve() == root.resolve() or cand.resolve() in root.parents):
                    out[text] = _path_digest(cand)
                    break
            except OSError:
                continue
    return out


def dependency_manifest(
    nb_path: Path,
    nb: Mapping[str, Any],
    profile: Profile,
    params: Mapping[str, Any],
    root: Path,
    versions: Mapping[str, str | None],
) -> dict[str, Any]:
    """Everything the notebook's outputs depend on, as hashes (readable, so a re-run can say what changed)."""
    cells = code_cells(nb)
    mods = codegraph.module_closure(set().union(*map(codegraph.imports_of, cells)) | {"companion"}, PKG_DIR)
    # Package data (profiles, fit sets): every non-Python file under the package, read at call time.
    data_files = sorted(
        p
        for p in PKG_DIR.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )
    files = input_files(params, root, nb_path.parent)
    return {
        **({"files": files} if files else {}),  # absent when none, so stamps from before this key still match
        "notebook": _sha("\n\x00".join(cells).encode()),
        "modules": {m: _sha(p.read_bytes()) for m, p in sorted(mods.items())},
        "package_data": _sha(
            b"".join(p.relative_to(PKG_DIR).as_posix().encode() + _sha(p.read_bytes()).encode() for p in data_files)
        ),
        "params": json.loads(json.dumps(params, sort_keys=True, default=str)),
        "profile": {"name": profile.name, "yaml": _sha(profile.source_text.encode())},
        "packages": dict(versions),
    }


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons a stamp no longer matches."""
    reasons = []
    for key in [*new, *(k for k in old if k not in new)]:
        if old.get(key) == new.get(key):
            continue
        if (
            key in ("modules", "packages", "params", "files")
            and isinstance(old.get(key, {}), Mapping)
            and isinstance(new.get(key, {}), Mapping)
        ):
            before, after = old.get(key) or {}, new.get(key) or {}
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            reasons.append(f"{key}: {', '.join(changed)}")
        else:
            reasons.append(key)
    return reasons
