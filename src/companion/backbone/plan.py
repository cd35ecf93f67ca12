"""What ``make figures`` would run, and why, decided without running anything (and without importing torch).

A notebook's inputs (its code, the modules it imports, its parameters, the data they name, the profile, the
package versions) are hashed by :func:`companion.backbone.manifest.dependency_manifest`.  The runner writes them
to ``build/executed/<profile>/<notebook>.stamp.json`` after a successful run, with the hashes of the figures it
saved; :func:`plan_run` says a notebook is up to date when its inputs match that stamp and its executed copy and
every one of those figures are still there, unchanged.

Command-line parameters (``-p name=value``) go to each selected notebook whose parameter class declares the name,
converted by the declared type (:func:`route_overrides`); all are validated before anything is reported or run.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from companion.backbone import codegraph
from companion.backbone.config import suggest
from companion.backbone.manifest import dependency_manifest, describe_changes, pinned_package_versions
from companion.backbone.params import NotebookParams, ParameterError
from companion.backbone.profiles import Profile, profile_file

NOTEBOOK_RE = re.compile(r"^(\d\d)_[\w\-]+\.ipynb$")


class RunnerError(RuntimeError):
    """A notebook could not be run; the message says which and why."""


class SettingsError(ParameterError):
    """Everything a run would stop on, found before it starts: one line per problem (``problems``)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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
# ---------------------------------------------------------------------------------------------- the plan
def parse_param_args(pairs: Sequence[str]) -> dict[str, str]:
    """``name=value`` pairs from the command line -> ``{name: text}`` (converted later, by each notebook's types)."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ParameterError(f"parameter {p!r} must look like name=value")
        k, v = p.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise ParameterError(f"parameter name {k!r} in {p!r} is not a valid identifier")
        out[k] = v
    return out


@dataclasses.dataclass
class NotebookPlan:
    """What the runner decided about one notebook before running anything."""

    path: Path
    """The notebook."""
    cls_path: str
    """Its parameter class, ``module:Class``."""
    overrides: dict[str, Any]
    """The command-line overrides this notebook declares, converted to its types (what papermill injects)."""
    values: dict[str, Any]
    """Profile overrides <- command-line overrides: everything that differs from the class defaults."""
    manifest: dict[str, Any]
    """Its inputs (:func:`dependency_manifest`)."""
    reasons: list[str]
    """Why it must run; empty when it is up to date."""


def route_overrides(classes: Mapping[str, type[NotebookParams]], overrides: Mapping[str, Any]) -> dict[str, dict]:
    """Give each notebook the overrides its class declares, converting text by the declared type.

    ``classes`` maps notebook file name -> parameter class.  A name no class declares is an error, as is a value
    that does not convert; both name the notebook (or notebooks), the parameter and the value.
    """
    routed: dict[str, dict] = {nb: {} for nb in classes}
    for name, value in overrides.items():
        takers = [nb for nb, cls in classes.items() if name in cls.field_names()]
        if not takers:
            declared = "; ".join(f"{nb} ({cls.__name__})" for nb, cls in classes.items())
            known = {f for cls in classes.values() for f in cls.field_names()}
            raise ParameterError(
                f"unknown parameter {name}={value!r}{suggest(name, known)}: none of the selected "
                f"notebooks declares it (selected: {declared})"
            )
        for nb in takers:
            cls = classes[nb]
            try:
                routed[nb][name] = cls.from_text({name: value})[name] if isinstance(value, str) else value
            except ParameterError as e:
                raise ParameterError(f"{nb}: {e}") from None
    return routed


def figures_dir(prof: Profile, root: Path) -> Path:
    """Where this run's figures go: ``$COMPANION_FIGURES_DIR`` (from the profile's env or ours), else the profile's."""
    override = prof.env.get("COMPANION_FIGURES_DIR") or os.environ.get("COMPANION_FIGURES_DIR")
    return Path(override) if override else root / prof.figures_dir


def _figures_unchanged(stamp: Mapping[str, Any], figs: Path) -> list[str]:
    """Figures the stamp's run saved that are now missing, incomplete or from another run."""
    from companion.backbone.figures import figure_is_complete

    bad = []
    for stem, files in (stamp.get("figures") or {}).items():
        side = figs / f"{stem}.json"
        try:
            ok = json.loads(side.read_text()).get("files") == files and figure_is_complete(side)
        except (OSError, ValueError):
            ok = False
        if not ok:
            bad.append(stem)
    return bad


def plan_run(
    prof: Profile, nbs: Sequence[Path], overrides: Mapping[str, Any], *, root: Path, out_dir: Path, force: bool = False
) -> list[NotebookPlan]:
    """Decide what must run and validate its parameters, running nothing.

    A notebook that is up to date is not validated again: its parameters are those it last ran with (any change
    to them, or to the profile, makes it run).  So deciding that nothing needs to run imports no parameter class.
    """
    versions = pinned_package_versions(root)
    books = {p.name: read_notebook(p) for p in nbs}
    cls_paths = {p.name: params_class_path(books[p.name], p) for p in nbs}
    classes: dict[str, type[NotebookParams]] = {}
    if overrides:  # routing needs the classes; without overrides a skip-everything run imports none of them
        classes = {nb: load_params_class(c) for nb, c in cls_paths.items()}
    routed = route_overrides(classes, overrides) if overrides else {nb: {} for nb in cls_paths}
    figs = figures_dir(prof, root)
    plans = []
    for nb_path in nbs:
        name, cls_path = nb_path.name, cls_paths[nb_path.name]
        values = {**prof.overrides_for(cls_path.partition(":")[2]), **routed[name]}
        manifest = dependency_manifest(nb_path, books[name], prof, {"class": cls_path, **values}, root, versions)
        stamp_path = out_dir / f"{nb_path.stem}.stamp.json"
        try:
            stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
        except (OSError, ValueError):
            stamp = None
        reasons = []
        if stamp is None:
            failed = (out_dir / f"{nb_path.stem}.failed.ipynb").is_file()
            reasons.append("its last run did not finish" if failed else f"no earlier run on profile {prof.name!r}")
        else:
            changed = describe_changes(stamp.get("inputs") or {}, manifest)
            if changed:
                reasons.append(f"inputs changed: {'; '.join(changed)}")
            if not (out_dir / name).is_file():
                reasons.append("executed copy missing")
            bad = _figures_unchanged(stamp, figs)
            if bad:
                reasons.append(f"figures missing or changed since its last run: {', '.join(bad)}")
        if force:
            reasons.insert(0, "--force")
        plans.append(NotebookPlan(nb_path, cls_path, routed[name], values, manifest, reasons))
    if any(plan.reasons for plan in plans):  # validate before reporting or running anything
        problems = preflight(prof, plans, classes, root=root, out_dir=out_dir, figs=figs)
        if problems:
            raise SettingsError(problems)
    return plans


def parameter_classes(nb_dir: Path) -> set[str]:
    """Every notebook parameter class a profile's ``notebooks:`` section may name: those of the notebooks in
    ``nb_dir`` (forks included) and every :class:`NotebookParams` subclass in the package's ``*/params.py``."""
    names = set()
    for nb in discover(nb_dir):
        spec = (read_notebook(nb).get("metadata", {}).get("companion") or {}).get("params", "")
        names.add(spec.partition(":")[2])
    for sub in sorted(codegraph.PKG_DIR.iterdir()):
        if (sub / "params.py").is_file():
            try:
                importlib.import_module(f"companion.{sub.name}.params")
            except ImportError:
                continue
    todo = [NotebookParams]
    while todo:
        for cls in todo.pop().__subclasses__():
            names.add(cls.__name__)
            todo.append(cls)
    return names - {""}


def preflight(
    prof: Profile,
    plans: Sequence[NotebookPlan],
    classes: Mapping[str, type[NotebookParams]],
    *,
    root: Path,
    out_dir: Path,
    figs: Path,
) -> list[str]:
    """Every problem the run would meet, one line each: a profile section naming no parameter class, each notebook
    that will run's parameters (validated) and its own checks (:meth:`NotebookParams.preflight`: data folders,
    organism settings, ...), and the folders the run writes to."""
    from companion.backbone.atomic import writable_problem

    problems = []
    where = profile_file(prof.name)
    known = parameter_classes(plans[0].path.parent) if plans else set()
    for section in prof.notebooks:
        if section not in known:
            problems.append(
                f"{where}: notebooks.{section} names no notebook's parameter class"
                + (suggest(section, known) or f" (known: {', '.join(sorted(known))})")
            )
    by_problem: dict[str, list[str]] = {}  # a problem several notebooks share (an organism's setting) is one line
    for plan in plans:
        if not plan.reasons:
            continue
        cls = classes.get(plan.path.name) or load_params_class(plan.cls_path)
        try:
            found = cls.from_dict(plan.values).preflight(prof)
        except ParameterError as e:
            found = [str(e)]
        for line in found:
            by_problem.setdefault(line, []).append(plan.path.name)
    problems += [f"{', '.join(nbs)}: {line}" for line, nbs in by_problem.items()]
    cache = (
        prof.env.get("COMPANION_CACHE")
        or os.environ.get("COMPANION_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "companion")
    )
    for what, folder in (("figures", figs), ("executed notebooks", out_dir), ("cache", Path(cache))):
        problem = writable_problem(folder)
        if problem:
            problems.append(f"the {what} folder {problem}")
    return list(dict.fromkeys(problems))
