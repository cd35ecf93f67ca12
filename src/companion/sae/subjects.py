"""The model an SAE sweep reads, and the text it reads it on: an organism and its corpus, or a real model and a
streamed Hugging Face text dataset (Rajamanoharan et al. 2024 train on the model's pretraining distribution).

Both kinds give token batches ``[batch, seq]`` whose rows start with BOS, split into three parts that never share
a document: "train", and two held-out parts for the evaluation (:mod:`companion.sae.experiment`): "heldout" (the
activations behind L0, FVU and γ) and "heldout_lm" (the tokens behind loss recovered).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

from torch import Tensor

from companion.models.batches import pack_rows
from companion.sae.params import ORGANISM_PREFIX


# ------------------------------------------------------------------------------------------ subjects
@dataclasses.dataclass
class Subject:
    """A model and its text source."""

    name: str
    """As written in the target."""
    key: str
    """What identifies the model's weights in cache specs (organism cache key, or the model name)."""
    model: Any
    """The TransformerBridge."""
    exclude_token_ids: tuple[int, ...]
    """Special tokens (BOS / end-of-text / padding) whose positions are not trained on or spliced."""
    token_batches: Callable[[int, int, int, str, int], Iterator[Tensor]]
    """(n_tokens, seq_len, batch_size, split "train"|"heldout"|"heldout_lm", seed) -> [batch, seq] LongTensors."""


SPLITS = ("train", "heldout", "heldout_lm")
"""The three disjoint parts of a subject's text."""

_ORGANISM_LM_SEED = 7_919_000
"""Organism "heldout_lm" text is the held-out recipe generated from seeds offset by this (disjoint streams)."""


_SUBJECTS: dict[tuple[str, str, str], Subject] = {}


def load_subject(
    name: str, profile: str | None = None, text_datasets: dict[str, str] | None = None, device: str = "cpu"
) -> Subject:
    """Load (once per process) an organism or real model with its token source."""
    from companion.backbone.runtime import context
    from companion.models.loading import check_device

    device = str(check_device(device))  # a missing CUDA device is an error, for organisms and real models alike
    profile = profile or context().profile.name
    memo = (name, profile, device)
    if memo in _SUBJECTS:
        return _SUBJECTS[memo]
    if name.startswith(ORGANISM_PREFIX):
        from companion.organism.loading import load_organism

        org = load_organism(name[len(ORGANISM_PREFIX) :], profile)
        eot = int(org.tokenizer.convert_tokens_to_ids("<|endoftext|>"))

        def batches(n_tokens: int, seq_len: int, batch_size: int, split: str, seed: int) -> Iterator[Tensor]:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            if split == "heldout_lm":  # freshly generated held-out documents from a separate block of seeds
                return org.token_batches(n_tokens, seq_len, batch_size, split="heldout", seed=seed + _ORGANISM_LM_SEED)
            organism_split = cast(Literal["train", "heldout"], split)  # checked above: in SPLITS, not heldout_lm
            return org.token_batches(n_tokens, seq_len, batch_size, split=organism_split, seed=seed)

        subj = Subject(name, f"organism:{org.path.name}", org.model.to(device, print_details=False), (eot,), batches)
    else:
        from companion.models.loading import load_model

        ds = (text_datasets or {}).get(name)
        if ds is None:
            raise ValueError(f"no text dataset configured for {name!r} (ParetoParams.text_datasets)")
        model = load_model(name, device=device)
        tok = model.tokenizer
        special = tuple(
            sorted({int(t) for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if t is not None})
        )

        def batches(n_tokens: int, seq_len: int, batch_size: int, split: str, seed: int) -> Iterator[Tensor]:
            return hf_text_batches(ds, tok, n_tokens, seq_len, batch_size, split=split, seed=seed)

        subj = Subject(name, _model_key(name, ds), model, special, batches)
        _record_identity(name, ds, special)
    _SUBJECTS[memo] = subj
    return subj


def _model_key(name: str, dataset: str) -> str:
    return f"model:{name}|data:{dataset}"


def _identity_spec(name: str, dataset: str) -> dict[str, str]:
    return {"model": name, "data": dataset}


def _record_identity(name: str, dataset: str, special: tuple[int, ...]) -> None:
    """Note a real model's special tokens in the cache, so :func:`subject_identity` knows them without loading it."""
    from companion.backbone.cache import default_cache

    def build(tmp):
        (tmp / "subject.json").write_text(json.dumps({"exclude_token_ids": list(special)}))

    default_cache().get_or_build("subject", _identity_spec(name, dataset), build, description=f"subject {name}")


def subject_identity(
    name: str, profile: str, text_datasets: dict[str, str] | None = None
) -> tuple[str, tuple[int, ...]] | None:
    """A subject's ``(key, exclude_token_ids)`` without loading its model, for computing cache keys ahead of a run.

    Organisms: from the organism's spec (trained or not).  Real models: from what :func:`load_subject` recorded the
    first time it loaded the model; None before that (nothing trained on it can be in the cache yet).
    """
    if name.startswith(ORGANISM_PREFIX):
        from companion.organism.build import organism_key, organism_spec
        from companion.organism.tokenizer import EOT_ID

        return f"organism:{organism_key(organism_spec(name[len(ORGANISM_PREFIX) :], profile))}", (EOT_ID,)
    from companion.backbone.cache import default_cache

    ds = (text_datasets or {}).get(name)
    if ds is None:
        raise ValueError(f"no text dataset configured for {name!r} (ParetoParams.text_datasets)")
    cache = default_cache()
    spec = _identity_spec(name, ds)
    if not cache.has("subject", cache.key("subject", spec)):
        return None
    data = json.loads((cache.path("subject", spec) / "subject.json").read_text())
    return _model_key(name, ds), tuple(int(t) for t in data["exclude_token_ids"])


@contextlib.contextmanager
def _only_the_hub():
    """While a dataset is resolved, keep ``datasets`` to the configured Hub endpoint: no download-count ping to S3
    and no dataset-viewer request to ``datasets-server.<endpoint host>`` (a host a mirror or proxy may not serve;
    its exported infos are not needed to stream the raw files)."""
    from datasets import config

    saved = config.USE_PARQUET_EXPORT, config.HF_UPDATE_DOWNLOAD_COUNTS
    config.USE_PARQUET_EXPORT, config.HF_UPDATE_DOWNLOAD_COUNTS = False, False
    try:
        yield
    finally:
        config.USE_PARQUET_EXPORT, config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def hf_text_batches(
    dataset: str,
    tokenizer: Any,
    n_tokens: int,
    seq_len: int,
    batch_size: int,
    *,
    split: str = "train",
    seed: int = 0,
    text_column: str = "text",
) -> Iterator[Tensor]:
    """Token batches ``[batch_size, seq_len]`` from a streamed Hugging Face text dataset (paper profile).

    Documents are concatenated with the EOS token between them and cut into rows that each start with BOS,
    like TransformerLens' ``tokenize_and_concatenate``.  Every 10th document of the (seeded, shuffled) stream is
    held out, alternately for "heldout" (documents 0, 20, 40, ...) and "heldout_lm" (10, 30, 50, ...); "train"
    reads only the others, so no two parts share a document even for datasets with a single split.  The shuffle is
    fixed (seed 0) so that partition never moves, and ``seed`` only offsets where in its part a stream starts (by
    ``seed`` documents).  ``dataset`` may name a configuration as ``"allenai/c4:en"``.  Needs the ``datasets``
    package and access to the Hub.
    """
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - only on the paper profile
        raise ImportError(
            "the paper profile streams text with the `datasets` package; install it "
            "(`pip install datasets`) or use an offline profile"
        ) from e
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    name, _, config = dataset.partition(":")
    with _only_the_hub():
        ds = datasets.load_dataset(name, config or None, split="train", streaming=True)
    ds = ds.shuffle(seed=0, buffer_size=10_000)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos

    def docs() -> Iterator[list[int]]:
        skip = int(seed) % 1000
        for i, doc in enumerate(ds):
            if document_split(i) != split:
                continue
            if skip:
                skip -= 1
                continue
            yield tokenizer(doc[text_column])["input_ids"] + [eos]

    yield from pack_rows(docs(), bos, seq_len, batch_size, -(-n_tokens // (batch_size * seq_len)))


def document_split(i: int) -> str:
    """Which part document ``i`` of a shuffled stream belongs to: every 10th held out, alternating between the two
    held-out parts (``hf_text_batches``)."""
    if i % 10:
        return "train"
    return "heldout" if i % 20 == 0 else "heldout_lm"
