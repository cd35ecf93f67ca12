"""Loading a model for analysis: real models (paper profile) and organisms through one TransformerLens loader.

Every model is a ``transformer_lens.model_bridge.TransformerBridge`` (TransformerLens 3.9, the newest release
SAELens accepts), which wraps the Hugging Face module itself and exposes TransformerLens hook names on it
(``blocks.{L}.hook_resid_pre|mid|post``, ``blocks.{L}.hook_mlp_out``, ``blocks.{L}.mlp.hook_post``,
``blocks.{L}.attn.hook_z``, ...), with raw weights (no LayerNorm folding). Entry points:

* ``TransformerBridge.boot_transformers(path_or_id)`` for Hugging Face-format models: a local directory (every
  organism is one, see :mod:`companion.organism.build`), a Hub id (``EleutherAI/pythia-70m-deduped``) or a
  TransformerLens alias (``pythia-70m-deduped``, resolved with ``get_official_model_name``);
* :func:`companion.models.tl_legacy.boot_tl_legacy` for the legacy TransformerLens-format repositories
  (``NeelNanda/...``, e.g. ``gelu-1l`` = ``NeelNanda/GELU_1L512W_C4_Code``), which have no Hugging Face
  architecture: a TransformerLens-native bridge holding the repository's weights.

Offline behaviour: where the Hub cannot be reached (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or a short
request through the Hub client's own configuration fails: endpoint, proxies, see :func:`companion.models.hub.hub_reachable`)
a model that is not already in the local Hugging Face cache fails at once with a :class:`ModelUnavailableError`
naming the offline profiles, instead of ``from_pretrained``'s ~23 s of retries.  A model that is in the local cache
loads with the Hub forced offline, so nothing is fetched.

Devices: a CUDA device that is asked for but missing is a :class:`DeviceUnavailableError` (:func:`check_device`),
never a silent CPU run.  Memory: a ``TransformerBridge`` sits in reference cycles, so ``del model`` frees nothing
until the garbage collector runs; :func:`release` collects and empties the CUDA cache, and callers that load one
model after another call it in between.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from companion.models.hub import hub_forced_offline, hub_reachable, is_cached_locally, offline_env
from companion.models.numerics import native_layer_norms
from companion.models.tl_legacy import TL_LEGACY_PREFIXES, boot_tl_legacy

OFFLINE_PROFILES = ("ci", "organism")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Parameter spellings of the weight dtypes."""


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here (typically: no Hub access and not cached locally)."""


class DeviceUnavailableError(RuntimeError):
    """The requested torch device does not exist here (e.g. "cuda" on a machine without a usable GPU)."""


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or a :class:`DeviceUnavailableError` saying what to do when it is missing."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceUnavailableError(f"{device!r} is not a torch device ({e}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceUnavailableError(
                f"device {str(dev)!r} was requested but CUDA is not available here (torch {torch.__version__}, "
                f"{built}). Run on a machine with a GPU (`companion doctor --profile paper` checks), or ask for "
                f"the CPU explicitly with -p device=cpu (very slow for the paper's models)."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {str(dev)!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist here"
            )
    elif dev.type not in ("cpu", "meta") and not (dev.type == "mps" and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(f"device {str(dev)!r} is not available here; use 'cpu' or 'cuda'")
    return dev


def release() -> None:
    """Free what dropped models held: collect reference cycles (a TransformerBridge is in some), empty CUDA's cache."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_name(name: str) -> str:
    """The Hub repository id for a TransformerLens alias or Hub id (unknown names pass through unchanged)."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except (ValueError, KeyError):
        return name


def _unavailable(name: str, repo_id: str, why: str) -> ModelUnavailableError:
    alias = f" (= {repo_id})" if repo_id != name else ""
    return ModelUnavailableError(
        f"cannot load model {name!r}{alias}: {why}, and it is not in the local Hugging Face cache. "
        f"Run with an offline profile instead ({' or '.join(OFFLINE_PROFILES)}: "
        f'`make figures PROFILE=organism` or profile="organism" in the notebook\'s parameters cell), '
        f"pass a local Hugging Face model directory, or run where the Hub is reachable to download it once."
    )


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    offline: bool | None = None,
    **bridge_kwargs: Any,
):
    """Load a model for analysis as a TransformerLens ``TransformerBridge`` in eval mode.

    ``name_or_path`` is a local Hugging Face model directory (organisms are these; load them by name with
    :func:`companion.organism.loading.load_organism`) or a Hub id or TransformerLens alias ("pythia-70m-deduped",
    "gelu-1l"). ``offline=None`` decides from the environment and a request through the Hub client's configuration;
    ``True`` never touches the network.  ``dtype`` is a torch dtype or one of :data:`DTYPES`' names; ``device``
    is checked first (:func:`check_device`).
    """
    from transformer_lens.model_bridge import TransformerBridge

    device = str(check_device(device))
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]

    s = os.fspath(name_or_path)
    path = Path(s).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path} is a directory but has no config.json: not a Hugging Face model")
        # A local directory needs no Hub; forcing offline also stops any incidental lookups (e.g. templates).  The
        # path is made absolute: a relative one named like a TransformerLens alias ("pythia-70m") would be looked up.
        with hub_forced_offline():
            model = TransformerBridge.boot_transformers(
                str(path.resolve()), device=device, dtype=dtype, **bridge_kwargs
            )
        native_layer_norms(model)
        model.eval()
        return model
    if s.startswith((".", "/", "~")) or os.sep in s and not _looks_like_repo_id(s):
        raise ModelUnavailableError(f"model directory {s!r} does not exist")

    repo_id = resolve_name(s)
    cached = is_cached_locally(repo_id)
    if offline is None:
        offline = offline_env() or (not cached and not hub_reachable(repo_id))
    if offline and not cached:
        why = "the Hub is offline here (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set or no connection)"
        raise _unavailable(s, repo_id, why)

    ctx = hub_forced_offline() if offline else contextlib.nullcontext()
    with ctx:
        if repo_id.startswith(TL_LEGACY_PREFIXES):
            model = boot_tl_legacy(repo_id, device=device, dtype=dtype, **bridge_kwargs)
        else:
            model = TransformerBridge.boot_transformers(repo_id, device=device, dtype=dtype, **bridge_kwargs)
    native_layer_norms(model)
    model.eval()
    return model


def _looks_like_repo_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def hf_model(bridge: Any) -> torch.nn.Module:
    """The Hugging Face module a ``TransformerBridge`` wraps (for fast batched generation)."""
    for attr in ("original_model", "model", "hf_model"):
        m = getattr(bridge, attr, None)
        if isinstance(m, torch.nn.Module) and hasattr(m, "generate"):
            return m
    raise AttributeError("cannot find the wrapped Hugging Face model on this TransformerBridge")
