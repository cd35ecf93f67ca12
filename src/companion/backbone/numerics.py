"""Dense products that every x86-64 CPU with AVX2 computes bit for bit the same, Intel or AMD, and fast.

Why this module exists (issue 22; measured on emulated CPUs, ``qemu-x86_64 -cpu Haswell|EPYC``, and natively):

* MKL picks its kernels by CPU *vendor*: on AMD it ignores ``MKL_CBWR=AVX2`` (its verbose mode reports
  ``CNR:AUTO``) and runs other sgemm kernels, so a matrix product can differ between an Intel and an AMD CPU.
  Only ``MKL_CBWR=COMPATIBLE`` is honoured on both, and it is slow: the organism's training step took twice as
  long (192 -> 382 ms of CPU on the ``backdoor`` organism).
* oneDNN dispatches by instruction set, not vendor: capped at AVX2 (``ONEDNN_MAX_CPU_ISA``) its fp32 matmul
  (``brg_matmul:avx2``) gave the same bits natively and on both emulated CPUs for every shape the organisms and
  SAEs use, at MKL's full AVX2 speed.

So :mod:`companion` pins ``MKL_CBWR=COMPATIBLE`` (every product that still reaches MKL, such as the attention
kernel's, the SAE's sparse products and TransformerLens' forward passes, is then vendor-neutral), and the hot
products of training go through :func:`linear` and :func:`conv1d` here, which run oneDNN's matmul directly (forward
and backward).  On other dtypes or devices, or where torch has no oneDNN, they fall back to torch's own product
(:data:`DENSE_PRODUCT` says which is in force; it is part of :func:`companion.backbone.environment.numerics`).

Square roots: torch's contiguous ``sqrt`` goes through MKL's vector maths, whose results are neither correctly
rounded (float32 *and* float64) nor the same natively and under emulation even with ``COMPATIBLE`` (an
approximate instruction, whose bits differ between Intel and AMD silicon).  The optimisers therefore use torch's
*fused* Adam/AdamW kernels (:class:`Adam`, :class:`AdamW`), which compute the square root with the exact IEEE
instruction.
"""
from __future__ import annotations

import torch
from torch import Tensor

class _StrideSafeFused:
    """Makes every gradient's layout match its parameter's before the fused kernel runs.

    torch's fused CPU Adam reads a gradient as if it had its parameter's strides: a transposed gradient (the SAE
    step sets ``.grad`` to transposed views) is silently misread (measured: wrong updates, not an error).
    """

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is not None and g.stride() != p.stride():
                    p.grad = torch.empty_like(p).copy_(g)
        return super().step(closure)


class Adam(_StrideSafeFused, torch.optim.Adam):
    """``torch.optim.Adam`` with its fused kernel: an exact square root, the same bits on Intel and AMD."""

    def __init__(self, params, **kwargs):
        super().__init__(params, fused=True, **kwargs)


class AdamW(_StrideSafeFused, torch.optim.AdamW):
    """``torch.optim.AdamW`` with its fused kernel: an exact square root, the same bits on Intel and AMD."""

    def __init__(self, params, **kwargs):
        super().__init__(params, fused=True, **kwargs)


def _onednn_linear_op():
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch built without oneDNN
        return None


_LINEAR = _onednn_linear_op()

DENSE_PRODUCT = "onednn" if _LINEAR is not None else "torch"
"""Which library computes :func:`linear` and :func:`conv1d` on float32 CPU tensors."""


def _usable(*ts: Tensor | None) -> bool:
    return _LINEAR is not None and all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu")
                                       for t in ts)


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
    """``x [N, in] @ weight [out, in]ᵀ + bias [out]`` -> ``[N, out]``, vendor-neutral on float32 CPU tensors.

    The same value as ``torch.nn.functional.linear`` (up to the order of floating-point additions), with autograd.
    """
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: expected x [N, in] and weight [out, in], got {tuple(x.shape)}, {tuple(weight.shape)}")
    if not _usable(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x [N, in] @ weight [in, out] + bias [out]`` -> ``[N, out]`` (``torch.addmm(bias, x, weight)``), vendor-neutral."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"conv1d: expected x [N, in] and weight [in, out], got {tuple(x.shape)}, {tuple(weight.shape)}")
    if not _usable(x, weight, bias):
        return x @ weight if bias is None else torch.addmm(bias, x, weight)
    return _Conv1D.apply(x, weight, bias)


def t_mm(a: Tensor, b: Tensor) -> Tensor:
    """``a [N, p]ᵀ @ b [N, q]`` -> ``[p, q]`` (a weight gradient), vendor-neutral on float32 CPU tensors; no autograd."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"t_mm: expected a [N, p] and b [N, q], got {tuple(a.shape)}, {tuple(b.shape)}")
    if not _usable(a, b):
        return a.T @ b
    return _tn(a, b)


def native_layer_norms(model: torch.nn.Module) -> int:
    """Make a TransformerLens ``TransformerBridge`` compute its LayerNorms with the wrapped model's own module.

    TransformerLens' default LayerNorm is written out in Python with ``Tensor.sqrt``, which on the CPU goes through
    MKL's vector maths (not correctly rounded; an approximate instruction whose bits differ between Intel and AMD
    silicon: activations differed natively and under emulation).  Its ``use_native_layernorm_autograd`` option
    runs the Hugging Face module instead (``F.layer_norm``, exact IEEE arithmetic); the hooks still fire and an edit
    to ``hook_scale``/``hook_normalized`` still propagates.  Returns how many normalisation layers were switched.
    """
    n = 0
    for m in model.modules():
        if hasattr(m, "use_native_layernorm_autograd") and not getattr(m, "use_native_layernorm_autograd"):
            m.use_native_layernorm_autograd = True
            n += 1
    return n
