"""The software environment a result was computed in: installed package versions.

Recorded in every figure's sidecar (:data:`PROVENANCE_PACKAGES`), in the runner's skip stamps (the packages pinned in
``requirements.lock``) and in every cache key that depends on numerics (:data:`NUMERIC_PACKAGES`, through
:func:`companion.backbone.cache.code_fingerprint`).
"""
from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

PROVENANCE_PACKAGES = (
    "torch", "transformer-lens", "transformers", "tokenizers", "numpy", "scipy", "scikit-learn", "matplotlib",
    "papermill",
)
"""Packages whose versions go into every figure's sidecar."""

NUMERIC_PACKAGES = ("torch", "numpy", "transformers", "tokenizers", "transformer-lens", "safetensors")
"""Libraries whose version changes the numbers a producer computes (part of every code fingerprint)."""


def package_versions(names: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out
