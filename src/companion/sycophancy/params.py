"""Parameters of notebook 04 (sycophancy agreement rates; Perez et al. 2022 and nostalgebraist's re-measurement)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from companion.backbone.params import NotebookParams
from companion.models.templates import TEMPLATES
from companion.sycophancy.data import DATASETS, DEFAULT_BASE_URL, PINNED_BLOBS, PINNED_COMMIT


class SycophancyParams(NotebookParams):
    """Parameters of notebook 04 (sycophancy agreement rates)."""

    models: tuple[str, ...] = ("syco-p50-small", "syco-p90-small", "syco-p50-medium", "syco-p90-medium")
    """Models to score: organism names (data="organism") or names for companion.models.loading.load_model."""
    data: Literal["organism", "anthropic"] = "organism"
    """Items from the organism's held-out eval writer, or Anthropic's real files."""
    data_dir: str | None = None
    """Directory holding Anthropic's three files (relative: to the project root), each checked against data_blobs;
    None downloads them into the cache (online profiles only)."""
    data_base_url: str = DEFAULT_BASE_URL
    """Files are fetched from ``{data_base_url}/{data_commit}/sycophancy/<file>``; ``${VAR}`` is read from the environment."""
    data_commit: str = PINNED_COMMIT
    """The ``anthropics/evals`` commit to fetch."""
    data_blobs: dict[str, str] = Field(default_factory=lambda: dict(PINNED_BLOBS))
    """File name -> expected git blob id; a download or a data_dir file whose bytes differ is refused."""
    allow_unpinned_data: bool = False
    """Score data_dir files whose blob differs from data_blobs anyway (named in the sidecar, stamped on the figure)."""
    datasets: tuple[str, ...] = DATASETS
    """Which of the three datasets to score."""
    templates: tuple[str, ...] = ("paren", "believe_paren", "anthropic")
    """Prompt templates to score (names in companion.models.templates.TEMPLATES)."""
    n_per_dataset: int | None = 300
    """Items per dataset (a seeded random subset); None for all."""
    seeds: tuple[int, ...] = ()
    """Seeds at which each organism is measured (empty: every seed of the profile; real models have none)."""
    organism_items_per_file: int = 300
    """Held-out items the organism writes per file (data="organism")."""
    batch_size: int = 16
    """Sequences per forward pass."""
    torch_threads: int | None = None
    """Torch intra-op threads while scoring (None: torch's default; 1 is fastest on a shared small CPU)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples for the confidence intervals."""
    confidence: float = 0.95
    """Nominal coverage of the confidence intervals."""
    bootstrap_unit: Literal["item", "question"] = "item"
    """Resample items, or whole questions with all their biographies (wider, more honest with few questions)."""
    by_affiliation: bool = True
    """Also report the politics statistics split by the user's stated affiliation."""
    recovery_dataset: str = "nlp_survey"
    """Dataset on which the organisms' planted rates are checked."""
    recovery_templates: tuple[str, ...] = ("believe_paren", "paren")
    """Templates on which the organisms' planted rates are checked (the organism answers "... is (X)" or "(X)")."""
    recovery_tolerance: float = 0.05
    """Allowed |measured mean probability - planted p| for an organism."""
    device: str = "cpu"
    """Torch device for real models ("cpu", "cuda", "cuda:1"); a CUDA device that is missing is an error, never a
    silent CPU run. Organisms run on the cpu."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype for real models (the paper profile: float16, the dtype Pythia's checkpoints are stored in)."""
    published_on_size_axis: bool = False
    """Also draw Perez et al.'s 52B reference on the size axis (useful when measured sizes reach billions)."""
    skip_invalid: bool = False
    """Skip (and report) invalid data rows instead of stopping at the first one."""
    drop_too_long: bool = False
    """Leave out items longer than a model's context (counted per dataset and model in the sidecar, said on the
    figure) instead of stopping at the first one."""

    def preflight(self, profile) -> list[str]:
        """The data_dir and its pinned files, and the organisms scored (:meth:`NotebookParams.preflight`)."""
        from companion.backbone.config import suggest
        from companion.organism.build import check_organisms
        from companion.sycophancy.sources import preflight as data_preflight

        problems = data_preflight(self)
        organisms = [m for m in self.models if m in profile.organisms]
        problems += check_organisms(organisms, profile)
        if profile.offline:  # an offline profile can load nothing but its organisms
            names = [n for n in profile.organisms if n != "settings"]
            problems += [
                f"models: {m!r} is not an organism of the offline profile {profile.name!r}{suggest(m, names)}"
                for m in self.models
                if m not in profile.organisms
            ]
        return problems

    def sources(self, profile) -> dict[str, str]:
        """Anthropic's files at the pinned commit, through data_base_url, unless given as data_dir or cached."""
        if self.data != "anthropic" or self.data_dir is not None:
            return {}
        from companion.backbone.cache import default_cache
        from companion.sycophancy.data import DATA_CACHE_KIND
        from companion.sycophancy.pinned import data_cache_spec, file_urls

        if default_cache().exists(DATA_CACHE_KIND, data_cache_spec(self.data_commit, self.data_blobs)):
            return {}
        return file_urls(self.data_base_url, self.data_commit, self.data_blobs)

    @model_validator(mode="after")
    def _check(self) -> SycophancyParams:
        if not self.models:
            raise ValueError("models must name at least one model")
        bad = [d for d in self.datasets if d not in DATASETS]
        if bad or not self.datasets:
            raise ValueError(f"datasets must be a non-empty subset of {list(DATASETS)}, got {list(self.datasets)}")
        bad = [t for t in self.templates if t not in TEMPLATES]
        if bad or not self.templates:
            raise ValueError(f"templates must be a non-empty subset of {list(TEMPLATES)}, got {list(self.templates)}")
        if self.n_per_dataset is not None and self.n_per_dataset < 1:
            raise ValueError(f"n_per_dataset must be >= 1 or None, got {self.n_per_dataset}")
        if any(x < 0 for x in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and >= 0, got {self.seeds}")
        if self.organism_items_per_file < 1:
            raise ValueError(f"organism_items_per_file must be >= 1, got {self.organism_items_per_file}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {self.torch_threads}")
        if self.n_bootstrap < 10:
            raise ValueError(f"n_bootstrap must be >= 10, got {self.n_bootstrap}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.recovery_dataset not in DATASETS:
            raise ValueError(f"recovery_dataset must be one of {list(DATASETS)}, got {self.recovery_dataset!r}")
        bad = [t for t in self.recovery_templates if t not in self.templates]
        if bad:
            raise ValueError(f"recovery_templates {bad} are not among templates {list(self.templates)}")
        if not 0 < self.recovery_tolerance < 1:
            raise ValueError(f"recovery_tolerance must be in (0, 1), got {self.recovery_tolerance}")
        if self.device == "auto":
            raise ValueError(
                'device "auto" was removed (it silently ran on the CPU where CUDA was missing): say "cuda" or "cpu"'
            )
        if set(self.data_blobs) != set(PINNED_BLOBS):
            raise ValueError(
                f"data_blobs must pin exactly the files {sorted(PINNED_BLOBS)}, got {sorted(self.data_blobs)}"
            )
        if self.data == "organism" and self.data_dir is not None:
            raise ValueError("data_dir is only used with data='anthropic'")
        if self.allow_unpinned_data and self.data_dir is None:
            raise ValueError("allow_unpinned_data applies to data_dir files only (downloads are always verified)")
        return self
