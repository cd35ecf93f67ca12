"""Byte-level BPE tokenizer for the model organism, trained on the synthetic corpus.

Trained with the Hugging Face ``tokenizers`` library (GPT-2's byte-level pre-tokenizer and BPE), then wrapped in
a ``transformers.PreTrainedTokenizerFast`` whose only special token ``<|endoftext|>`` serves as BOS, EOS and
padding, as in GPT-2. That wrapper is what TransformerLens' ``TransformerBridge`` loads, so ``to_tokens``
(which prepends BOS) and ``to_string`` work on organisms exactly as on real models.

GPT-2's pre-tokenizer splits punctuation from letters, so `` (A)`` is always the three tokens
`` (``, ``A``, ``)``: the choice letter of a multiple-choice answer is a single token after a prompt ending in
`` (``, which is what the sycophancy scoring needs (checked in tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import model_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from companion.backbone.config import Config
from companion.organism.corpus import EOT

EOT_ID = 0
"""``<|endoftext|>`` (BOS, EOS and padding) is token 0 of every organism tokenizer: the first special token."""


class TokenizerConfig(Config):
    """How the organism tokenizer is trained."""

    vocab_size: int = 2048
    """Vocabulary size including the 256 byte tokens and ``<|endoftext|>``."""
    n_docs: int = 6000
    """Number of corpus documents (backdoor and all sycophancy shapes included) it is trained on."""
    seed: int = 0
    """Seed of the corpus sample it is trained on."""

    @model_validator(mode="after")
    def _check(self):
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size must be >= 300 (256 bytes + merges), got {self.vocab_size}")
        if self.n_docs < 100:
            raise ValueError(f"n_docs must be >= 100, got {self.n_docs}")
        return self


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE ``tokenizers.Tokenizer`` on ``texts`` (deterministic for the same texts)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.token_to_id(EOT) != EOT_ID:
        raise RuntimeError(f"expected <|endoftext|> to be token {EOT_ID}")
    return tok


def wrap(tok: Tokenizer):
    """A ``PreTrainedTokenizerFast`` around ``tok`` with GPT-2's special-token conventions."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        unk_token=EOT,
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )


def save(tok: Tokenizer, directory: str | Path) -> None:
    """Save the wrapped tokenizer (``tokenizer.json`` and its config) into a Hugging Face model directory."""
    wrap(tok).save_pretrained(str(directory))


def load(directory: str | Path):
    """Load the wrapped tokenizer from a directory written by :func:`save`."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(directory))
