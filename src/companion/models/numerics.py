"""Vendor-neutral numerics: the products, optimisers and LayerNorms that give the same bits on Intel and AMD CPUs.

:mod:`companion` pins the CPU's numeric code paths at import (``companion.PINNED_NUMERICS``); this module holds
the part of the pinning that environment variables cannot do.  What was measured (issue 22), training the same
tiny organism natively (an AMD EPYC with AVX-512) and on CPUs emulated with ``qemu-x86_64 -cpu Haswell|EPYC``:

* **MKL picks kernels by CPU vendor.**  On AMD it ignores ``MKL_CBWR=AVX2`` (it reports branch ``AUTO``) and
  runs other sgemm and vector-maths kernels: emulated Intel and AMD CPUs gave different products (up to 608 ulp
  apart in ``nn.Linear``) and ``exp``/``log``/``sqrt``.  Only
  ``MKL_CBWR=COMPATIBLE`` is honoured on both, so that is the pin; it halves MKL's matmul speed.
* **oneDNN dispatches by instruction set, not vendor.**  Capped at AVX2 (``ONEDNN_MAX_CPU_ISA``), its fp32 matmul
  gave identical bits on all three CPUs for every shape tried, at MKL's full AVX2 speed.  The hot products of
  training therefore go through :func:`linear`, :func:`conv1d` and :func:`t_mm` (oneDNN forward *and* backward):
  an organism's training costs 1.27x the CPU time it took under ``MKL_CBWR=AVX2``, where MKL's products would
  cost 2x (what remains is the attention kernel's small MKL products); the SAE step costs the same.
* **torch's** ``sqrt`` **is approximate on the CPU.**  It goes through MKL's vector maths, which (float32 and float64
  alike, even with ``COMPATIBLE``) is not correctly rounded (83% of float32 results are) and gave other bits
  natively than under qemu, the mark of an approximate-reciprocal instruction: qemu computes those exactly, and
  Intel and AMD silicon each approximate them their own way.  The optimisers use torch's
  *fused* Adam/AdamW (:class:`Adam`, :class:`AdamW`), whose square root is the exact IEEE instruction, and
  TransformerLens' LayerNorm, written with ``Tensor.sqrt``, is switched to the model's own ``F.layer_norm``
  (:func:`native_layer_norms`).  ``exp``, ``log``, ``tanh``, softmax, GELU, LayerNorm and norms were the same on
  all three CPUs under the pinning.

All of this applies while the pinning is in force (:func:`in_force`; ``COMPANION_NATIVE_NUMERICS=1`` opts out, and
so does any other value of the pinned variables): then these functions fall back to torch's own paths, as do
other dtypes and devices.  What is in force is part of :func:`companion.backbone.environment.numerics`, hence of
every cache key and figure sidecar.  ``tests/models/test_reproducible_numerics.py`` trains an organism and an SAE under
emulated Intel and AMD CPUs and checks the bits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from companion.backbone.environment import in_force, mkl_branch  # noqa: F401  (re-exported: what is in force)


def _onednn_linear_op() -> Any:
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch built without oneDNN
        return None


_LINEAR = _onednn_linear_op()


def dense_product() -> str:
    """Which library computes :func:`linear`, :func:`conv1d` and :func:`t_mm` on float32 CPU tensors now."""
    from companion.backbone.environment import dense_product as reported

    return reported() if _LINEAR is not None else "torch"


def _usable(*ts: Tensor | None) -> bool:
    return (
        all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in ts)
        and dense_product() == "onednn"
    )


def _nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a [m, k] @ b [n, k]ᵀ (+ bias [n]) with oneDNN.  A transposed ``b`` costs nothing; a transposed ``a`` is copied."""
    return _LINEAR(a, b, bias, "none", [], "")


def _tn(a: Tensor, b: Tensor) -> Tensor:
    """aᵀ b for a [N, p], b [N, q] -> [p, q] (a weight gradient): the narrower of a, b is the one transposed (copied)."""
    if a.shape[1] <= b.shape[1]:
        return _nt(a.t(), b.t())
    return _nt(b.t(), a.t()).t()


class _Linear(torch.autograd.Function):
    """y = x wᵀ + b for x [N, in], w [out, in] (``nn.Linear`` layout)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _nt(x, w, b)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        g = g.contiguous()
        gx = _nt(g, w.t()) if ctx.needs_input_grad[0] else None
        gw = _tn(g, x) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


class _Conv1D(torch.autograd.Function):
    """y = x w + b for x [N, in], w [in, out] (Hugging Face ``Conv1D`` layout, as GPT-2 stores its weights)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _nt(x, w.t(), b)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        g = g.contiguous()
        gx = _nt(g, w) if ctx.needs_input_grad[0] else None
        gw = _tn(x, g) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x [N, in] @ weight [out, in]ᵀ + bias [out]`` -> ``[N, out]`` (``F.linear``), with autograd."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear: expected x [N, in] and weight [out, in], got {tuple(x.shape)}, {tuple(weight.shape)}"
        )
    if not _usable(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x [N, in] @ weight [in, out] + bias [out]`` -> ``[N, out]`` (``torch.addmm(bias, x, weight)``), with autograd."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"conv1d: expected x [N, in] and weight [in, out], got {tuple(x.shape)}, {tuple(weight.shape)}"
        )
    if not _usable(x, weight, bias):
        return x @ weight if bias is None else torch.addmm(bias, x, weight)
    return _Conv1D.apply(x, weight, bias)


def t_mm(a: Tensor, b: Tensor) -> Tensor:
    """``a [N, p]ᵀ @ b [N, q]`` -> ``[p, q]`` (a weight gradient); no autograd."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"t_mm: expected a [N, p] and b [N, q], got {tuple(a.shape)}, {tuple(b.shape)}")
    if not _usable(a, b):
        return a.T @ b
    return _tn(a, b)


class _FusedWhenPinned:
    """Fused kernel while the pinning is in force; then every gradient's layout is made its parameter's first.

    torch's fused CPU Adam reads a gradient as if it had its parameter's strides: a transposed gradient (the SAE
    step sets ``.grad`` to transposed views) is silently misread (measured: wrong updates, no error).
    """

    def __init__(self, params, **kwargs):
        super().__init__(params, **({"fused": True} if in_force() else {}), **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        if self.defaults.get("fused"):
            for group in self.param_groups:
                for p in group["params"]:
                    g = p.grad
                    if g is not None and g.stride() != p.stride():
                        p.grad = torch.empty_like(p).copy_(g)
        return super().step(closure)


class Adam(_FusedWhenPinned, torch.optim.Adam):
    """``torch.optim.Adam``, fused (an exact square root: the same bits on Intel and AMD) under the pinning."""


class AdamW(_FusedWhenPinned, torch.optim.AdamW):
    """``torch.optim.AdamW``, fused (an exact square root: the same bits on Intel and AMD) under the pinning."""


def native_layer_norms(model: torch.nn.Module) -> int:
    """Make a TransformerLens ``TransformerBridge`` compute its LayerNorms with the wrapped model's own module.

    TransformerLens' default LayerNorm is written out with ``Tensor.sqrt`` (approximate on the CPU, see above:
    activations differed natively and under emulation).  Its ``use_native_layernorm_autograd`` option runs the
    Hugging Face module instead (``F.layer_norm``: exact IEEE arithmetic, and the very computation the model was
    trained with); the hooks still fire and an edit to ``hook_scale``/``hook_normalized`` still propagates.
    Does nothing when the pinning is not in force.  Returns how many normalisation layers were switched.
    """
    if not in_force():
        return 0
    n = 0
    for m in model.modules():
        if getattr(m, "use_native_layernorm_autograd", True) is False:
            setattr(m, "use_native_layernorm_autograd", True)  # noqa: B010  (a TransformerLens flag, not a Module field)
            n += 1
    return n
