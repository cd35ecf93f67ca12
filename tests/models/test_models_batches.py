"""Packing token documents into model batches (companion.models.batches) against the rows cut by hand."""

from __future__ import annotations

import itertools

import pytest
import torch

from companion.models.batches import pack_rows


def _by_hand(docs, bos, seq_len, batch_size, n_batches):
    stream = [t for d in docs for t in d]
    k = seq_len - 1
    rows = [[bos] + stream[i : i + k] for i in range(0, len(stream) - k + 1, k)]
    batches = [rows[i : i + batch_size] for i in range(0, len(rows) - batch_size + 1, batch_size)]
    return batches[:n_batches]


@pytest.mark.parametrize("seq_len,batch_size,n_batches", [(2, 1, 100), (4, 3, 2), (5, 2, 100), (7, 4, 1), (3, 2, 0)])
def test_rows_are_bos_then_consecutive_stream_tokens(seq_len, batch_size, n_batches):
    g = torch.Generator().manual_seed(seq_len)
    docs = [list(range(100 * i, 100 * i + int(torch.randint(0, 9, (), generator=g)))) for i in range(12)]
    got = [b.tolist() for b in pack_rows(docs, -1, seq_len, batch_size, n_batches)]
    assert got == _by_hand(docs, -1, seq_len, batch_size, n_batches)
    assert all(
        b.dtype == torch.long and b.shape == (batch_size, seq_len)
        for b in pack_rows(docs, -1, seq_len, batch_size, n_batches)
    )


def test_stops_reading_documents_after_the_last_batch():
    read = []

    def docs():
        for i in itertools.count():
            read.append(i)
            yield [i] * 3

    assert len(list(pack_rows(docs(), 0, 4, 2, 3))) == 3  # 3 tokens a row, 2 rows a batch: 6 documents
    assert read == list(range(6))


def test_rejects_rows_without_room_for_a_token():
    with pytest.raises(ValueError, match="seq_len >= 2"):
        list(pack_rows([[1, 2]], 0, 1, 1, 1))
