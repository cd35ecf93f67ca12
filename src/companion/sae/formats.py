"""SAEs trained elsewhere, read into our classes: SAELens folders, dictionary_learning folders, SAELens releases.

:func:`read_sae` takes what a user points notebooks 01 and 02 at (``ParetoParams.external_saes``) and returns a
:class:`~companion.sae.saelens.StoredSAE` whose SAE computes, on raw activations, the function the file stores:

* a folder in SAELens' layout (``cfg.json`` + ``sae_weights.safetensors``; :func:`companion.sae.saelens.load_sae`);
* a folder in dictionary_learning's layout (``ae.pt``, its state dict, + ``config.json`` with a ``trainer`` block
  naming ``dict_class``; :func:`load_dictionary_learning`): ``AutoEncoder`` (the ReLU + L1 SAE), ``GatedAutoEncoder``,
  ``JumpReluAutoEncoder``, ``AutoEncoderTopK`` and ``BatchTopKSAE`` (its inference threshold);
* a SAELens release, ``"<release>:<sae id>"`` (:func:`fetch_release`): SAELens' pretrained-SAE directory maps it to a
  Hugging Face repository and folder (an unknown release is read as a repository and the id as a folder in it,
  SAELens' own rule), SAELens downloads and converts it through ``huggingface_hub`` (which honours ``HF_ENDPOINT``),
  and its ``save_model`` writes the SAELens layout into the companion's cache, where :func:`load_sae` reads it.

The equations of each architecture are in docs/references.md; the conventions of each library are said where they
are converted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

from companion.sae.saelens import CONFIG_FILE, WEIGHTS_FILE, SAEFormatError, StoredSAE, build_sae, load_sae

DL_WEIGHTS, DL_CONFIG = "ae.pt", "config.json"
_DL_HOOKS = {
    r"resid_post_layer_(\d+)": "blocks.{}.hook_resid_post",
    r"mlp_out_layer_(\d+)": "blocks.{}.hook_mlp_out",
    r"attn_out_layer_(\d+)": "blocks.{}.hook_attn_out",
    r"resid_pre_layer_(\d+)": "blocks.{}.hook_resid_pre",
}
"""dictionary_learning's submodule names -> TransformerLens hook names."""


class _DLLayout(NamedTuple):
    """Where one dictionary_learning class keeps what :func:`companion.sae.saelens.build_sae` takes."""

    arch: str
    """SAELens' name of the function it computes ("standard", "gated", "jumprelu", "topk")."""
    W_enc: str
    """Key of the encoder matrix in ``ae.pt``."""
    W_dec: str
    """Key of the decoder matrix."""
    b_dec: str
    """Key of the decoder bias (the input centring, when ``centred``)."""
    centred: bool
    """Whether its encoder subtracts ``b_dec`` from its input."""
    tensors: dict[str, str]
    """Every other tensor: ``build_sae`` keyword -> key in ``ae.pt``."""
    linear: bool = True
    """Matrices stored as ``nn.Linear`` weights ([out, in]: our orientation); else ``W_enc [d, M]``, ``W_dec [M, d]``."""
    k: bool = False
    """Whether it keeps k latents (``k`` in ``ae.pt``, else in the trainer's config)."""


_DL_LAYOUTS = {
    "AutoEncoder": _DLLayout("standard", "encoder.weight", "decoder.weight", "bias", True, {"b_enc": "encoder.bias"}),
    "GatedAutoEncoder": _DLLayout(
        "gated",
        "encoder.weight",
        "decoder.weight",
        "decoder_bias",
        True,
        {"b_gate": "gate_bias", "r_mag": "r_mag", "b_mag": "mag_bias"},
    ),
    "JumpReluAutoEncoder": _DLLayout(
        "jumprelu", "W_enc", "W_dec", "b_dec", False, {"b_enc": "b_enc", "threshold": "threshold"}, linear=False
    ),
    "AutoEncoderTopK": _DLLayout(
        "topk", "encoder.weight", "decoder.weight", "b_dec", True, {"b_enc": "encoder.bias"}, k=True
    ),
    "BatchTopKSAE": _DLLayout(
        "jumprelu", "encoder.weight", "decoder.weight", "b_dec", True, {"b_enc": "encoder.bias"}, k=True
    ),
}
"""The dictionary_learning classes read here, each by its ``trainer.dict_class``."""


def read_sae(source: str | Path) -> StoredSAE:
    """The SAE at ``source``: a SAELens or dictionary_learning folder, or a SAELens release ``"<release>:<sae id>"``."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
            return load_sae(path)
        if (path / DL_WEIGHTS).is_file() and (path / DL_CONFIG).is_file():
            return load_dictionary_learning(path)
        raise SAEFormatError(
            f"{path}: neither a SAELens folder ({CONFIG_FILE} + {WEIGHTS_FILE}) nor a "
            f"dictionary_learning one ({DL_WEIGHTS} + {DL_CONFIG})"
        )
    text = str(source)
    if ":" in text and not text.startswith(("/", ".", "~")):
        release, _, sae_id = text.partition(":")
        if release and sae_id:
            return load_sae(fetch_release(release, sae_id))
    raise SAEFormatError(
        f"{text!r} is not a folder holding an SAE, nor a SAELens release written '<release>:<sae id>' "
        "(e.g. 'pythia-70m-deduped-res-sm:blocks.3.hook_resid_post')"
    )


def fetch_release(release: str, sae_id: str) -> Path:
    """A SAELens release's SAE in the SAELens layout, downloaded and converted by SAELens, cached (kind "sae-release")."""
    from companion.backbone.cache import default_cache

    def build(tmp: Path) -> None:
        import warnings

        import sae_lens

        with warnings.catch_warnings():  # SAELens relays how to load the model; the notebook reads the metadata
            warnings.simplefilter("ignore", UserWarning)
            try:
                sae = sae_lens.SAE.from_pretrained(release, sae_id, device="cpu")
            except ValueError as e:
                raise SAEFormatError(f"SAELens release {release!r}, SAE {sae_id!r}: {e}") from None
        sae.save_model(tmp)

    spec = {"release": release, "sae_id": sae_id, "sae_lens": _saelens_version()}
    return default_cache().get_or_build("sae-release", spec, build, description=f"SAELens release {release}:{sae_id}")


def _saelens_version() -> str:
    from companion.sae.saelens import saelens_version

    return saelens_version()


def load_dictionary_learning(directory: str | Path) -> StoredSAE:
    """A dictionary_learning SAE folder (``ae.pt`` + ``config.json``) as one of our SAEs on raw activations.

    dictionary_learning saves the weights after undoing its activation normalisation (its ``scale_biases``), so they
    take raw activations.  Its encoders: ``AutoEncoder`` ReLU(W(x − bias) + b); ``GatedAutoEncoder`` the paper's gated
    encoder around ``decoder_bias``; ``JumpReluAutoEncoder`` ReLU(z·1[z > θ]), z = x·W_enc + b_enc with no input
    centring; ``AutoEncoderTopK`` each token's k largest of ReLU(W(x − b_dec) + b); ``BatchTopKSAE`` at inference
    ReLU(z)·1[ReLU(z) > θ] with its one threshold.  The hook comes from ``submodule_name`` (``resid_post_layer_3`` ->
    ``blocks.3.hook_resid_post``) or, failing that, SAELens' reading of these folders, ``blocks.<layer>.hook_resid_post``
    (then ``metadata.hook_name_assumed`` is true).
    """
    d = Path(directory)
    try:
        cfg = json.loads((d / DL_CONFIG).read_text())
        trainer = cfg["trainer"]
        dict_class = trainer["dict_class"]
    except (OSError, ValueError, KeyError) as e:
        raise SAEFormatError(f"{d}: not a dictionary_learning SAE ({DL_CONFIG} with trainer.dict_class): {e}") from None
    w = torch.load(d / DL_WEIGHTS, map_location="cpu", weights_only=True)
    layout = _DL_LAYOUTS.get(dict_class)
    if layout is None:
        raise SAEFormatError(
            f"{d}: dictionary_learning's {dict_class} cannot be loaded here ({', '.join(_DL_LAYOUTS)} can)"
        )
    try:
        W_enc, W_dec, b_dec = (w[key] for key in (layout.W_enc, layout.W_dec, layout.b_dec))
        if not layout.linear:
            W_enc, W_dec = W_enc.T, W_dec.T
        tensors: dict[str, Any] = {arg: w[key] for arg, key in layout.tensors.items()}
        if layout.k:
            k = int(w["k"]) if "k" in w else int(trainer["k"])
            if layout.arch == "topk":
                tensors["k"] = k
            else:  # BatchTopK at inference: ReLU(z)·1[ReLU(z) > θ], one θ for every latent
                theta = float(w["threshold"])
                if theta < 0:
                    raise SAEFormatError(f"{d}: this BatchTopK SAE has no inference threshold (−1: never estimated)")
                tensors |= {"threshold": torch.ones_like(tensors["b_enc"]) * theta, "batchtopk_k": k}
        sae = build_sae(layout.arch, W_enc, W_dec, b_dec, centred=layout.centred, dtype=b_dec.dtype, where=d, **tensors)
    except KeyError as e:
        raise SAEFormatError(f"{d}: {DL_WEIGHTS} lacks {e} for a {dict_class}") from None
    meta = _dl_provenance(cfg)
    return StoredSAE(
        sae=sae, config=cfg, model_name=meta["model_name"], hook_name=meta["hook_name"], path=d, metadata=meta
    )


def _dl_provenance(cfg: dict[str, Any]) -> dict[str, Any]:
    trainer, buffer = cfg["trainer"], cfg.get("buffer") or {}
    hook, assumed = None, False
    for pattern, hook_fmt in _DL_HOOKS.items():
        m = re.fullmatch(pattern, str(trainer.get("submodule_name") or ""))
        if m:
            hook = hook_fmt.format(m.group(1))
    if hook is None and trainer.get("layer") is not None:
        hook, assumed = f"blocks.{int(trainer['layer'])}.hook_resid_post", True
    return {
        "model_name": trainer.get("lm_name"),
        "hook_name": hook,
        "hook_name_assumed": assumed,
        "context_size": buffer.get("ctx_len"),
        "dictionary_learning": {"dict_class": trainer["dict_class"], "trainer_class": trainer.get("trainer_class")},
    }
