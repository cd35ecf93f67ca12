"""companion: reproducible notebooks for four mechanistic-interpretability results.

Importing the package pins the CPU's numeric code paths for everything computed afterwards in this process and in
the processes it starts (papermill kernels, organism-training workers), so that every x86-64 CPU with AVX2, Intel
or AMD, computes the organisms, their activations and the SAEs bit for bit the same: torch's vectorised kernels
take their AVX2 paths (``ATEN_CPU_CAPABILITY``), oneDNN its AVX2 paths (``ONEDNN_MAX_CPU_ISA``), and MKL its
vendor-neutral branch (``MKL_CBWR=COMPATIBLE``: MKL picks kernels by CPU vendor, and ignores ``AVX2`` on AMD
CPUs).  :mod:`companion.models.numerics` does the rest (training's products through oneDNN, exact square roots).
Without this an organism trained on an AVX-512 machine differs from one trained on an AVX2 machine, and one trained
on an AMD CPU from one trained on an Intel CPU (measured: different weights, probe scores changing sign).  torch,
MKL and oneDNN read the variables when they first compute, so companion must be imported before anything computes
with torch (our notebooks import it first); :func:`companion.backbone.environment.numerics` reports what is
actually in force, and it is part of every cache key, cache manifest and figure sidecar.
``COMPANION_NATIVE_NUMERICS=1`` opts out (faster; results then differ by machine and are cached under their own
keys).

Importing it also tells glibc's malloc to keep freed memory for reuse (``KEEPS_FREED_MEMORY``): training steps
allocate and free the same buffers hundreds of times, and handing them back to the kernel each time cost 8-15% of an
organism's training.  A process then holds up to 256 MB of freed memory per malloc arena;
``COMPANION_KEEP_FREED_MEMORY=0`` opts out.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

PINNED_NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}
"""The numeric code paths fixed at import (environment variables read by torch, MKL and oneDNN at start-up)."""
NATIVE_NUMERICS_ENV = "COMPANION_NATIVE_NUMERICS"
"""Set to 1 to leave the CPU's own (fastest, machine-dependent) code paths."""
TORCH_IMPORTED_BEFORE_COMPANION = "torch" in _sys.modules
"""True when torch was already imported when companion was (harmless unless it had already computed something)."""

if _os.environ.get(NATIVE_NUMERICS_ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
    _os.environ.update(PINNED_NUMERICS)


def _keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel after every step.

    A training step allocates and frees the same tens of megabytes (logits, gradients) hundreds of times; with
    glibc's defaults the top of the heap is trimmed and large blocks are unmapped each time, and the kernel zeroes
    fresh pages on every reuse (measured: ~650k page faults and 8-15% of an organism's training time).  Fixing the
    mmap threshold at its ceiling (32 MB) and trimming only above 256 MB free removes that; it changes no result
    (torch aligns its buffers itself).  A no-op where the C library is not glibc.
    """
    import ctypes

    if _os.environ.get("COMPANION_KEEP_FREED_MEMORY", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mmap_set = bool(mallopt(m_mmap_threshold, 32 << 20))
    trim_set = bool(mallopt(m_trim_threshold, 256 << 20))
    return mmap_set and trim_set


KEEPS_FREED_MEMORY = _keep_freed_memory()
"""True when glibc's malloc was told to keep freed memory for reuse in this process (see ``_keep_freed_memory``)."""
