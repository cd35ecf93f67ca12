"""Parameters of notebook 05 (planted-feature recovery by the SAEs of notebooks 01 and 02).

:class:`FeatureParams` inherits notebook 01's sweep settings (every profile gives the three classes one YAML anchor),
so notebook 05 finds notebook 01's SAEs in the cache instead of retraining them; its own fields say which planted
variables to read, how many held-out examples, the probes' settings and which SAEs to retrain at other seeds.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from companion.sae.architectures import ARCHITECTURES
from companion.sae.params import ParetoParams

VARIABLES = (
    "deployment",
    "user_view",
    "scratchpad",
    "kind:story",
    "kind:code",
    "kind:chat",
    "kind:fact",
    "kind:arithmetic",
    "kind:self",
    "kind:code_chat",
    "kind:syco_nlp",
    "kind:syco_phil",
    "kind:syco_pol",
)
"""The planted variables the organism's generator can label (companion.features.variables has each one's text)."""


class FeatureParams(ParetoParams):
    """Parameters of notebooks/05_planted_feature_recovery.ipynb: notebook 01's sweep plus the recovery settings."""

    variables: tuple[str, ...] = ("deployment", "user_view", "scratchpad", "kind:code", "kind:story")
    """Planted variables to recover: deployment, user_view, scratchpad, or kind:<document kind> (one against the rest)."""
    n_examples: int = 400
    """Held-out labelled examples per variable, half of each class (texts generated afresh, never seen in training)."""
    max_tokens: int = 128
    """Texts are cut to this many tokens (after the BOS) before the model reads them."""
    select_fraction: float = 0.5
    """Share of each class's examples that chooses latents and fits probes; the rest scores them (disjoint)."""
    ks: tuple[int, ...] = (1, 2, 5)
    """k of the k-sparse probes (SAEBench's protocol: k latents by class-mean difference, then a logistic probe)."""
    probe_c: float = 1.0
    """Inverse L2 strength of every logistic probe (k-sparse and dense), on standardised features."""
    n_floor_draws: int = 3
    """Random-direction dictionaries drawn for the floor (each as wide as the widest SAE); the band spans them."""
    reseed: dict[str, float] = Field(default_factory=dict)
    """Architecture -> the λ (or k) whose SAE is retrained at other seeds; empty: the middle of each sweep."""
    reseed_sae_seeds: tuple[int, ...] = (1000, 2000)
    """sae_seed of each retraining (the sweep's own SAE is the first seed), same data and organism."""
    reseed_targets: tuple[str, ...] = ()
    """Targets whose chosen SAEs are retrained (empty: every target)."""

    @model_validator(mode="after")
    def _check_features(self) -> FeatureParams:
        unknown = [v for v in self.variables if v not in VARIABLES]
        if not self.variables or unknown:
            raise ValueError(f"variables must name some of {list(VARIABLES)}; unknown: {unknown}")
        if self.n_examples < 8 or self.max_tokens < 8:
            raise ValueError("n_examples and max_tokens must be >= 8")
        if not 0 < self.select_fraction < 1:
            raise ValueError(f"select_fraction must be in (0, 1), got {self.select_fraction}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be a non-empty list of k >= 1, got {self.ks}")
        if self.probe_c <= 0 or self.n_floor_draws < 1:
            raise ValueError("probe_c must be > 0 and n_floor_draws >= 1")
        sweeps = self.sweep_settings()
        for arch, value in self.reseed.items():
            if arch not in ARCHITECTURES:
                raise ValueError(f"reseed: unknown architecture {arch!r}; choose from {list(ARCHITECTURES)}")
            if float(value) not in sweeps[arch]:
                raise ValueError(
                    f"reseed: {arch} {value} is not in its sweep {list(sweeps[arch])} (the sweep's SAE "
                    "is the first seed)"
                )
        if self.sae_seed in self.reseed_sae_seeds or len(set(self.reseed_sae_seeds)) != len(self.reseed_sae_seeds):
            raise ValueError("reseed_sae_seeds must be distinct and differ from sae_seed")
        stray = [t for t in self.reseed_targets if t not in self.targets]
        if stray:
            raise ValueError(f"reseed_targets {stray} are not among targets")
        return self

    def sweep_settings(self) -> dict[str, tuple[float, ...]]:
        """Architecture -> its sweep's λ (or k) values, as trained by notebook 01."""
        return {
            "baseline": tuple(map(float, self.lambdas_baseline)),
            "gated": tuple(map(float, self.lambdas_gated)),
            "jumprelu": tuple(map(float, self.lambdas_jumprelu)),
            "topk": tuple(map(float, self.topk_ks)),
            "batchtopk": tuple(map(float, self.batchtopk_ks)),
        }

    def reseed_choice(self) -> dict[str, float]:
        """Architecture -> the setting retrained at other seeds: ``reseed``, else the middle of its sweep."""
        out = {}
        for arch, values in self.sweep_settings().items():
            if arch in self.reseed:
                out[arch] = float(self.reseed[arch])
            elif values:
                out[arch] = sorted(values)[len(values) // 2]
        return out
