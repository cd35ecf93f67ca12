"""What a sweep trains: one :class:`SAESpec` per SAE, and the sweeps of notebooks 01 and 02.

The gated paper's comparison (Rajamanoharan et al. 2024, arXiv:2404.16014, §5.1) is at equal compute: a gated step
costs ~1.5 baseline steps, so the baseline gets 1.5 times the gated width (:func:`equal_compute_sweep`).  The
successors (JumpReLU arXiv:2407.14435, TopK arXiv:2406.04093, BatchTopK arXiv:2412.06410) cost about a baseline step
each and get the baseline's width (:func:`successor_sweep`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from companion.sae.architectures import ARCHITECTURES


@dataclasses.dataclass(frozen=True)
class SAESpec:
    """One member of a sweep."""

    architecture: str
    """A name of companion.sae.architectures.ARCHITECTURES: "baseline" (ReLU + L1), "gated", "jumprelu", "topk",
    "batchtopk"."""
    n_latents: int
    """Dictionary size M."""
    lam: float = 0.0
    """Sparsity coefficient λ (on ‖f‖₁, ‖ReLU(π_gate)‖₁ or JumpReLU's ‖f‖₀; our L2 is not divided by d, see
    companion.sae.autoencoders); 0 for TopK and BatchTopK, whose sparsity is k."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The architecture's own constructor arguments (k for TopK and BatchTopK, JumpReLU's bandwidth, ...)."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown SAE architecture {self.architecture!r}; choose one of {list(ARCHITECTURES)}")

    @property
    def setting(self) -> str:
        """The sparsity setting as a label: "λ=2" or "k=32"."""
        if ARCHITECTURES[self.architecture].sparsity_setting == "k":
            return f"k={self.options.get('k')}"
        return f"λ={self.lam:g}"

    @property
    def name(self) -> str:
        if ARCHITECTURES[self.architecture].sparsity_setting == "k":
            return f"{self.architecture}_M{self.n_latents}_k{self.options.get('k')}"
        return f"{self.architecture}_M{self.n_latents}_lam{self.lam:g}"


def equal_compute_sweep(
    gated_latents: int,
    lambdas_gated: Sequence[float],
    lambdas_baseline: Sequence[float],
    baseline_width_factor: float = 1.5,
) -> list[SAESpec]:
    """The paper's comparison: gated SAEs of width M and baselines of width ``baseline_width_factor``·M."""
    if gated_latents < 1 or baseline_width_factor <= 0:
        raise ValueError("gated_latents must be >= 1 and baseline_width_factor > 0")
    m_base = int(round(gated_latents * baseline_width_factor))
    return [SAESpec("baseline", m_base, float(l)) for l in lambdas_baseline] + [
        SAESpec("gated", gated_latents, float(l)) for l in lambdas_gated
    ]


def successor_sweep(
    n_latents: int,
    *,
    lambdas_jumprelu: Sequence[float] = (),
    topk_ks: Sequence[int] = (),
    batchtopk_ks: Sequence[int] = (),
    jumprelu: dict[str, Any] | None = None,
    topk: dict[str, Any] | None = None,
    batchtopk: dict[str, Any] | None = None,
) -> list[SAESpec]:
    """JumpReLU SAEs at each λ, TopK and BatchTopK SAEs at each k, all of width ``n_latents``, in that order;
    ``jumprelu`` / ``topk`` / ``batchtopk`` are constructor arguments shared by each architecture's members."""
    if n_latents < 1:
        raise ValueError("n_latents must be >= 1")
    return (
        [SAESpec("jumprelu", n_latents, float(l), dict(jumprelu or {})) for l in lambdas_jumprelu]
        + [SAESpec("topk", n_latents, 0.0, {**(topk or {}), "k": int(k)}) for k in topk_ks]
        + [SAESpec("batchtopk", n_latents, 0.0, {**(batchtopk or {}), "k": int(k)}) for k in batchtopk_ks]
    )
