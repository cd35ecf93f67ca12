"""Token documents to fixed-length model batches, the packing every activation stream uses.

As TransformerLens' ``tokenize_and_concatenate``: documents are concatenated into one token stream and cut into
rows of ``seq_len`` tokens that each start with BOS, so every position a model reads has the context a prompt would
give it.  Used for the real models' streamed text (:mod:`companion.sae.subjects`); the organisms' corpus stream
(:mod:`companion.organism.loading`) packs the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor


def pack_rows(
    docs: Iterable[Sequence[int]], bos: int, seq_len: int, batch_size: int, n_batches: int
) -> Iterator[Tensor]:
    """Batches ``[batch_size, seq_len]`` (int64) whose rows are ``bos`` then ``seq_len − 1`` consecutive tokens.

    ``docs`` are token ids, concatenated in order (separators between documents are the caller's: part of each
    document's ids).  Stops after ``n_batches`` batches, reading no further document, or when ``docs`` runs out;
    rows that do not fill a last batch are dropped.
    """
    if seq_len < 2 or batch_size < 1:
        raise ValueError(f"seq_len >= 2 and batch_size >= 1 required, got seq_len={seq_len}, batch_size={batch_size}")
    if n_batches < 1:
        return
    buf: list[int] = []
    rows: list[list[int]] = []
    made = 0
    for ids in docs:
        buf.extend(ids)
        while len(buf) >= seq_len - 1:
            rows.append([bos, *buf[: seq_len - 1]])
            del buf[: seq_len - 1]
            if len(rows) == batch_size:
                yield torch.tensor(rows, dtype=torch.long)
                rows = []
                made += 1
                if made == n_batches:
                    return
