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


_VERSIONS: dict[str, str | None] = {}
"""Versions read in this process (a process runs the versions it imported: reading them again changes nothing)."""


def package_versions(names: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for n in names:
        if n not in _VERSIONS:
            try:
                _VERSIONS[n] = metadata.version(n)
            except metadata.PackageNotFoundError:
                _VERSIONS[n] = None
        out[n] = _VERSIONS[n]
    return out


def numerics() -> dict[str, object]:
    """The numeric code paths in force in this process (part of every cache key, manifest and figure sidecar).

    ``pinned`` is what :mod:`companion` set (empty when opted out), ``cpu_capability`` what torch actually runs
    (``AVX2`` when the pinning took effect; ``AVX512``, ``DEFAULT``, ... otherwise), ``machine`` the architecture.
    Two processes with equal ``numerics()`` and equal inputs compute the same bits.
    """
    import os
    import platform

    import torch

    import companion

    pinned = {k: os.environ.get(k) for k in companion.PINNED_NUMERICS}
    return {
        "pinned": pinned if pinned == companion.PINNED_NUMERICS else {},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "torch_imported_before_companion": companion.TORCH_IMPORTED_BEFORE_COMPANION,
    }
