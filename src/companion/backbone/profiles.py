"""Fidelity profiles: the same notebooks on the paper's real models or on the offline model organism.

A profile is configuration, not a code path: ``profiles/<name>.yaml`` holds the environment it sets, whether
it may touch the network, where its figures go, the organisms it trains and per-notebook parameter overrides
(keyed by the parameter class name).  ``ci`` is the smallest offline run, ``organism`` the default offline
fallback, ``paper`` the real models and datasets (GPU expected), ``rehearsal`` the paper profile at toy scale
against a loopback Hub of random-weight stand-ins (``tests/rehearsal``).

**Inheritance.** ``extends: paper`` starts from the named profile's settings and deep-merges this file's over them
(mappings merge key by key, anything else is replaced), so a derived profile states only what it changes and can
never drift from its parent.  **Environment references.** ``${NAME}`` in an ``env`` value (or in a notebook
parameter that says so, e.g. the sycophancy data's base URL) is replaced by that environment variable when the
profile is applied; an unset one is an error naming it.
"""

from __future__ import annotations

import copy
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, field_validator

from companion.backbone.config import Config, deep_merge, format_validation_error, suggest  # noqa: F401
from companion.backbone.executor import ExecutorSettings

DEFAULT_PROFILE = "organism"
PROFILE_ENV = "COMPANION_PROFILE"


class ProfileError(ValueError):
    """Unknown or malformed profile."""


class Profile(Config):
    """A fidelity profile, read from ``src/companion/backbone/profiles/<name>.yaml``."""

    name: str
    """The profile's name: "ci", "organism", "paper" or "rehearsal" (the file's stem, not a key of the file)."""
    extends: str | None = None
    """The profile this one is built on (its settings deep-merged under this file's), or None."""
    description: str
    """One paragraph saying what the profile runs and what its figures mean."""
    offline: bool
    """True when the profile must never touch a model hub or dataset host."""
    figures_dir: str
    """Where its figures go, relative to the project root."""
    env: dict[str, str] = {}
    """Environment variables set before a notebook runs (e.g. HF_HUB_OFFLINE=1)."""
    organisms: dict[str, dict[str, Any]] = {}
    """Organism specs by name (validated by ``companion.organism.build.organism_spec`` when one is used)."""
    notebooks: dict[str, dict[str, Any]] = {}
    """Parameter overrides keyed by notebook parameter-class name (validated by each notebook's class)."""
    stamp: str = ""
    """Text stamped on every figure of this profile; empty means the default FALLBACK stamp (never none but for paper)."""
    not_applicable: dict[str, str] = {}
    """Notebooks (by number, e.g. "00") that do not belong to this profile, each with the reason the runner prints."""
    executor: ExecutorSettings = ExecutorSettings()
    """Where its work units run (local kernels or Slurm jobs) and what each job asks for (companion.backbone.executor)."""
    source_text: str = ""
    """The YAML text itself, its parents' first (hashed into the runner's skip key)."""

    @field_validator("description")
    @classmethod
    def _one_paragraph(cls, v: str) -> str:
        return " ".join(v.split())

    @property
    def is_fallback(self) -> bool:
        """Figures from any profile but ``paper`` are fallbacks and are stamped as such."""
        return self.name != "paper"

    def skip_reason(self, notebook: str) -> str | None:
        """Why ``notebook`` (a file name, path or number) does not run under this profile; None when it does."""
        m = re.match(r"^(\d+)", os.path.basename(str(notebook)))
        return self.not_applicable.get(m.group(1)) if m else None

    def stamp_for(self, notebook: str = "") -> str | None:
        """The stamp a figure of ``notebook`` gets under this profile (None: a paper figure, unstamped)."""
        reason = self.skip_reason(notebook)
        if reason is not None:
            return (
                f"NOT A {self.name.upper()} FIGURE · notebook {os.path.basename(str(notebook))} under profile "
                f"'{self.name}' · {reason}"
            )
        if not self.is_fallback:
            return None
        return self.stamp or f"FALLBACK · profile '{self.name}' · synthetic model organism, not the paper's models"

    def is_fallback_for(self, notebook: str = "") -> bool:
        """Whether a figure of ``notebook`` is a fallback figure (any profile but paper, or a notebook not its own)."""
        return self.stamp_for(notebook) is not None

    def overrides_for(self, params_class_name: str) -> dict[str, Any]:
        """The profile's parameter overrides for one notebook parameter class."""
        return dict(self.notebooks.get(params_class_name) or {})

    def apply_env(self) -> None:
        """Set this profile's environment variables in this process (inherited by kernels it starts).

        ``${NAME}`` references are expanded first (all of them, before anything is set)."""
        values = {k: expand_env(str(v), f"profile {self.name}: env.{k}") for k, v in self.env.items()}
        os.environ.update(values)


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, where: str = "") -> str:
    """``value`` with each ``${NAME}`` replaced by the environment variable; an unset one raises ProfileError."""

    def sub(m: re.Match) -> str:
        v = os.environ.get(m.group(1))
        if v is None:
            raise ProfileError(
                f"{where or repr(value)} needs the environment variable {m.group(1)}, which is not set "
                f"(see the profile's description for what to set it to)"
            )
        return v

    return _REF.sub(sub, value)


def available_profiles() -> list[str]:
    """The names of the profiles shipped with the package."""
    root = resources.files("companion.backbone") / "profiles"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name: str | Profile | None = None) -> Profile:
    """Read and validate a profile by name (default: ``$COMPANION_PROFILE`` or "organism"); a :class:`Profile`
    already read (e.g. by :func:`parse_profile` from edited text) is returned as it is."""
    if isinstance(name, Profile):
        return name
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    return parse_profile(name, _packaged_text(name))


def _packaged_text(name: str) -> str:
    names = available_profiles()
    if name not in names:
        raise ProfileError(f"unknown profile {name!r}{suggest(name, names)}; choose one of {', '.join(names)}")
    return (resources.files("companion.backbone") / "profiles" / f"{name}.yaml").read_text()


def profile_file(name: str) -> str:
    """Where profile ``name`` is written: its YAML file, relative to the project root when it is inside it."""
    path = Path(str(resources.files("companion.backbone") / "profiles" / f"{name}.yaml"))
    try:
        return path.resolve().relative_to(project_root().resolve()).as_posix()
    except ValueError:
        return str(path)


_PARSED: dict[str, Any] = {}
"""YAML text -> its data (profiles are read for every cache key computed ahead of a run)."""


def _raw(name: str, text: str) -> dict[str, Any]:
    try:
        if text not in _PARSED:
            _PARSED[text] = yaml.safe_load(text) or {}
        raw = copy.deepcopy(_PARSED[text])
    except yaml.YAMLError as e:
        raise ProfileError(f"profile {name}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {name}: a profile is a mapping of settings, got {type(raw).__name__}")
    if "name" in raw or "source_text" in raw:
        raise ProfileError(f"profile {name}: 'name' and 'source_text' are not settings (the name is the file's stem)")
    return raw


def _resolved(name: str, text: str, load_text, chain: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """The merged settings of ``name`` with its ``extends`` chain, and the chain's texts (parents first)."""
    raw = _raw(name, text)
    parent = raw.get("extends")
    if parent is None:
        return raw, text
    if not isinstance(parent, str):
        raise ProfileError(f"profile {name}: extends must be a profile name, got {parent!r}")
    if parent in chain + (name,):
        raise ProfileError(f"profile {name}: extends forms a cycle: {' -> '.join(chain + (name, parent))}")
    try:
        parent_text = load_text(parent)
    except ProfileError as e:  # the mistake is in this file's `extends:`; say which file
        raise ProfileError(f"{profile_file(name)}: extends: {e}") from None
    base, base_text = _resolved(parent, parent_text, load_text, chain + (name,))
    # A parent's own name and parent are not inherited; everything else is, merged.
    merged = deep_merge({k: v for k, v in base.items() if k != "extends"}, raw)
    return merged, f"{base_text}\n--- {name} extends {parent} ---\n{text}"


def parse_profile(name: str, text: str, *, load_text=None) -> Profile:
    """Validate a profile's YAML text (following ``extends`` through ``load_text(name) -> text``, the packaged
    profiles by default); every problem is named by its key path."""
    raw, source = _resolved(name, text, load_text or _packaged_text, ())
    try:
        return Profile.model_validate({**raw, "name": name, "source_text": source})
    except ValidationError as e:
        raise ProfileError(f"{profile_file(name)}: {format_validation_error(e, model=Profile)}") from None


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The companion checkout: ``$COMPANION_ROOT``, else the nearest parent holding this project's pyproject."""
    env = os.environ.get("COMPANION_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        pp = d / "pyproject.toml"
        if pp.is_file() and 'name = "companion"' in pp.read_text():
            return d
    # Fall back to the source checkout this package was installed from (editable install).
    pkg = Path(__file__).resolve().parents[2]
    if (pkg / "pyproject.toml").is_file():
        return pkg
    return here
