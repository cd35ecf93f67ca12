"""Every SAE architecture the companion trains and reads, by name: the gated paper's two (Rajamanoharan et al. 2024,
arXiv:2404.16014: :class:`~companion.sae.autoencoders.BaselineSAE`, :class:`~companion.sae.autoencoders.GatedSAE`)
and their successors (:mod:`companion.sae.successors`: JumpReLU, arXiv:2407.14435; TopK, arXiv:2406.04093;
BatchTopK, arXiv:2412.06410).  docs/references.md has each one's equations.
"""

from __future__ import annotations

from typing import Any

import torch

from companion.sae.autoencoders import BaselineSAE, GatedSAE, SparseAutoencoder
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {
    "baseline": BaselineSAE,
    "gated": GatedSAE,
    "jumprelu": JumpReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
}
"""Architecture name -> class; the order of the notebooks' tables and legends."""


def make_sae(
    architecture: str,
    d_in: int,
    n_latents: int,
    *,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> SparseAutoencoder:
    """Build an SAE by architecture name; ``options`` are the class's own constructor arguments (``k`` for TopK)."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown SAE architecture {architecture!r}; choose one of {list(ARCHITECTURES)}") from None
    return cls(d_in, n_latents, seed=seed, dtype=dtype, **options)
