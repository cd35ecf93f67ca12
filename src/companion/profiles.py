"""Fidelity profiles: the same notebooks on the paper's real models or on the offline model organism.

A profile is configuration, not a code path: ``profiles/<name>.yaml`` holds the environment it sets, whether
it may touch the network, where its figures go, the organisms it trains and per-notebook parameter overrides
(keyed by the parameter class name).  ``ci`` is the smallest offline run, ``organism`` the default offline
fallback, ``paper`` the real models and datasets (GPU expected).
"""
from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PROFILE = "organism"
PROFILE_ENV = "COMPANION_PROFILE"


class ProfileError(ValueError):
    """Unknown or malformed profile."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """A fidelity profile, read from ``src/companion/profiles/<name>.yaml``."""

    name: str
    """The profile's name: "ci", "organism" or "paper"."""
    description: str
    """One paragraph saying what the profile runs and what its figures mean."""
    offline: bool
    """True when the profile must never touch a model hub or dataset host."""
    figures_dir: str
    """Where its figures go, relative to the project root."""
    env: dict[str, str]
    """Environment variables set before a notebook runs (e.g. HF_HUB_OFFLINE=1)."""
    organisms: dict[str, dict[str, Any]]
    """Organism specs by name (used by ``companion.organism``)."""
    notebooks: dict[str, dict[str, Any]]
    """Parameter overrides keyed by notebook parameter-class name."""
    source_text: str
    """The YAML text itself (hashed into the runner's skip key)."""

    @property
    def is_fallback(self) -> bool:
        """Figures from any profile but ``paper`` are fallbacks and are stamped as such."""
        return self.name != "paper"

    def overrides_for(self, params_class_name: str) -> dict[str, Any]:
        return dict(self.notebooks.get(params_class_name) or {})

    def apply_env(self) -> None:
        """Set this profile's environment variables in this process (inherited by kernels it starts)."""
        for k, v in self.env.items():
            os.environ[k] = str(v)


def available_profiles() -> list[str]:
    root = resources.files("companion") / "profiles"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name: str | None = None) -> Profile:
    """Read a profile by name (default: ``$COMPANION_PROFILE`` or "organism")."""
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    names = available_profiles()
    if name not in names:
        raise ProfileError(f"unknown profile {name!r}; choose one of {', '.join(names)}")
    text = (resources.files("companion") / "profiles" / f"{name}.yaml").read_text()
    raw = yaml.safe_load(text) or {}
    allowed = {"description", "offline", "figures_dir", "env", "organisms", "notebooks"}
    extra = set(raw) - allowed
    if extra:
        raise ProfileError(f"profile {name}: unknown top-level keys {sorted(extra)}; allowed {sorted(allowed)}")
    for key in ("description", "offline", "figures_dir"):
        if key not in raw:
            raise ProfileError(f"profile {name}: missing required key {key!r}")
    return Profile(
        name=name,
        description=" ".join(str(raw["description"]).split()),
        offline=bool(raw["offline"]),
        figures_dir=str(raw["figures_dir"]),
        env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
        organisms=dict(raw.get("organisms") or {}),
        notebooks=dict(raw.get("notebooks") or {}),
        source_text=text,
    )


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
