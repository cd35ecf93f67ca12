"""The software environment a result was computed in: installed package versions.

Recorded in every figure's sidecar (:data:`PROVENANCE_PACKAGES`), in the runner's skip stamps (the packages pinned in
``requirements.lock``) and in every cache key that depends on numerics (:data:`NUMERIC_PACKAGES`, through
:func:`companion.backbone.cache.code_fingerprint`).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

PROVENANCE_PACKAGES = (
    "torch",
    "transformer-lens",
    "transformers",
    "tokenizers",
    "numpy",
    "scipy",
    "scikit-learn",
    "matplotlib",
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
    (``AVX2`` when the pinning took effect; ``AVX512``, ``DEFAULT``, ... otherwise), ``machine`` the architecture,
    ``mkl_branch`` the code branch MKL actually runs (``COMPATIBLE`` when the pinning took effect; MKL ignores
    requests it cannot honour) and ``dense_product`` the library of training's matrix products
    (:mod:`companion.models.numerics`).
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
        "mkl_branch": mkl_branch(),
        "dense_product": dense_product(),
        "torch_imported_before_companion": companion.TORCH_IMPORTED_BEFORE_COMPANION,
    }


MKL_BRANCHES = {
    0: "OFF",
    1: "BRANCH_OFF",
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    11: "AVX512_MIC",
    12: "AVX512",
    13: "AVX512_MIC_E1",
    14: "AVX512_E1",
}
"""MKL's conditional-numerical-reproducibility branch codes (``mkl_cbwr_get``) and their names."""


def in_force() -> bool:
    """Whether companion's numeric pinning is in force in this process (every pinned variable has its value)."""
    import os

    import companion

    return all(os.environ.get(k) == v for k, v in companion.PINNED_NUMERICS.items())


def mkl_branch() -> str | None:
    """The code branch MKL actually runs (``"COMPATIBLE"``, ``"AUTO"``, ``"AVX2"``, ...); None without MKL.

    Asked of MKL itself: the environment variable is only a request, which MKL ignores where it cannot honour it
    (``AVX2`` on AMD CPUs runs ``AUTO``).  MKL reads the request once, so call this only after :mod:`companion` set it.
    """
    import ctypes
    import os

    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = get(1)  # MKL_CBWR_BRANCH
    return MKL_BRANCHES.get(code, str(code))


def dense_product() -> str:
    """The library of training's float32 CPU matrix products (:mod:`companion.models.numerics`): ``"onednn"`` while
    the pinning is in force and torch has oneDNN, else ``"torch"``."""
    import torch

    return "onednn" if torch.backends.mkldnn.is_available() and in_force() else "torch"
