"""Greedy generation with a plain Hugging Face causal LM, batched: the organism's behavioural checks decode with it.

Sequences are decoded in left-padded batches with a KV cache: padding is masked and position ids count real tokens
only, so each row is computed as it would be alone (up to float rounding).  The batches are grouped by length with
:func:`companion.models.scoring.length_sorted_batches`, like every other batched model call.  (A TransformerBridge
would re-run the whole prefix each step; the Hugging Face module it wraps has the same weights and a KV cache.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from companion.models.scoring import length_sorted_batches


@torch.no_grad()
def _greedy_batch(hf: Any, seqs: Sequence[Sequence[int]], max_new_tokens: int, stop_id: int) -> list[list[int]]:
    """Greedy continuations of one left-padded batch with a KV cache, each cut at ``stop_id``.

    Padding is masked and position ids count real tokens only, so each row is computed as it would be alone (up to
    float rounding); the batch stops as soon as every row has produced ``stop_id``.
    """
    n, b = max(len(q) for q in seqs), len(seqs)
    x = torch.full((b, n), int(stop_id), dtype=torch.long)
    mask = torch.zeros((b, n), dtype=torch.long)
    for j, q in enumerate(seqs):
        x[j, n - len(q) :] = torch.tensor(list(q), dtype=torch.long)
        mask[j, n - len(q) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = hf(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True)
    last = pos[:, -1:]
    new: list[torch.Tensor] = []
    done = torch.zeros(b, dtype=torch.bool)
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1)
        new.append(nxt)
        done |= nxt == stop_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long)], 1)
        last = last + 1
        out = hf(
            input_ids=nxt[:, None],
            attention_mask=mask,
            position_ids=last,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    rows = torch.stack(new, 1).tolist()
    return [r[: r.index(stop_id)] if stop_id in r else r for r in rows]


def greedy_continuations(
    hf: Any, seqs: Sequence[Sequence[int]], *, max_new_tokens: int, stop_id: int, batch_size: int = 64
) -> list[list[int]]:
    """Greedy continuation (new token ids, cut at ``stop_id``) of each token sequence, by a Hugging Face causal LM.

    Sequences are decoded ``batch_size`` at a time in order of length (least padding); results come back in input
    order.  A batched continuation equals the one-at-a-time one except where two next tokens tie to float
    precision.
    """
    out: list[list[int]] = [[] for _ in seqs]
    for batch in length_sorted_batches([len(q) for q in seqs], batch_size=batch_size):
        for i, new in zip(batch, _greedy_batch(hf, [seqs[i] for i in batch], max_new_tokens, stop_id), strict=True):
            out[i] = new
    return out
