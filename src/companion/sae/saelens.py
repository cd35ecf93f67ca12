"""SAEs on disk in SAELens' layout: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

Every SAE the companion trains is stored this way, so SAELens (``SAE.load_from_disk``, then
``HookedSAETransformer.add_sae``), Neuronpedia uploads and other tools can read it; and :func:`load_sae` reads
SAELens-format SAEs trained elsewhere, so notebook 02's γ analysis (Rajamanoharan et al. 2024, corrected Eq. 10)
can be pointed at any of them.

The layout (SAELens 6):

* weights, SAELens orientation: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``, and
  ``b_enc [d_sae]`` ("standard", "topk"), ``b_enc`` and ``threshold [d_sae]`` ("jumprelu") or ``b_gate``, ``r_mag``,
  ``b_mag [d_sae]`` ("gated", magnitude encoder tied as ``W_enc * exp(r_mag)``, exactly the paper's §3
  parametrisation).  Our architectures map to SAELens': baseline → "standard", gated → "gated", JumpReLU → "jumprelu"
  (no input centring, ``apply_b_dec_to_input`` false, the threshold θ = exp(log θ)), TopK → "topk" (``k``, no
  decoder-norm rescaling), BatchTopK → "jumprelu" with its one inference threshold for every latent (what SAELens
  saves its own BatchTopK SAEs as), ``metadata.companion`` keeping "batchtopk" and k;
* ``cfg.json``: ``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``,
  ``normalize_activations``, ``reshape_activations`` and ``metadata``, SAELens 6's provenance block:
  ``sae_lens_version`` (a version ≥ 6 is what makes SAELens read the file as a SAELens 6 config rather than
  convert it as an old one), ``sae_lens_training_version`` (null: not trained by SAELens), ``model_name``,
  ``hook_name`` (where ``add_sae`` attaches the SAE), ``hook_head_index``, ``context_size``, ``prepend_bos``,
  ``exclude_special_tokens``, ``dataset_path`` and ``model_from_pretrained_kwargs``.  The last one says how to
  load the model so its activations are the ones the SAE was trained on: the companion reads raw weights
  (TransformerLens' ``TransformerBridge``), i.e. without the LayerNorm folding and weight centring that
  ``HookedTransformer.from_pretrained`` applies by default (centring changes the residual stream), so it is
  ``from_pretrained_no_processing``'s settings, and SAELens says so when it loads the SAE.  The companion's own
  provenance (its architecture name, λ, the folded scale) goes under ``metadata.companion``; SAELens ignores it.
  The companion's loss recovered leaves special-token positions unspliced; SAELens does the same with
  ``add_sae(sae, exclude_special_tokens=sae.cfg.metadata.exclude_special_tokens)`` (then its LM loss is ours).

Reading, the provenance comes from ``metadata`` (SAELens 6), else from ``meta`` (what the companion wrote before
it wrote SAELens 6's block; those SAEs stay readable), else from the flat top level of a pre-6 SAELens config.

Our SAEs train on activations scaled by a constant s (E‖s·x‖² = d, :func:`companion.sae.training.train_sweep`).
That scale is folded into the saved weights as SAELens folds an activation-norm scaling factor
(``W_enc·s``, ``W_dec/s``, ``b_dec/s``): the stored SAE takes raw activations and gives the same codes, so L0 and
γ are unchanged, and ``normalize_activations`` is "none".

Reading, the input centring is moved where our class has it: an SAE with ``apply_b_dec_to_input = false`` is the
same function as a centred one with its encoder biases shifted by ``b_dec·W_enc`` (and ``·exp(r_mag)`` on the
magnitude path), and the other way round for JumpReLU, which has none.  So every standard, gated, TopK and JumpReLU
SAELens SAE loads into :class:`~companion.sae.autoencoders.BaselineSAE`, :class:`~companion.sae.autoencoders.GatedSAE`,
:class:`~companion.sae.successors.TopKSAE` or :class:`~companion.sae.successors.JumpReLUSAE` (SAELens' BatchTopK SAEs
are JumpReLU files; ours come back as :class:`~companion.sae.successors.BatchTopKSAE`).  A pre-6 per-latent
``scaling_factor`` (applied to the codes before decoding) is folded into ``W_dec``; TopK's
``rescale_acts_by_decoder_norm`` (select and decode with the codes times the decoder rows' norms) is folded into
``W_enc``, ``b_enc`` and unit-norm ``W_dec`` rows, the same function; a negative JumpReLU threshold acts as 0 in
SAELens' encoder (ReLU(z)·1[z > θ]) and is read as 0.  Other architectures, and normalisations applied at run
time, are refused with a message saying why and what to do (:func:`_check_normalisation`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from companion.sae.autoencoders import BaselineSAE, GatedSAE, SparseAutoencoder
from companion.sae.successors import BatchTopKSAE, JumpReLUSAE, TopKSAE

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
TO_SAELENS = {"baseline": "standard", "gated": "gated", "jumprelu": "jumprelu", "topk": "topk", "batchtopk": "jumprelu"}
"""Our architecture names -> SAELens' ("baseline" is the paper's ReLU + L1 SAE, SAELens' "standard"; a BatchTopK SAE is
a JumpReLU at inference)."""
FROM_SAELENS = {"standard": "baseline", "gated": "gated", "jumprelu": "jumprelu", "topk": "topk"}
_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "torch.float32": torch.float32,
    "torch.float64": torch.float64,
    "torch.bfloat16": torch.bfloat16,
    "torch.float16": torch.float16,
}
NO_PROCESSING = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
    "refactor_factored_attn_matrices": False,
}
"""``HookedTransformer.from_pretrained`` settings that give the raw-weight activations the companion trains on."""
PROVENANCE_KEYS = (
    "model_name",
    "hook_name",
    "hook_head_index",
    "context_size",
    "prepend_bos",
    "exclude_special_tokens",
    "dataset_path",
    "model_from_pretrained_kwargs",
    "seqpos_slice",
    "model_class_name",
    "neuronpedia_id",
    "sae_lens_version",
    "sae_lens_training_version",
)
"""Provenance keys a pre-6 SAELens config keeps at its top level (SAELens 6 moved them under ``metadata``)."""
MIN_SAELENS_VERSION = "6.0.0"
"""Written as ``sae_lens_version`` where SAELens is not installed: any version ≥ 6 marks the SAELens 6 layout."""


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
    """The model it was trained on (``metadata.model_name``), if recorded."""
    hook_name: str | None
    """The TransformerLens hook it reads (``metadata.hook_name``), if recorded."""
    path: Path
    """The folder it was read from."""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Its provenance (context size, BOS, dataset, versions, ...), from whichever layout the file uses."""


def saelens_version() -> str:
    """The installed SAELens' version (the one whose layout is written and tested), else :data:`MIN_SAELENS_VERSION`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sae-lens")
    except PackageNotFoundError:
        return MIN_SAELENS_VERSION


def save_sae(
    sae: SparseAutoencoder,
    directory: str | Path,
    *,
    input_scale: float = 1.0,
    model_name: str | None = None,
    hook_name: str | None = None,
    hook_head_index: int | None = None,
    context_size: int | None = None,
    prepend_bos: bool = True,
    exclude_special_tokens: list[int] | None = None,
    dataset_path: str | None = None,
    companion: dict[str, Any] | None = None,
) -> Path:
    """Write ``sae`` (trained on activations × ``input_scale``) to ``directory`` in SAELens' layout; returns it."""
    from safetensors.torch import save_file

    if sae.architecture not in TO_SAELENS:
        raise SAEFormatError(f"no SAELens architecture for {sae.architecture!r}")
    s = float(input_scale)
    # Every architecture but the gated one has W_enc and b_enc (made by its init_encoder).
    enc = sae.W_gate if isinstance(sae, GatedSAE) else cast(Tensor, sae.W_enc)  # [M, d]
    tensors = {
        "W_enc": (enc.detach().T * s).contiguous(),
        "W_dec": (sae.W_dec.detach().T / s).contiguous(),
        "b_dec": (sae.b_dec.detach() / s).contiguous(),
    }
    extra: dict[str, Any] = {}
    if isinstance(sae, GatedSAE):
        tensors.update(
            b_gate=sae.b_gate.detach().clone(), r_mag=sae.r_mag.detach().clone(), b_mag=sae.b_mag.detach().clone()
        )
    else:
        tensors["b_enc"] = cast(Tensor, sae.b_enc).detach().clone()
    # The codes of the stored SAE on raw x are those of ours on s·x (W_enc·s), so thresholds and k carry over.
    if isinstance(sae, JumpReLUSAE):
        tensors["threshold"] = sae.threshold.detach().clone()
    elif isinstance(sae, BatchTopKSAE):
        if float(sae.threshold) < 0:
            raise SAEFormatError(
                "this BatchTopK SAE has no inference threshold yet (it estimates one while training): "
                "train it before saving"
            )
        tensors["threshold"] = sae.threshold.detach().expand(sae.n_latents).clone()
    elif isinstance(sae, TopKSAE):
        extra = {"k": sae.k, "rescale_acts_by_decoder_norm": False}
    ours = {"architecture": sae.architecture, "input_scale_folded": s, **(companion or {})}
    if isinstance(sae, TopKSAE):
        ours["k"] = sae.k
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in tensors.items()}, str(d / WEIGHTS_FILE))
    cfg = {
        "architecture": TO_SAELENS[sae.architecture],
        "d_in": sae.d_in,
        "d_sae": sae.n_latents,
        "dtype": str(sae.W_dec.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": not isinstance(sae, JumpReLUSAE),
        "normalize_activations": "none",
        "reshape_activations": "hook_z" if (hook_name or "").endswith("hook_z") else "none",
        "metadata": {
            "sae_lens_version": saelens_version(),
            "sae_lens_training_version": None,
            "model_name": model_name,
            "hook_name": hook_name,
            "hook_head_index": hook_head_index,
            "context_size": context_size,
            "prepend_bos": prepend_bos,
            "exclude_special_tokens": exclude_special_tokens,
            "dataset_path": dataset_path,
            "model_from_pretrained_kwargs": dict(NO_PROCESSING),
            "companion": ours,
        },
        **extra,
    }
    (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
    return d


def provenance(cfg: dict[str, Any]) -> dict[str, Any]:
    """The provenance block of a ``cfg.json``: SAELens 6's ``metadata`` over the companion's older ``meta`` over a
    pre-6 SAELens config's top-level keys (``hook_point`` was the older name of ``hook_name``)."""
    flat = {k: cfg[k] for k in PROVENANCE_KEYS if k in cfg}
    if "hook_name" not in flat and "hook_point" in cfg:
        flat["hook_name"] = cfg["hook_point"]
    return {**flat, **(cfg.get("meta") or {}), **(cfg.get("metadata") or {})}


def _check_normalisation(d: Path, cfg: dict[str, Any]) -> None:
    norm = cfg.get("normalize_activations", "none")
    if norm in (None, False, "none"):
        return
    if norm is True or norm == "expected_average_only_in":  # a bool is the pre-6 spelling of this one
        why = (
            "it expects activations multiplied by a dataset-wide constant (√d_in / E‖x‖ over the training data) "
            "that cfg.json does not record (SAELens folds it into the weights when training ends). Fold it and "
            "save again: sae = sae_lens.SAE.load_from_disk(path); sae.fold_activation_norm_scaling_factor(factor); "
            "sae.save_model(new_path), with the factor of its training run"
        )
    elif norm == "covariance_whitening":
        why = (
            "it expects whitened activations, (x − mean)·M, with statistics cfg.json does not record. Fold them "
            "and save again: sae.fold_activation_whitening(mean, M, M⁻¹) on sae_lens.SAE.load_from_disk(path), "
            "then sae.save_model(new_path)"
        )
    elif norm in ("layer_norm", "constant_norm_rescale"):
        how = (
            "subtracts each token's own mean and divides by its own standard deviation"
            if norm == "layer_norm"
            else "rescales each token to norm √d_in"
        )
        why = (
            f"it {how} before encoding and undoes that on the reconstruction. That is a different map for every "
            "token, which no weights can absorb, so the SAE is not the fixed ReLU/gated function of x the "
            "companion's loss-recovered and γ measures are defined for. Use it through SAELens itself "
            "(sae_lens.SAE.load_from_disk(path))"
        )
    else:
        why = "this normalisation is unknown here"
    raise SAEFormatError(f"{d}: normalize_activations={norm!r} cannot be loaded here: {why}")


def load_sae(directory: str | Path) -> StoredSAE:
    """Read a SAELens-format SAE (standard, gated, JumpReLU, TopK) into our classes; the module docstring says how."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise SAEFormatError(f"{d}: not a SAELens-format SAE (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg = json.loads((d / CONFIG_FILE).read_text())
    arch = cfg.get("architecture", "standard")
    if arch not in FROM_SAELENS:
        raise SAEFormatError(
            f"{d}: architecture {arch!r} cannot be loaded here (standard, gated, jumprelu and topk "
            f"SAEs can); sae_lens.SAE.load_from_disk(path) reads it"
        )
    _check_normalisation(d, cfg)
    w = load_file(str(d / WEIGHTS_FILE))
    if arch == "jumprelu" and "threshold" not in w and "log_threshold" in w:  # older SAELens files
        w["threshold"] = torch.exp(w.pop("log_threshold"))
    need = ["W_enc", "W_dec", "b_dec"] + {
        "gated": ["b_gate", "r_mag", "b_mag"],
        "jumprelu": ["b_enc", "threshold"],
    }.get(arch, ["b_enc"])
    missing = [k for k in need if k not in w]
    if missing:
        raise SAEFormatError(f"{d}: {WEIGHTS_FILE} lacks {missing} for a {arch} SAE")
    W_enc, W_dec, b_dec = w["W_enc"], w["W_dec"], w["b_dec"]
    d_in, d_sae = W_enc.shape
    if W_dec.shape != (d_sae, d_in) or b_dec.shape != (d_in,):
        raise SAEFormatError(
            f"{d}: inconsistent shapes W_enc {tuple(W_enc.shape)}, W_dec {tuple(W_dec.shape)}, "
            f"b_dec {tuple(b_dec.shape)}"
        )
    if "scaling_factor" in w:  # pre-6 SAELens: codes × scaling_factor before decoding, the same as scaled W_dec rows
        W_dec = W_dec * w["scaling_factor"].to(W_dec.dtype)[:, None]
    b_enc = w.get("b_enc")
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        # SAELens selects and decodes with z·‖W_dec row‖: fold the norms into the encoder, unit rows into the decoder.
        n = W_dec.norm(dim=1)
        W_enc, b_enc, W_dec = W_enc * n, b_enc * n, W_dec / n[:, None]
    meta = provenance(cfg)
    ours = meta.get("companion") or {}
    sae = build_sae(
        arch,
        W_enc.T,
        W_dec.T,
        b_dec,
        centred=bool(cfg.get("apply_b_dec_to_input", True)),
        dtype=_DTYPES.get(str(cfg.get("dtype", "float32")), W_enc.dtype),
        b_enc=b_enc,
        b_gate=w.get("b_gate"),
        r_mag=w.get("r_mag"),
        b_mag=w.get("b_mag"),
        threshold=w.get("threshold"),
        k=cfg.get("k"),
        batchtopk_k=ours.get("k") if ours.get("architecture") == "batchtopk" else None,
        where=d,
    )
    return StoredSAE(
        sae=sae, config=cfg, model_name=meta.get("model_name"), hook_name=meta.get("hook_name"), path=d, metadata=meta
    )


def build_sae(
    arch: str,
    W_enc: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
    *,
    centred: bool,
    dtype: torch.dtype,
    b_enc: torch.Tensor | None = None,
    b_gate: torch.Tensor | None = None,
    r_mag: torch.Tensor | None = None,
    b_mag: torch.Tensor | None = None,
    threshold: torch.Tensor | None = None,
    k: int | None = None,
    batchtopk_k: int | None = None,
    where: Path | str = "",
) -> SparseAutoencoder:
    """One of our SAEs (eval mode) computing the function stored elsewhere, from weights in our orientation
    (``W_enc [M, d]``, ``W_dec [d, M]``).  ``arch`` is SAELens' name ("standard", "gated", "jumprelu", "topk");
    ``centred`` whether the stored encoder subtracts ``b_dec`` from its input; ``batchtopk_k`` makes a "jumprelu"
    with one threshold for every latent our BatchTopK SAE of that k."""
    M, d_in = W_enc.shape
    # Moving the input centring: (x − b_dec)·W + b = x·W + (b − b_dec·W).
    shift = b_dec @ W_enc.T
    sae: SparseAutoencoder
    if arch == "gated":
        # Every caller passes its architecture's tensors (load_sae checks them).
        assert b_gate is not None and r_mag is not None and b_mag is not None
        if not centred:
            b_gate, b_mag = b_gate + shift, b_mag + shift * torch.exp(r_mag)
        sae = GatedSAE(d_in, M, dtype=dtype)
        state = {"W_gate": W_enc, "b_gate": b_gate, "r_mag": r_mag, "b_mag": b_mag}
    elif arch == "jumprelu" and batchtopk_k is not None:
        # Every caller passes its architecture's tensors (load_sae checks them).
        assert b_enc is not None and threshold is not None
        theta = threshold.reshape(-1)
        if theta.numel() != M or not bool((theta == theta[0]).all()):
            raise SAEFormatError(f"{where}: a BatchTopK SAE has one threshold for every latent")
        sae = BatchTopKSAE(d_in, M, dtype=dtype, k=int(batchtopk_k))
        state = {
            "W_enc": W_enc,
            "b_enc": b_enc if centred else b_enc + shift,
            "threshold": theta[0].clamp(min=0).reshape(()),
        }
    elif arch == "jumprelu":
        # Every caller passes its architecture's tensors (load_sae checks them).
        assert b_enc is not None and threshold is not None
        sae = JumpReLUSAE(d_in, M, dtype=dtype)
        # Our JumpReLU has no input centring; θ < 0 acts as 0 in SAELens' ReLU(z)·1[z > θ] (log 0 = −inf: θ = 0).
        state = {
            "W_enc": W_enc,
            "b_enc": b_enc - shift if centred else b_enc,
            "log_threshold": torch.log(threshold.to(torch.float64).clamp(min=0)).to(threshold.dtype),
        }
    else:
        if arch == "topk":
            if k is None or not 1 <= int(k) <= M:
                raise SAEFormatError(f"{where}: a TopK SAE needs k in [1, {M}], got {k!r}")
            sae = TopKSAE(d_in, M, dtype=dtype, k=int(k))
        else:
            sae = BaselineSAE(d_in, M, dtype=dtype)
        # Every caller passes its architecture's tensors (load_sae checks them).
        assert b_enc is not None
        state = {"W_enc": W_enc, "b_enc": b_enc if centred else b_enc + shift}
    state.update(W_dec=W_dec, b_dec=b_dec)
    sae.load_state_dict({k_: v.to(dtype).contiguous() for k_, v in state.items()})
    sae.eval().requires_grad_(False)
    return sae
