"""SAEs on disk in SAELens' layout: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

Every SAE the companion trains is stored this way, so SAELens (``SAE.load_from_disk``), Neuronpedia uploads and
other tools can read it; and :func:`load_sae` reads SAELens-format SAEs trained elsewhere, so notebook 02's γ
analysis (Rajamanoharan et al. 2024, corrected Eq. 10) can be pointed at any of them.

The layout (SAELens 6; the flat pre-6 config, with ``model_name``/``hook_name`` at the top level, is read too):

* weights, SAELens orientation: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``, and
  ``b_enc [d_sae]`` ("standard") or ``b_gate``, ``r_mag``, ``b_mag [d_sae]`` ("gated", magnitude encoder tied as
  ``W_enc * exp(r_mag)``, exactly the paper's §3 parametrisation);
* ``cfg.json``: ``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``,
  ``normalize_activations``, ``reshape_activations`` and ``meta`` (``model_name``, ``hook_name``,
  ``context_size``, ``prepend_bos``, ``exclude_special_tokens``, ``dataset_path``, ...).  The companion's own
  provenance (its architecture name, λ, width) goes under ``meta.companion``; SAELens ignores it.

Our SAEs train on activations scaled by a constant s (E‖s·x‖² = d, :func:`companion.sae.training.train_sweep`).
That scale is folded into the saved weights as SAELens folds an activation-norm scaling factor
(``W_enc·s``, ``W_dec/s``, ``b_dec/s``): the stored SAE takes raw activations and gives the same codes, so L0 and
γ are unchanged, and ``normalize_activations`` is "none".

Reading, an SAE with ``apply_b_dec_to_input = false`` (no input centring) is the same function as one of our
centred SAEs with its encoder biases shifted by ``b_dec·W_enc`` (and ``·exp(r_mag)`` on the magnitude path), so
every standard or gated SAELens SAE loads into :class:`~companion.sae.autoencoders.BaselineSAE` /
:class:`~companion.sae.autoencoders.GatedSAE`.  Other architectures (JumpReLU, TopK) and run-time normalisations
are refused with a message saying so.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from companion.sae.autoencoders import BaselineSAE, GatedSAE, SparseAutoencoder

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
TO_SAELENS = {"baseline": "standard", "gated": "gated"}
"""Our architecture names -> SAELens' ("baseline" is the paper's ReLU + L1 SAE, SAELens' "standard")."""
FROM_SAELENS = {v: k for k, v in TO_SAELENS.items()}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16,
           "torch.float32": torch.float32, "torch.float64": torch.float64, "torch.bfloat16": torch.bfloat16,
           "torch.float16": torch.float16}


class SAEFormatError(ValueError):
    """A folder is not a readable SAELens-format SAE; the message says what is missing or unsupported."""


@dataclasses.dataclass(frozen=True)
class StoredSAE:
    """An SAE read from disk, ready for raw activations."""

    sae: SparseAutoencoder
    """The SAE (eval mode, CPU): ``encode``/``decode``/``forward`` take raw activations ``[..., d_in]``."""
    config: dict[str, Any]
    """The ``cfg.json`` as read."""
    model_name: str | None
    """The model it was trained on (``meta.model_name``), if recorded."""
    hook_name: str | None
    """The TransformerLens hook it reads (``meta.hook_name``), if recorded."""
    path: Path
    """The folder it was read from."""


def save_sae(sae: SparseAutoencoder, directory: str | Path, *, input_scale: float = 1.0,
             model_name: str | None = None, hook_name: str | None = None, context_size: int | None = None,
             prepend_bos: bool = True, exclude_special_tokens: list[int] | None = None,
             dataset_path: str | None = None, companion: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` (trained on activations × ``input_scale``) to ``directory`` in SAELens' layout; returns it."""
    from safetensors.torch import save_file

    if sae.architecture not in TO_SAELENS:
        raise SAEFormatError(f"no SAELens architecture for {sae.architecture!r}")
    s = float(input_scale)
    enc = sae.W_gate if isinstance(sae, GatedSAE) else sae.W_enc  # [M, d]
    tensors = {
        "W_enc": (enc.detach().T * s).contiguous(),
        "W_dec": (sae.W_dec.detach().T / s).contiguous(),
        "b_dec": (sae.b_dec.detach() / s).contiguous(),
    }
    if isinstance(sae, GatedSAE):
        tensors.update(b_gate=sae.b_gate.detach().clone(), r_mag=sae.r_mag.detach().clone(),
                       b_mag=sae.b_mag.detach().clone())
    else:
        tensors["b_enc"] = sae.b_enc.detach().clone()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in tensors.items()}, str(d / WEIGHTS_FILE))
    cfg = {
        "architecture": TO_SAELENS[sae.architecture],
        "d_in": sae.d_in,
        "d_sae": sae.n_latents,
        "dtype": str(sae.W_dec.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "hook_z" if (hook_name or "").endswith("hook_z") else "none",
        "meta": {
            "model_name": model_name,
            "hook_name": hook_name,
            "hook_layer": _hook_layer(hook_name),
            "context_size": context_size,
            "prepend_bos": prepend_bos,
            "exclude_special_tokens": exclude_special_tokens,
            "dataset_path": dataset_path,
            "companion": {"architecture": sae.architecture, "input_scale_folded": s, **(companion or {})},
        },
    }
    (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
    return d


def _hook_layer(hook_name: str | None) -> int | None:
    if not hook_name or not hook_name.startswith("blocks."):
        return None
    try:
        return int(hook_name.split(".")[1])
    except (IndexError, ValueError):
        return None


def load_sae(directory: str | Path) -> StoredSAE:
    """Read a SAELens-format SAE (standard or gated) into our classes; see the module docstring for what loads."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise SAEFormatError(f"{d}: not a SAELens-format SAE (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg = json.loads((d / CONFIG_FILE).read_text())
    arch = cfg.get("architecture", "standard")
    if arch not in FROM_SAELENS:
        raise SAEFormatError(f"{d}: architecture {arch!r} is not supported here (standard and gated SAEs are)")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise SAEFormatError(f"{d}: normalize_activations={norm!r} is not supported; fold the scaling into the "
                             "weights first (SAELens: sae.fold_activation_norm_scaling_factor) and save again")
    w = load_file(str(d / WEIGHTS_FILE))
    need = ["W_enc", "W_dec", "b_dec"] + (["b_gate", "r_mag", "b_mag"] if arch == "gated" else ["b_enc"])
    missing = [k for k in need if k not in w]
    if missing:
        raise SAEFormatError(f"{d}: {WEIGHTS_FILE} lacks {missing} for a {arch} SAE")
    W_enc, W_dec, b_dec = w["W_enc"], w["W_dec"], w["b_dec"]
    d_in, d_sae = W_enc.shape
    if W_dec.shape != (d_sae, d_in) or b_dec.shape != (d_in,):
        raise SAEFormatError(f"{d}: inconsistent shapes W_enc {tuple(W_enc.shape)}, W_dec {tuple(W_dec.shape)}, "
                             f"b_dec {tuple(b_dec.shape)}")
    dtype = _DTYPES.get(str(cfg.get("dtype", "float32")), W_enc.dtype)
    centre = bool(cfg.get("apply_b_dec_to_input", True))
    # Without input centring, x·W + b = (x − b_dec)·W + (b + b_dec·W): the same function with shifted biases.
    shift = torch.zeros(d_sae, dtype=W_enc.dtype) if centre else b_dec @ W_enc
    sae: SparseAutoencoder
    if arch == "gated":
        sae = GatedSAE(d_in, d_sae, dtype=dtype)
        state = {"W_gate": W_enc.T, "b_gate": w["b_gate"] + shift, "r_mag": w["r_mag"],
                 "b_mag": w["b_mag"] + shift * torch.exp(w["r_mag"]), "W_dec": W_dec.T, "b_dec": b_dec}
    else:
        sae = BaselineSAE(d_in, d_sae, dtype=dtype)
        state = {"W_enc": W_enc.T, "b_enc": w["b_enc"] + shift, "W_dec": W_dec.T, "b_dec": b_dec}
    sae.load_state_dict({k: v.to(dtype).contiguous() for k, v in state.items()})
    sae.eval().requires_grad_(False)
    meta = cfg.get("meta") or {}
    return StoredSAE(sae=sae, config=cfg, model_name=meta.get("model_name", cfg.get("model_name")),
                     hook_name=meta.get("hook_name", cfg.get("hook_name")), path=d)
