"""Loading a trained organism for analysis, and the text it was trained on as token batches.

:func:`load_organism` trains the named organism of a profile on first use (:mod:`companion.organism.build`) and
loads it through :func:`companion.models.loading.load_model` as a TransformerLens ``TransformerBridge``, with its
planted ground truth, training log and weights hash.  :meth:`Organism.token_batches` streams fresh corpus text
(held-out questions only, by default) for activation stores: the SAE notebooks train on it, so this module is in
their cache keys.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from companion.organism import corpus as _corpus
from companion.organism.build import build_organism, organism_label, organism_seeds, organism_spec
from companion.organism.corpus import EOT, CorpusConfig
from companion.organism.workers import prepare_organisms


@dataclasses.dataclass
class Organism:
    """A trained organism loaded for analysis."""

    name: str
    """The name it was requested by (e.g. "backdoor")."""
    seed: int
    """The seed it was trained with (corpus sample, initialisation, data order)."""
    spec: dict[str, Any]
    """Its spec as a plain dict (corpus, model, train, tokenizer, size)."""
    path: Path
    """The cache entry: a Hugging Face model directory (config, weights, tokenizer) plus logs."""
    truth: dict[str, Any]
    """Planted ground truth: backdoor (bool), sycophancy_p, contexts, defection markers, size."""
    n_params: int
    """Number of trainable parameters."""
    train_log: dict[str, Any]
    """Training log: step, loss, lr, seconds lists; tokens_per_second, seconds, final_loss."""
    weights_sha256: str
    """Hash of the trained weights (bit-identical for the same spec and seed)."""
    model: Any
    """The ``TransformerBridge`` (eval mode, CPU)."""
    tokenizer: Any
    """The ``PreTrainedTokenizerFast`` (also ``model.tokenizer``)."""
    from_cache: bool
    """True when this load found the model already trained in the cache."""

    def hf_model(self) -> torch.nn.Module:
        """The same weights as a plain ``GPT2LMHeadModel`` (eval mode), loaded once; used for fast generation."""
        if getattr(self, "_hf", None) is None:
            from transformers import GPT2LMHeadModel

            from companion.models.hub import hub_forced_offline

            with hub_forced_offline():
                self._hf = GPT2LMHeadModel.from_pretrained(str(self.path)).eval()
        return self._hf

    def token_batches(
        self,
        n_tokens: int,
        seq_len: int,
        batch_size: int,
        split: Literal["heldout", "train"] = "heldout",
        seed: int = 0,
    ) -> Iterator[torch.Tensor]:
        """Batches ``[batch_size, seq_len]`` of corpus text for activation stores, until ``n_tokens`` are given.

        Text is freshly generated from this organism's corpus recipe (held-out questions only for
        ``split="heldout"``), documents separated by ``<|endoftext|>``; each row starts with ``<|endoftext|>``
        (the BOS a ``to_tokens`` prompt has) followed by ``seq_len - 1`` consecutive stream tokens. Only full
        batches are yielded: ``ceil(n_tokens / (batch_size * seq_len))`` of them.
        """
        if min(n_tokens, seq_len, batch_size) < 1 or seq_len < 2:
            raise ValueError("n_tokens, batch_size >= 1 and seq_len >= 2 required")
        n_batches = -(-n_tokens // (batch_size * seq_len))
        base = CorpusConfig.model_validate(self.spec["corpus"])
        eot = self.tokenizer.convert_tokens_to_ids(EOT)
        backend = self.tokenizer.backend_tokenizer
        buf: list[int] = []
        rows: list[list[int]] = []
        chunk = 0
        made = 0
        while made < n_batches:
            cfg = base.model_copy(update=dict(n_docs=512, seed=1_000_003 * (base.seed + 1) + 1009 * seed + chunk))
            chunk += 1
            texts = [d.text for d in _corpus.generate_docs(cfg, split)]
            for e in backend.encode_batch(texts):
                buf.append(eot)
                buf.extend(e.ids)
            while len(buf) >= seq_len - 1 and made < n_batches:
                rows.append([eot] + buf[: seq_len - 1])
                del buf[: seq_len - 1]
                if len(rows) == batch_size:
                    yield torch.tensor(rows, dtype=torch.long)
                    rows = []
                    made += 1

    def __repr__(self) -> str:
        return (
            f"Organism({self.name!r}, seed={self.seed}, truth={{backdoor={self.truth['backdoor']}, "
            f"sycophancy_p={self.truth['sycophancy_p']}}}, n_params={self.n_params:,}, path={str(self.path)!r})"
        )


def load_organism(name: str, profile: str | None = None, *, seed: int | None = None, progress: bool = True) -> Organism:
    """Load a named organism of ``profile`` (default: $COMPANION_PROFILE or "organism") at ``seed`` (default: the
    profile's first seed), training it on first use."""
    from companion.backbone.profiles import load_profile
    from companion.models.loading import load_model
    from companion.organism import tokenizer as _tok

    prof_name = load_profile(profile).name
    spec = organism_spec(name, prof_name, seed)
    path, cached = build_organism(spec, desc=f"{prof_name}/{organism_label(name, spec.seed)}", progress=progress)
    meta = json.loads((path / "organism.json").read_text())
    log = json.loads((path / "train_log.json").read_text())
    model = load_model(path)
    return Organism(
        name=name,
        seed=spec.seed,
        spec=meta["spec"],
        path=path,
        truth=meta["truth"],
        n_params=int(meta["n_params"]),
        train_log=log,
        weights_sha256=meta["weights_sha256"],
        model=model,
        tokenizer=getattr(model, "tokenizer", None) or _tok.load(path),
        from_cache=cached,
    )


def load_organisms(
    names: Sequence[str], profile: str | None = None, *, seeds: Sequence[int] | None = None, progress: bool = True
) -> dict[tuple[str, int], Organism]:
    """Every named organism at every seed (default: all of the profile's seeds), keyed ``(name, seed)``.

    Trains what is missing first (:func:`companion.organism.workers.prepare_organisms`, two at a time); names
    that share one trained model at a seed share one loaded model too.
    """
    from companion.backbone.profiles import load_profile

    prof_name = load_profile(profile).name
    seeds = list(seeds) if seeds is not None else list(organism_seeds(prof_name))
    paths = prepare_organisms(names, prof_name, seeds=seeds, progress=progress)
    out: dict[tuple[str, int], Organism] = {}
    by_path: dict[Path, Organism] = {}
    for key, path in paths.items():
        if path in by_path:
            out[key] = dataclasses.replace(by_path[path], name=key[0])
        else:
            by_path[path] = out[key] = load_organism(key[0], prof_name, seed=key[1], progress=False)
    return out
