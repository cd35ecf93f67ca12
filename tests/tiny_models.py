"""Tiny randomly initialised Hugging Face causal LMs for the tests: GPT-2, GPT-NeoX (Pythia's architecture) and Llama.

One builder for every test that needs a real architecture offline: torch is seeded, then the architecture's small
defaults (:data:`ARCHS`) are updated by what the test sets, so a test names only what it checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARCHS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128}),
    "neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 1024,
            "rotary_pct": 0.25,
        },
    ),
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128,
        },
    ),
}
"""Architecture -> (``transformers`` config class, model class, small defaults)."""


def tiny_model(arch: str, vocab: int, *, seed: int = 0, **config: Any):
    """A randomly initialised ``arch`` model ("gpt2", "neox", "llama") of ``vocab`` tokens, in eval mode: torch
    seeded with ``seed``, then the defaults of :data:`ARCHS` updated by ``config``."""
    import torch
    import transformers

    config_cls, model_cls, defaults = ARCHS[arch]
    torch.manual_seed(seed)
    cfg = getattr(transformers, config_cls)(vocab_size=vocab, **{**defaults, **config})
    return getattr(transformers, model_cls)(cfg).eval()


def save_tiny(arch: str, directory: str | Path, tokenizer, *, vocab: int | None = None, **config: Any) -> Path:
    """:func:`tiny_model` for ``tokenizer`` (its size and BOS / EOS ids unless ``vocab`` or ``config`` set them),
    saved with the tokenizer in ``directory``, which it returns."""
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    model = tiny_model(arch, vocab if vocab is not None else len(tokenizer), **{**ids, **config})
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def perturb_norms(model, scale: float = 0.1) -> None:
    """Random init leaves norms at identity and biases at zero; perturb them so that a mis-mapped weight shows."""
    import torch

    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(scale * torch.randn_like(p))
