"""TransformerLens' legacy Hub format (``NeelNanda/...``, e.g. gelu-1l) loaded as a TL-native ``TransformerBridge``.

These repositories predate the Hugging Face model format: ``config.json`` holds TransformerLens' own keys (no
``model_type``, so ``AutoConfig`` refuses it) and the weights are a ``HookedTransformer`` state dict in a
``*final.pth`` file (property names ``blocks.0.attn.W_Q``, per-head shapes).  TransformerLens 4 reads them with
``TransformerBridge.boot_tl_legacy``; TransformerLens 3.9, the newest release SAELens supports, has the TL-native
bridge (``TransformerBridge.boot_native``) but not that loader, and its ``HookedTransformer.from_pretrained`` is
deprecated.  :func:`boot_tl_legacy` is that loader for 3.9, following TransformerLens 4.3's
(``model_bridge/sources/tl_legacy.py``): the config derived from ``config.json``, a ``boot_native`` bridge, the
state dict converted to its layout (``W_Q [h, d, dh]`` -> ``q.weight [h·dh, d]``, ...) and loaded strictly.  The
weights are used raw (no LayerNorm folding or centring), as TransformerLens 4's loader and ``boot_transformers`` do.

Only the layout of the current ``NeelNanda`` repositories (``HookedTransformer`` property format) is read; the
older SoLU (``*_old``) and minGPT layouts and SoLU activations are refused with a message saying so.
"""

from __future__ import annotations

import json
from typing import Any

import torch

TL_LEGACY_PREFIXES = ("NeelNanda/", "ArthurConmy/", "Baidicoot/")
"""Hub owners whose repositories are in TransformerLens' legacy format (as TransformerLens 4 lists them)."""

_DROPPED = (".mask", ".IGNORE")  # HookedTransformer's attention buffers: the bridge recomputes them


def _heads(t: torch.Tensor, shape: tuple[int, ...], key: str) -> torch.Tensor:
    # A wrong head count would still reshape (h·dh = d for any factoring), silently mis-grouping heads: check first.
    if tuple(t.shape) != shape:
        raise ValueError(f"{key}: shape {tuple(t.shape)}, expected {shape} from the repository's config.json")
    return t


def convert_state_dict(sd: dict[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    """A ``HookedTransformer`` state dict (property keys, per-head shapes) in the TL-native bridge's layout."""
    h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
    kv = getattr(cfg, "n_key_value_heads", None) or h

    def qkv(t, key, n):  # [n, d, dh] -> [n·dh, d]
        return _heads(t, (n, d, dh), key).permute(0, 2, 1).reshape(n * dh, d)

    rules = [  # (old suffix, new suffix, conversion); more specific suffixes first (".b_Q" before ".b")
        (".W_Q", ".q.weight", lambda t, k: qkv(t, k, h)),
        ("._W_K", ".k.weight", lambda t, k: qkv(t, k, kv)),
        ("._W_V", ".v.weight", lambda t, k: qkv(t, k, kv)),
        (".W_K", ".k.weight", lambda t, k: qkv(t, k, kv)),
        (".W_V", ".v.weight", lambda t, k: qkv(t, k, kv)),
        (".W_O", ".o.weight", lambda t, k: _heads(t, (h, dh, d), k).reshape(h * dh, d).T),
        (".b_Q", ".q.bias", lambda t, k: _heads(t, (h, dh), k).reshape(-1)),
        ("._b_K", ".k.bias", lambda t, k: _heads(t, (kv, dh), k).reshape(-1)),
        ("._b_V", ".v.bias", lambda t, k: _heads(t, (kv, dh), k).reshape(-1)),
        (".b_K", ".k.bias", lambda t, k: _heads(t, (kv, dh), k).reshape(-1)),
        (".b_V", ".v.bias", lambda t, k: _heads(t, (kv, dh), k).reshape(-1)),
        (".b_O", ".o.bias", None),
        (".W_in", ".in.weight", "T"),
        (".b_in", ".in.bias", None),
        (".W_out", ".out.weight", "T"),
        (".b_out", ".out.bias", None),
        (".W_gate", ".gate.weight", "T"),
        (".b_gate", ".gate.bias", None),
        (".W_U", ".weight", "T"),
        (".b_U", ".bias", None),
        (".W_E", ".weight", None),
        (".W_pos", ".weight", None),
        (".w", ".weight", None),
        (".b", ".bias", None),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.endswith(_DROPPED):
            continue
        for old, new, conv in rules:
            if key.endswith(old):
                if conv == "T":
                    t = t.T
                elif callable(conv):
                    t = conv(t, key)
                out[key[: -len(old)] + new] = t.contiguous()
                break
        else:
            raise ValueError(f"{key!r} is not a TransformerLens (HookedTransformer) parameter name")
    return out


def derive_config(repo_id: str, cfg_json: dict[str, Any]):
    """The TL-native ``TransformerBridgeConfig`` of a legacy repository's ``config.json``."""
    from transformer_lens.config import TransformerBridgeConfig

    unsupported = (
        "it uses shortformer positional embeddings"
        if cfg_json.get("shortformer_pos")
        else "it is in the old SoLU layout"
        if "_old" in repo_id
        else f"its layout {cfg_json['architecture']!r} is not HookedTransformer's"
        if cfg_json.get("architecture", "neel") != "neel"
        else f"its activation {cfg_json.get('act_fn')!r} has no TL-native implementation in this TransformerLens"
        if str(cfg_json.get("act_fn", "")).startswith("solu")
        else None
    )
    if unsupported:
        raise NotImplementedError(f"{repo_id}: cannot load this legacy TransformerLens repository here: {unsupported}")
    return TransformerBridgeConfig(
        d_model=cfg_json["d_model"],
        n_layers=cfg_json["n_layers"],
        d_mlp=cfg_json["d_mlp"],
        d_head=cfg_json["d_head"],
        n_heads=cfg_json["n_heads"],
        n_ctx=cfg_json["n_ctx"],
        d_vocab=cfg_json["d_vocab"],
        act_fn=cfg_json["act_fn"],
        attn_only=cfg_json["attn_only"],
        final_rms=cfg_json.get("final_rms", False),
        normalization_type=cfg_json.get("normalization", cfg_json.get("normalization_type")),
        positional_embedding_type="standard",
        tokenizer_name=cfg_json.get("tokenizer_name"),
        architecture="TransformerLensNative",
    )


def boot_tl_legacy(
    repo_id: str, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32, tokenizer: Any = None
):
    """The legacy TransformerLens repository ``repo_id`` (its final weights) as a TL-native ``TransformerBridge``."""
    from huggingface_hub import HfApi, hf_hub_download
    from transformer_lens.model_bridge import TransformerBridge

    if not repo_id.startswith(TL_LEGACY_PREFIXES):
        raise ValueError(f"{repo_id!r} is not a legacy TransformerLens repository ({', '.join(TL_LEGACY_PREFIXES)})")
    with open(hf_hub_download(repo_id, "config.json")) as f:
        cfg = derive_config(repo_id, json.load(f))
    files = [f for f in HfApi().list_repo_files(repo_id) if f.endswith("final.pth")]
    if not files:
        raise FileNotFoundError(f"{repo_id} has no '*final.pth' weights file")
    sd = torch.load(hf_hub_download(repo_id, files[0]), map_location="cpu", weights_only=True)
    if tokenizer is None and cfg.tokenizer_name is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name)
    bridge = TransformerBridge.boot_native(cfg, tokenizer=tokenizer, device=device, dtype=dtype, model_name=repo_id)
    state = convert_state_dict({k: v.to(dtype) for k, v in sd.items()}, cfg)
    # Several legacy repositories ship no unembedding bias; HookedTransformer's loader zero-filled it.
    state.setdefault("unembed.bias", torch.zeros(cfg.d_vocab, dtype=dtype))
    bridge.load_state_dict(state, strict=True)
    return bridge
