"""Activation streams for SAE training: model activations at hook sites -> a shuffled buffer of bounded size.

The paper (Rajamanoharan et al. 2024, arXiv:2404.16014, App. D) trains on activations drawn from a shuffled
buffer (~10^6 tokens) rather than in document order, so one batch does not hold 4096 positions of the same few
documents.  :class:`ActivationStore` reproduces that at any scale:

* a *source* yields chunks ``{site: [n, d]}`` — straight from a model (:func:`model_chunks`: one forward per
  token batch, all sites at once, stopped after the last block needed) or from shards on disk written earlier
  (:func:`cached_activation_shards` / :func:`shard_chunks`);
* the store keeps at most ``buffer_size`` rows per site, and every time it is full it shuffles them and hands
  out half as training batches, so memory never exceeds the buffer plus one incoming chunk.

Token positions holding special tokens (BOS / end-of-text / padding; ``exclude_token_ids``) are dropped from
the stream: their activations are outliers unrelated to the text (the residual stream at BOS is huge), and the
evaluation in :mod:`companion.sae.metrics` leaves them unspliced for the same reason.  Multi-dimensional hooks
(``attn.hook_z``: ``[batch, pos, heads, d_head]``) are flattened over everything after the position.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from companion.models.scoring import model_device, run_hooks_then_stop

Chunk = dict[str, Tensor]
"""One piece of the stream: site name -> ``[n, d_site]`` activations (the same n token positions for every site)."""


def keep_mask(tokens: Tensor, exclude_token_ids: Sequence[int]) -> Tensor:
    """``[batch, pos]`` bool: True where the token is not one of ``exclude_token_ids``."""
    keep = torch.ones_like(tokens, dtype=torch.bool)
    for t in exclude_token_ids:
        keep &= tokens != int(t)
    return keep


def flatten_site(act: Tensor) -> Tensor:
    """``[batch, pos, *rest]`` -> ``[batch, pos, prod(rest)]`` (attention ``hook_z`` is per head)."""
    if act.ndim < 3:
        raise ValueError(f"expected a [batch, pos, ...] activation, got shape {tuple(act.shape)}")
    return act.reshape(act.shape[0], act.shape[1], -1)


@torch.no_grad()
def site_activations(model: Any, tokens: Tensor, sites: Sequence[str]) -> dict[str, Tensor]:
    """Activations ``{site: [batch, pos, d]}`` of one forward pass, stopped after the last site needed."""
    got: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any = None, site: str = "") -> None:
        got[site] = flatten_site(act).float()

    run_hooks_then_stop(model, tokens, [(s, (lambda a, hook=None, s=s: grab(a, hook, s))) for s in sites])
    missing = [s for s in sites if s not in got]
    if missing:
        raise KeyError(
            f"hook sites {missing} did not fire: not hook names of this model "
            "(TransformerLens names, e.g. blocks.0.hook_resid_pre, blocks.0.mlp.hook_post)"
        )
    return {s: got[s] for s in sites}


def model_chunks(
    model: Any, token_batches: Iterable[Tensor], sites: Sequence[str], exclude_token_ids: Sequence[int] = ()
) -> Iterator[Chunk]:
    """Stream ``{site: [n, d]}`` chunks (on the CPU) from a model, one per token batch, special-token positions dropped."""
    dev = model_device(model)
    for tokens in token_batches:
        if tokens.ndim != 2:
            raise ValueError(f"token batches must be [batch, pos] LongTensors, got shape {tuple(tokens.shape)}")
        acts = site_activations(model, tokens.to(dev), sites)
        keep = keep_mask(tokens, exclude_token_ids).reshape(-1)
        yield {s: a.reshape(-1, a.shape[-1]).cpu()[keep].contiguous() for s, a in acts.items()}


class ActivationStore:
    """Shuffled batches ``{site: [batch_size, d]}`` from a chunk source, holding at most ``buffer_size`` rows per site.

    Buffer discipline: fill to ``buffer_size`` rows, shuffle, emit the first half as batches, keep the other
    half, refill; at the end of the source shuffle what is left and emit the full batches (a final partial
    batch is dropped so every step sees ``batch_size`` rows).  All sites share one permutation, so row i of
    every site's batch is the same token.  Deterministic for a given ``seed`` and source.
    """

    def __init__(
        self, chunks: Iterable[Chunk], *, batch_size: int, buffer_size: int, seed: int = 0, max_rows: int | None = None
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if buffer_size < 2 * batch_size:
            raise ValueError(
                f"buffer_size ({buffer_size}) must hold at least two batches ({2 * batch_size} rows) "
                "so that half a buffer is at least one batch"
            )
        self._chunks = chunks
        self.batch_size = int(batch_size)
        self.buffer_size = int(buffer_size)
        self.seed = int(seed)
        self.max_rows = max_rows
        """Stop after this many rows have been read from the source (None: read it all)."""
        self.rows_read = 0
        """Rows taken from the source so far."""
        self.peak_rows = 0
        """The most rows held at once (buffer + incoming chunk remainder), for checking the bound."""

    def __iter__(self) -> Iterator[Chunk]:
        gen = torch.Generator().manual_seed(self.seed)
        buf: dict[str, Tensor] | None = None
        n = 0
        half = self.buffer_size // 2
        src = iter(self._chunks)
        pending: Chunk | None = None
        exhausted = False
        while True:
            # Fill the buffer from pending / new chunks without ever holding more than one chunk beyond it.
            while n < self.buffer_size and not exhausted:
                if pending is None:
                    if self.max_rows is not None and self.rows_read >= self.max_rows:
                        exhausted = True
                        break
                    try:
                        pending = next(src)
                    except StopIteration:
                        exhausted = True
                        break
                    rows = _rows(pending)
                    if self.max_rows is not None and self.rows_read + rows > self.max_rows:
                        keep = self.max_rows - self.rows_read
                        pending = {s: a[:keep] for s, a in pending.items()}
                        rows = keep
                    self.rows_read += rows
                if buf is None:
                    buf = {s: torch.empty(self.buffer_size, a.shape[1], dtype=a.dtype) for s, a in pending.items()}
                take = min(self.buffer_size - n, _rows(pending))
                for s, a in pending.items():
                    buf[s][n : n + take] = a[:take]
                n += take
                self.peak_rows = max(self.peak_rows, n + _rows(pending) - take)
                pending = {s: a[take:] for s, a in pending.items()} if take < _rows(pending) else None
            if buf is None or n == 0:
                return
            full = n >= self.buffer_size
            perm = torch.randperm(n, generator=gen)
            # Full: hand out (about) half, keep the rest to mix with new rows.  Source exhausted: drain.
            out = (half if full else n) // self.batch_size * self.batch_size
            for i in range(0, out, self.batch_size):
                idx = perm[i : i + self.batch_size]
                yield {s: b[idx] for s, b in buf.items()}
            if not full:
                return
            kept = perm[out:]
            for s in buf:
                buf[s][: kept.numel()] = buf[s][kept]  # advanced indexing copies first, so no aliasing
            n = kept.numel()


def _rows(chunk: Chunk) -> int:
    return int(next(iter(chunk.values())).shape[0])


# ------------------------------------------------------------------------------------------------ disk shards
SHARD_INDEX = "shards.json"


def write_shards(
    chunks: Iterable[Chunk],
    out_dir: str | Path,
    *,
    rows_per_shard: int = 65536,
    max_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a chunk stream to ``out_dir`` as ``shard_XXXXX.pt`` files of ``rows_per_shard`` rows (bounded memory).

    Returns (and writes as ``shards.json``) the index: sites, dims, shard files and row counts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending: list[Chunk] = []
    n_pending = 0
    index: dict[str, Any] = {"shards": [], "rows": 0, "sites": None, "dims": None}

    def flush(final: bool) -> None:
        nonlocal pending, n_pending
        while n_pending >= rows_per_shard or (final and n_pending > 0):
            cat = {s: torch.cat([c[s] for c in pending]) for s in pending[0]}
            take = min(rows_per_shard, n_pending)
            name = f"shard_{len(index['shards']):05d}.pt"
            torch.save({s: a[:take].clone() for s, a in cat.items()}, out_dir / name)
            index["shards"].append({"file": name, "rows": take})
            rest = {s: a[take:] for s, a in cat.items()}
            n_pending -= take
            pending = [rest] if n_pending else []

    for chunk in chunks:
        if index["sites"] is None:
            index["sites"] = list(chunk)
            index["dims"] = {s: int(a.shape[1]) for s, a in chunk.items()}
        rows = _rows(chunk)
        if max_rows is not None and index["rows"] + rows > max_rows:
            chunk = {s: a[: max_rows - index["rows"]] for s, a in chunk.items()}
            rows = _rows(chunk)
        pending.append(chunk)
        n_pending += rows
        index["rows"] += rows
        if progress is not None:
            progress(rows)
        flush(final=False)
        if max_rows is not None and index["rows"] >= max_rows:
            break
    flush(final=True)
    (out_dir / SHARD_INDEX).write_text(json.dumps(index, indent=1))
    return index


def shard_chunks(shard_dir: str | Path, sites: Sequence[str] | None = None) -> Iterator[Chunk]:
    """Read shards written by :func:`write_shards` back, one shard in memory at a time."""
    shard_dir = Path(shard_dir)
    index = json.loads((shard_dir / SHARD_INDEX).read_text())
    for sh in index["shards"]:
        data = torch.load(shard_dir / sh["file"], map_location="cpu", weights_only=True)
        yield {s: data[s] for s in (sites or index["sites"])}


def cached_activation_shards(
    model: Any,
    token_batches: Callable[[], Iterable[Tensor]],
    sites: Sequence[str],
    spec: dict[str, Any],
    *,
    max_rows: int,
    exclude_token_ids: Sequence[int] = (),
    rows_per_shard: int = 65536,
    progress: bool = True,
) -> Path:
    """Stream activations from ``model`` once into a ``companion.backbone.cache`` entry of kind "activations"; return its dir.

    ``spec`` must identify the model, the token source and anything else that changes the activations; the
    sites, row count, exclusions and the code fingerprint of this module are added to it here.
    """
    from tqdm.auto import tqdm

    from companion.backbone.cache import code_fingerprint, default_cache

    full_spec = {
        **spec,
        "sites": list(sites),
        "max_rows": int(max_rows),
        "exclude_token_ids": [int(t) for t in exclude_token_ids],
        "code": code_fingerprint("companion.sae.activations"),
    }

    def build(tmp: Path) -> None:
        bar = tqdm(total=max_rows, desc="caching activations", unit="tok", disable=not progress)
        write_shards(
            model_chunks(model, token_batches(), sites, exclude_token_ids),
            tmp,
            rows_per_shard=rows_per_shard,
            max_rows=max_rows,
            progress=bar.update,
        )
        bar.close()

    return default_cache().get_or_build(
        "activations", full_spec, build, description=f"activations {','.join(sites)} ({max_rows} rows)"
    )


def collect(chunks: Iterable[Chunk], n_rows: int) -> Chunk:
    """Concatenate the first ``n_rows`` rows of a chunk stream (for evaluation sets that fit in memory)."""
    got: dict[str, list[Tensor]] = {}
    n = 0
    for c in chunks:
        take = min(n_rows - n, _rows(c))
        for s, a in c.items():
            got.setdefault(s, []).append(a[:take])
        n += take
        if n >= n_rows:
            break
    if n == 0:
        raise ValueError("the activation source yielded no rows")
    return {s: torch.cat(v) for s, v in got.items()}
