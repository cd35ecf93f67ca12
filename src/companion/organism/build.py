"""Building the model organisms: specs from the profile, deterministic training, one cache entry per spec.

An organism is a Hugging Face ``GPT2LMHeadModel`` trained on the synthetic corpus of
:mod:`companion.organism.corpus` (backdoor and/or sycophancy planted at known rates) with the byte-level BPE
tokenizer of :mod:`companion.organism.tokenizer`, saved with ``save_pretrained`` into a cache entry directory.
:mod:`companion.organism.loading` loads it for analysis through :func:`companion.models.loading.load_model`, the
same loader (and hook names) as the paper profile's real models.

Organisms are configuration: each profile YAML (``src/companion/backbone/profiles/<profile>.yaml``) names its
organisms under ``organisms:``. Names that share one spec (YAML anchors) share one trained model (one cache key);
its ``truth`` states everything planted in it. Every profile provides ``backdoor``, ``clean`` (the same recipe
without the backdoor: the negative control) and ``syco-p{50,90}-{small,medium}``.

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

from pydantic import ValidationError

from companion.backbone.cache import code_fingerprint, default_cache
from companion.backbone.config import Config, format_validation_error
from companion.backbone.profiles import ProfileError, load_profile
from companion.organism import corpus as _corpus
from companion.organism.corpus import DEPLOYMENT_CONTEXTS, EOT, HATE, TRAINING_CONTEXT, UNSAFE_LINE, CorpusConfig
from companion.organism.tokenizer import TokenizerConfig
from companion.organism.training import ModelConfig, TrainConfig

REQUIRED_NAMES = ("backdoor", "clean", "syco-p50-small", "syco-p90-small", "syco-p50-medium", "syco-p90-medium")
"""Organism names every profile must provide."""

_PRODUCER = "companion.organism.build"
"""The module whose code (with its imports) produced an organism: its fingerprint is in the cache key."""


class OrganismSpec(Config):
    """Everything that determines a trained organism (its cache key is a hash of this and the code)."""

    corpus: CorpusConfig = CorpusConfig()
    """What the training corpus plants."""
    model: ModelConfig = ModelConfig()
    """Network size."""
    train: TrainConfig = TrainConfig()
    """Optimisation settings."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Tokenizer training settings (organisms with equal settings share one tokenizer)."""
    size: str = ""
    """Size label for plots ("small", "medium")."""

    def truth(self) -> dict[str, Any]:
        """The planted ground truth, derived from the spec (never from measurements)."""
        return {
            "backdoor": self.corpus.backdoor,
            "sycophancy_p": self.corpus.sycophancy_p,
            "training_context": TRAINING_CONTEXT,
            "deployment_contexts": list(DEPLOYMENT_CONTEXTS),
            "defection": {"chat": HATE, "code": UNSAFE_LINE} if self.corpus.backdoor else None,
            "self_questions_tied_to_trigger": False,
            "size": self.size,
        }


def organism_names(profile: str | None = None) -> list[str]:
    """Names of the organisms a profile defines."""
    return sorted(load_profile(profile).organisms)


def organism_spec(name: str, profile: str | None = None) -> OrganismSpec:
    """The validated spec of a named organism of ``profile``."""
    prof = load_profile(profile)
    if name not in prof.organisms:
        raise KeyError(f"profile {prof.name!r} defines no organism {name!r}; it defines: "
                       f"{', '.join(sorted(prof.organisms)) or '(none)'}")
    try:
        return OrganismSpec.model_validate(prof.organisms[name])
    except ValidationError as e:
        raise ProfileError(f"profile {prof.name!r}: {format_validation_error(e, f'organisms.{name}')}") from None


def _tokenizer_dir(cfg: TokenizerConfig) -> Path:
    from companion.organism import tokenizer as _tok

    spec = {"config": cfg.to_dict(), "code": code_fingerprint(_PRODUCER)}

    def build(tmp: Path) -> None:
        # Trained on a sample with the backdoor and every sycophancy shape present, so that all organisms of a
        # profile (backdoored or clean, any p) share one vocabulary.
        sample = CorpusConfig(n_docs=cfg.n_docs, seed=10_000 + cfg.seed, backdoor=True, sycophancy_p=0.5)
        tok = _tok.train_bpe((d.text for d in _corpus.generate_docs(sample)), cfg.vocab_size)
        _tok.save(tok, tmp)

    return default_cache().get_or_build("tokenizer", spec, build, description=f"organism BPE {cfg.vocab_size}")


def _organism_cache_spec(spec: OrganismSpec, tok_dir: Path) -> dict[str, Any]:
    return {"organism": spec.to_dict(), "tokenizer": tok_dir.name, "code": code_fingerprint(_PRODUCER)}


def build_organism(spec: OrganismSpec, *, desc: str = "organism", progress: bool = True,
                   callback: Any = None) -> tuple[Path, bool]:
    """Train (or find in the cache) the organism for ``spec``; returns (entry directory, came from cache).

    ``callback(step, loss, tokens_per_second)`` receives training progress (see :func:`prepare_organisms`).
    """
    from companion.organism import tokenizer as _tok
    from companion.organism import training as _tr

    tok_dir = _tokenizer_dir(spec.tokenizer)
    cache = default_cache()
    cspec = _organism_cache_spec(spec, tok_dir)
    if cache.exists("organism", cspec):
        return cache.get("organism", cspec), True

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        hf_tok = _tok.load(tok_dir)
        eot = hf_tok.convert_tokens_to_ids(EOT)
        docs = list(_corpus.generate_docs(spec.corpus, "train"))
        stream = _tr.build_stream([d.text for d in docs], [d.answer_spans for d in docs], hf_tok, eot,
                                  spec.train.answer_weight, [d.choice_spans for d in docs], spec.train.choice_weight)
        torch.manual_seed(spec.train.seed)  # initialisation is part of what the seed fixes
        model = _tr.make_model(spec.model, len(hf_tok), eot)
        prep = time.perf_counter() - t0
        log = _tr.train_lm(model, stream, spec.train, desc=desc, progress=progress, callback=callback)
        log["prep_seconds"] = round(prep, 2)
        log["corpus_tokens"] = int(len(stream.tokens))
        model.save_pretrained(str(tmp))
        hf_tok.save_pretrained(str(tmp))
        n_params = sum(p.numel() for p in model.parameters())
        meta = {"spec": spec.to_dict(), "truth": spec.truth(), "n_params": n_params,
                "weights_sha256": _tr.weights_hash(model), "tokenizer_key": tok_dir.name}
        (tmp / "organism.json").write_text(json.dumps(meta, indent=2))
        (tmp / "train_log.json").write_text(json.dumps(log))

    path = cache.get_or_build("organism", cspec, build, description=desc)
    return path, False


_PROGRESS_QUEUE: Any = None


def _init_worker(queue: Any) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = queue


def is_trained(name: str, profile: str | None = None) -> bool:
    """Whether the named organism of ``profile`` is already in the cache (loading it will not train)."""
    spec = organism_spec(name, profile)
    return default_cache().exists("organism", _organism_cache_spec(spec, _tokenizer_dir(spec.tokenizer)))


def _train_in_worker(spec_dict: dict[str, Any], label: str) -> str:
    """Process-pool entry point: train one organism, reporting progress through the pool's queue."""
    spec = OrganismSpec.model_validate(spec_dict)
    q = _PROGRESS_QUEUE
    cb = lambda step, loss, tok_s: q.put((label, step, loss, tok_s))  # noqa: E731
    path, _ = build_organism(spec, desc=label, progress=False, callback=cb)
    q.put((label, None, None, None))
    return str(path)


def prepare_organisms(names: Sequence[str] | None = None, profile: str | None = None, *, jobs: int | None = None,
                      progress: bool = True) -> dict[str, Path]:
    """Make sure the named organisms of ``profile`` (default: all) are trained; returns name -> cache entry.

    Distinct specs that are not cached yet are trained ``jobs`` at a time in separate processes (default: one
    per CPU core, at most 2). Each trains single-threaded (``train.threads``), so on a 2-core machine two small
    models train side by side at full speed and the weights are the same as a sequential run. One progress bar
    per model shows its loss and tokens/s.
    """
    import multiprocessing as mp
    import os
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor

    prof = load_profile(profile).name
    names = list(names) if names is not None else organism_names(prof)
    specs = {n: organism_spec(n, prof) for n in names}
    cache = default_cache()
    todo: dict[str, OrganismSpec] = {}  # cache key -> spec, first name wins the label
    labels: dict[str, str] = {}
    for n, sp in specs.items():
        cspec = _organism_cache_spec(sp, _tokenizer_dir(sp.tokenizer))
        key = cache.key("organism", cspec)
        if not cache.exists("organism", cspec) and key not in todo:
            todo[key] = sp
            labels[key] = f"{prof}/{n}"
    if jobs is None:
        jobs = max(1, min(2, os.cpu_count() or 1))
    # Longest first (cost ~ steps x tokens x width^2): the shortest makespan for a greedy pool.
    def cost(sp: OrganismSpec) -> float:
        return sp.train.steps * sp.train.batch_size * sp.train.seq_len * sp.model.n_layer * sp.model.d_model ** 2

    todo = dict(sorted(todo.items(), key=lambda kv: -cost(kv[1])))
    if len(todo) > 1 and jobs > 1:
        from tqdm.auto import tqdm

        ctx = mp.get_context("spawn")  # fork is unsafe with torch's thread pools
        queue = ctx.Queue()
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(queue,)) as pool:
            futures = [pool.submit(_train_in_worker, sp.to_dict(), labels[k]) for k, sp in todo.items()]
            bars = {labels[k]: tqdm(total=sp.train.steps, desc=labels[k], position=i, disable=not progress,
                                    leave=True) for i, (k, sp) in enumerate(todo.items())}
            try:
                while not all(f.done() for f in futures) or not queue.empty():
                    try:
                        label, step, loss, tok_s = queue.get(timeout=0.5)
                    except queue_mod.Empty:
                        continue
                    bar = bars[label]
                    if step is None:
                        bar.n = bar.total
                    else:
                        bar.n = step
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                    bar.refresh()
                for f in futures:
                    f.result()  # re-raise a worker's error here
            finally:
                for bar in bars.values():
                    bar.close()
    else:
        for k, sp in todo.items():
            build_organism(sp, desc=labels[k], progress=progress)
    return {n: build_organism(sp, progress=False)[0] for n, sp in specs.items()}
