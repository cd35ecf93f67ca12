"""Sparse-code machinery of the hand-derived SAE steps (:mod:`companion.sae.step`, :mod:`companion.sae.step_successors`).

A code with nnz ≪ B·M non-zeros is kept as its pattern (CSR and CSR of the transpose) and its values; products with
it are sparse×dense (O(nnz·d)), and a gradient that is only used at the pattern's entries is a sampled dense product
(SDDMM).  Shapes: B tokens, M latents, d input dimensions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Workspace:
    """Reusable scratch buffers, so a [B, M] pre-activation is not freshly allocated (page-faulted) every step.

    One workspace can serve several SAEs trained in turn (buffers are keyed by name, shape and dtype).
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[Any, ...], Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        key = (name, tuple(shape), dtype, str(device))
        buf = self._bufs.get(key)
        if buf is None:
            buf = torch.empty(shape, dtype=dtype, device=device)
            self._bufs[key] = buf
        return buf

    def clear(self) -> None:
        self._bufs.clear()


class Pattern:
    """The non-zero pattern of a [B, M] code in row-major (CSR) and column-major (CSR of the transpose) order."""

    def __init__(self, flat: Tensor, B: int, M: int):
        self.B, self.M = B, M
        self.rows = torch.div(flat, M, rounding_mode="floor")
        self.cols = flat - self.rows * M
        self.nnz = int(flat.numel())
        crow = torch.zeros(B + 1, dtype=torch.int64, device=flat.device)
        torch.cumsum(torch.bincount(self.rows, minlength=B), 0, out=crow[1:])
        self.crow = crow
        # Column-major order of the same entries, for products with the transposed code (weight gradients).
        self.perm = torch.argsort(self.cols, stable=True)
        ccol = torch.zeros(M + 1, dtype=torch.int64, device=flat.device)
        torch.cumsum(torch.bincount(self.cols, minlength=M), 0, out=ccol[1:])
        self.ccol = ccol
        self.rows_t = self.rows[self.perm]

    def csr(self, values: Tensor) -> Tensor:
        """The [B, M] sparse matrix with these values (row-major order)."""
        return torch.sparse_csr_tensor(self.crow, self.cols, values, size=(self.B, self.M), check_invariants=False)

    def csr_t(self, values: Tensor) -> Tensor:
        """The [M, B] transpose, given values in row-major order."""
        return torch.sparse_csr_tensor(
            self.ccol, self.rows_t, values[self.perm], size=(self.M, self.B), check_invariants=False
        )

    def sampled(self, a: Tensor, b: Tensor) -> Tensor:
        """(a @ b) at the pattern's entries, row-major: a [B, k], b [k, M] -> [nnz] (an SDDMM)."""
        pattern = torch.sparse_csr_tensor(
            self.crow, self.cols, a.new_zeros(self.nnz), size=(self.B, self.M), check_invariants=False
        )
        return torch.sparse.sampled_addmm(pattern, a, b, beta=0.0).values()

    def col_sum(self, values: Tensor) -> Tensor:
        """Σ over rows of the sparse matrix: [nnz] -> [M]."""
        return values.new_zeros(self.M).index_add_(0, self.cols, values)


def active_mask(z: Tensor, neg_bias: Tensor, ws: Workspace, name: str) -> tuple[Tensor, int]:
    """The mask of z + b > 0 computed as z > −b (exactly the same set: fl(z+b) has the sign of z+b), and its count.

    The count decides between the sparse and the dense path before any index list is built: at high density the
    indices (``flat_indices``) would cost more than the dense step saves.
    """
    mask = ws.get(name, tuple(z.shape), torch.bool, z.device)
    torch.gt(z, neg_bias, out=mask)
    return mask, int(torch.count_nonzero(mask))


def flat_indices(mask: Tensor) -> Tensor:
    """Row-major flat indices of the true entries of a [B, M] mask (sorted)."""
    return mask.view(-1).nonzero().squeeze(1)


def set_grad(p: torch.nn.Parameter, g: Tensor) -> None:
    # Every gradient computed here is a fresh tensor (or a transposed view of one), so it can become .grad as it
    # is: no copy.  A transposed view keeps its strides; Adam and the decoder projection work on any layout.
    p.grad = g
