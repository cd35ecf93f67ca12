"""Execute the numbered notebooks with papermill, skipping those whose inputs did not change.

A notebook's *inputs* are everything that can change its outputs: its code cells, the source of every
``companion`` module it imports (followed transitively), the package data files, its parameters (the
profile's overrides and the command line's), the profile file and the installed versions of the pinned
packages.  Their hash is written to ``build/executed/<profile>/<notebook>.stamp.json`` after a successful run;
a later run with the same hash (and the executed copy still present) skips the notebook.

This module must stay cheap to import: deciding to skip everything must not import torch.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from companion.backbone import codegraph
from companion.backbone.environment import package_versions
from companion.backbone.params import NotebookParams, ParameterError
from companion.backbone.profiles import Profile, load_profile, project_root

NOTEBOOK_RE = re.compile(r"^(\d\d)_[\w\-]+\.ipynb$")
LOCK_FILE = "requirements.lock"
PKG_DIR = codegraph.PKG_DIR
"""The companion package whose modules are hashed (tests point it at a copy)."""


class RunnerError(RuntimeError):
    """A notebook could not be run; the message says which and why."""


@dataclasses.dataclass
class NotebookResult:
    """What happened to one notebook in a run."""

    notebook: str
    """Notebook file name."""
    status: str
    """"ran", "skipped", "not applicable" (not a notebook of the profile) or "failed"."""
    seconds: float
    """Wall time spent on it (0 when skipped)."""
    output: Path | None
    """The executed copy, when there is one."""


# --------------------------------------------------------------------------------------------- discovery
def discover(notebooks_dir: Path, only: str | Sequence[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks in order, filtered by ``only`` (numbers, stems or globs, comma-separated)."""
    nbs = sorted(p for p in notebooks_dir.glob("*.ipynb") if NOTEBOOK_RE.match(p.name))
    if not only:
        return nbs
    pats = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    chosen = []
    for nb in nbs:
        for pat in pats:
            hit = (nb.name[:2] == pat.zfill(2)) if pat.isdigit() else fnmatch.fnmatch(nb.stem, pat)
            if hit:
                chosen.append(nb)
                break
    if not chosen:
        raise RunnerError(f"ONLY={only!r} matches no notebook in {notebooks_dir}; have: {[p.name for p in nbs]}")
    return chosen


def read_notebook(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunnerError(f"cannot read notebook {path}: {e}") from e


def params_class_path(nb: Mapping[str, Any], path: Path) -> str:
    try:
        return nb["metadata"]["companion"]["params"]
    except KeyError:
        raise RunnerError(
            f"{path.name} does not name its parameter class: add notebook metadata "
            '{"companion": {"params": "companion.module:ParamsClass"}}'
        ) from None


def load_params_class(spec: str) -> type[NotebookParams]:
    mod_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise RunnerError(f"cannot import the parameter class {spec!r}: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, NotebookParams)):
        raise RunnerError(f"{spec} is not a companion.backbone.params.NotebookParams subclass")
    return cls


# ------------------------------------------------------------------------------------------- dependencies
def code_cells(nb: Mapping[str, Any]) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]


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


def dependency_manifest(nb_path: Path, nb: Mapping[str, Any], profile: Profile, params: Mapping[str, Any],
                        root: Path, versions: Mapping[str, str | None]) -> dict[str, Any]:
    """Everything the notebook's outputs depend on, as hashes (readable, so a re-run can say what changed)."""
    cells = code_cells(nb)
    mods = codegraph.module_closure(set().union(*map(codegraph.imports_of, cells)) | {"companion"}, PKG_DIR)
    # Package data (profiles, fit sets): every non-Python file under the package, read at call time.
    data_files = sorted(p for p in PKG_DIR.rglob("*")
                        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
    return {
        "notebook": _sha("\n\x00".join(cells).encode()),
        "modules": {m: _sha(p.read_bytes()) for m, p in sorted(mods.items())},
        "package_data": _sha(b"".join(p.relative_to(PKG_DIR).as_posix().encode() + _sha(p.read_bytes()).encode()
                                      for p in data_files)),
        "params": json.loads(json.dumps(params, sort_keys=True, default=str)),
        "profile": {"name": profile.name, "yaml": _sha(profile.source_text.encode())},
        "packages": dict(versions),
    }


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons a stamp no longer matches."""
    reasons = []
    for key in new:
        if old.get(key) == new[key]:
            continue
        if key in ("modules", "packages", "params") and isinstance(old.get(key), Mapping):
            changed = sorted(k for k in set(old[key]) | set(new[key]) if old[key].get(k) != new[key].get(k))
            reasons.append(f"{key}: {', '.join(changed)}")
        else:
            reasons.append(key)
    return reasons


# ---------------------------------------------------------------------------------------------- the run
def parse_param_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``name=value`` pairs from the command line; values are YAML (so 3, 0.5, true, [1, 2] are typed)."""
    import yaml

    out = {}
    for p in pairs:
        if "=" not in p:
            raise ParameterError(f"parameter {p!r} must look like name=value")
        k, v = p.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise ParameterError(f"parameter name {k!r} is not a valid identifier")
        out[k] = yaml.safe_load(v) if v.strip() else ""
    return out


def run_notebooks(
    profile: str | None = None,
    *,
    only: str | Sequence[str] | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    root: Path | None = None,
    notebooks_dir: Path | None = None,
    build_dir: Path | None = None,
    log=print,
) -> list[NotebookResult]:
    """Run the selected notebooks in order under ``profile``; returns what happened to each.

    Parameters are validated for every notebook that will run before any of them executes.  A failing
    notebook stops the run (its partial copy is kept as ``<name>.failed.ipynb``); earlier executed copies and
    stamps are kept.
    """
    t_start = time.time()
    root = (root or project_root()).resolve()
    prof = load_profile(profile)
    notebooks_dir = (notebooks_dir or root / "notebooks").resolve()
    out_dir = (build_dir or root / "build" / "executed") / prof.name
    overrides = dict(overrides or {})
    nbs = discover(notebooks_dir, only)
    if not nbs:
        raise RunnerError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    versions = pinned_package_versions(root)
    # Notebooks that are not this profile's (notebook 00 under paper/rehearsal) are skipped, saying why.
    excluded = [NotebookResult(nb.name, "not applicable", 0.0, None) for nb in nbs if prof.skip_reason(nb.name)]
    for r in excluded:
        log(f"{r.notebook}: skipped, not a notebook of profile {prof.name!r}: {prof.skip_reason(r.notebook)}")
    nbs = [nb for nb in nbs if not prof.skip_reason(nb.name)]

    # Pass 1: decide what must run, cheaply (no heavy imports).
    plan: list[tuple[Path, dict, str, dict, dict, bool]] = []
    for nb_path in nbs:
        nb = read_notebook(nb_path)
        cls_path = params_class_path(nb, nb_path)
        cls_name = cls_path.partition(":")[2]
        raw = {**prof.overrides_for(cls_name), **overrides}
        manifest = dependency_manifest(nb_path, nb, prof, {"class": cls_path, **raw}, root, versions)
        stamp_path = out_dir / f"{nb_path.stem}.stamp.json"
        executed = out_dir / nb_path.name
        old = json.loads(stamp_path.read_text())["inputs"] if stamp_path.is_file() else None
        fresh = old == manifest and executed.is_file()
        plan.append((nb_path, nb, cls_path, raw, manifest, fresh))
        if not fresh and old is not None and not force:
            log(f"{nb_path.name}: inputs changed ({'; '.join(describe_changes(old, manifest)) or 'output missing'})")

    # Pass 2: validate the parameters of everything that will run, before running anything.
    to_run = [p for p in plan if force or not p[5]]
    for nb_path, _nb, cls_path, raw, _m, _f in to_run:
        cls = load_params_class(cls_path)
        try:
            cls.from_dict(raw)
        except ParameterError as e:
            raise ParameterError(f"{nb_path.name}: {e}") from None

    # Pass 3: execute.
    results: list[NotebookResult] = list(excluded)
    out_dir.mkdir(parents=True, exist_ok=True)
    env_before = dict(os.environ)
    try:
        prof.apply_env()
        os.environ["COMPANION_ROOT"] = str(root)
        os.environ["COMPANION_PROFILE"] = prof.name
        for nb_path, _nb, cls_path, raw, manifest, fresh in plan:
            if fresh and not force:
                log(f"{nb_path.name}: up to date, skipped")
                results.append(NotebookResult(nb_path.name, "skipped", 0.0, out_dir / nb_path.name))
                continue
            results.append(_execute(nb_path, prof, overrides, manifest, out_dir, root, log))
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    ran = sum(r.status == "ran" for r in results)
    log(f"{ran} ran, {len(results) - ran} skipped, profile {prof.name!r}, {time.time() - t_start:.1f} s; "
        f"executed copies in {out_dir}")
    return results


def _execute(nb_path: Path, prof: Profile, overrides: Mapping[str, Any], manifest: Mapping[str, Any],
             out_dir: Path, root: Path, log) -> NotebookResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    final = out_dir / nb_path.name
    running = out_dir / f".{nb_path.stem}.running.ipynb"
    failed = out_dir / f"{nb_path.stem}.failed.ipynb"
    stamp_path = out_dir / f"{nb_path.stem}.stamp.json"
    os.environ["COMPANION_NOTEBOOK"] = nb_path.relative_to(root).as_posix() if nb_path.is_relative_to(root) \
        else nb_path.name
    log(f"{nb_path.name}: running (profile {prof.name})")
    t0 = time.time()
    try:
        papermill.execute_notebook(
            str(nb_path), str(running),
            parameters={"profile": prof.name, "overrides": dict(overrides)},
            kernel_name="python3", cwd=str(nb_path.parent), progress_bar=sys.stderr.isatty(),
            report_mode=False,
        )
    except PapermillExecutionError as e:
        running.replace(failed) if running.exists() else None
        msg = (f"{nb_path.name} failed in cell {e.cell_index} (execution count {e.exec_count}); earlier results "
               f"are kept. Partial notebook: {failed}\n--- cell source ---\n{e.source}\n--- error ---\n"
               f"{e.ename}: {e.evalue}\n" + _strip_ansi("\n".join(e.traceback)))
        raise RunnerError(msg) from None
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    _tag_executed(running, prof)
    os.replace(running, final)
    failed.unlink(missing_ok=True)
    from companion.backbone.atomic import atomic_write_text

    secs = time.time() - t0
    atomic_write_text(stamp_path, json.dumps({"inputs": manifest, "seconds": round(secs, 2),
                                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    log(f"{nb_path.name}: done in {secs:.1f} s")
    return NotebookResult(nb_path.name, "ran", secs, final)


def _tag_executed(path: Path, prof: Profile) -> None:
    """Stamp the executed copy with its profile, so it can never pass for a paper run."""
    nb = json.loads(path.read_text())
    nb.setdefault("metadata", {}).setdefault("companion", {})["executed_profile"] = prof.name
    nb["metadata"]["companion"]["fallback"] = prof.is_fallback
    path.write_text(json.dumps(nb, indent=1))


def _strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)
