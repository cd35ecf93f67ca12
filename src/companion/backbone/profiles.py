"""Fidelity profiles: the same notebooks on the paper's real models or on the offline model organism.

A profile is configuration, not a code path: ``profiles/<name>.yaml`` holds the environment it sets, whether
it may touch the network, where its figures go, the organisms it trains and per-notebook parameter overrides
(keyed by the parameter class name).  ``ci`` is the smallest offline run, ``organism`` the default offline
fallback, ``paper`` the real models and datasets (GPU expected).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, field_validator

from companion.backbone.config import Config, format_validation_error

DEFAULT_PROFILE = "organism"
PROFILE_ENV = "COMPANION_PROFILE"


class ProfileError(ValueError):
    """Unknown or malformed profile."""


class Profile(Config):
    """A fidelity profile, read from ``src/companion/backbone/profiles/<name>.yaml``."""

    name: str
    """The profile's name: "ci", "organism" or "paper" (the file's stem, not a key of the file)."""
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
    source_text: str = ""
    """The YAML text itself (hashed into the runner's skip key)."""

    @field_validator("description")
    @classmethod
    def _one_paragraph(cls, v: str) -> str:
        return " ".join(v.split())

    @property
    def is_fallback(self) -> bool:
        """Figures from any profile but ``paper`` are fallbacks and are stamped as such."""
        return self.name != "paper"

    def overrides_for(self, params_class_name: str) -> dict[str, Any]:
        """The profile's parameter overrides for one notebook parameter class."""
        return dict(self.notebooks.get(params_class_name) or {})

    def apply_env(self) -> None:
        """Set this profile's environment variables in this process (inherited by kernels it starts)."""
        for k, v in self.env.items():
            os.environ[k] = str(v)


def available_profiles() -> list[str]:
    """The names of the profiles shipped with the package."""
    root = resources.files("companion.backbone") / "profiles"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name: str | None = None) -> Profile:
    """Read and validate a profile by name (default: ``$COMPANION_PROFILE`` or "organism")."""
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    names = available_profiles()
    if name not in names:
        raise ProfileError(f"unknown profile {name!r}; choose one of {', '.join(names)}")
    return parse_profile(name, (resources.files("companion.backbone") / "profiles" / f"{name}.yaml").read_text())


def parse_profile(name: str, text: str) -> Profile:
    """Validate a profile's YAML text; every problem is named by its key path."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ProfileError(f"profile {name}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {name}: a profile is a mapping of settings, got {type(raw).__name__}")
    if "name" in raw or "source_text" in raw:
        raise ProfileError(f"profile {name}: 'name' and 'source_text' are not settings (the name is the file's stem)")
    try:
        return Profile.model_validate({**raw, "name": name, "source_text": text})
    except ValidationError as e:
        raise ProfileError(f"profile {name}: {format_validation_error(e)}") from None


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
