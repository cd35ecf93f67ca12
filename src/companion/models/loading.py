"""Loading a model for analysis: real models (paper profile) and organisms through one TransformerLens loader.

TransformerLens 4.x replaced ``HookedTransformer`` with ``transformer_lens.model_bridge.TransformerBridge``,
which wraps the Hugging Face module itself and exposes TransformerLens hook names on it
(``blocks.{L}.hook_resid_pre|mid|post``, ``blocks.{L}.hook_mlp_out``, ``blocks.{L}.mlp.hook_post``,
``blocks.{L}.attn.hook_z``, ...). We use its maintained entry points:

* ``TransformerBridge.boot_transformers(path_or_id)`` for Hugging Face-format models: a local directory (every
  organism is one, see :mod:`companion.organism.build`), a Hub id (``EleutherAI/pythia-70m-deduped``) or a
  TransformerLens alias (``pythia-70m-deduped``, resolved with ``get_official_model_name``);
* ``TransformerBridge.boot_tl_legacy(id)`` for the legacy TransformerLens-format repositories
  (``NeelNanda/...``, e.g. ``gelu-1l`` = ``NeelNanda/GELU_1L512W_C4_Code``), which have no Hugging Face
  architecture.

Offline behaviour: where the Hub cannot be reached (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or a
short connection probe fails) a model that is not already in the local Hugging Face cache fails at once with a
:class:`ModelUnavailableError` naming the offline profiles, instead of ``from_pretrained``'s ~23 s of retries.
A model that is in the local cache loads with the Hub forced offline, so nothing is fetched.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from companion.models.hub import hub_forced_offline, hub_reachable, is_cached_locally, offline_env

OFFLINE_PROFILES = ("ci", "organism")


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here (typically: no Hub access and not cached locally)."""


def resolve_name(name: str) -> str:
    """The Hub repository id for a TransformerLens alias or Hub id (unknown names pass through unchanged)."""
    try:
        from transformer_lens.supported_models import get_official_model_name

        return get_official_model_name(name)
    except (ValueError, KeyError):
        return name


def _unavailable(name: str, repo_id: str, why: str) -> ModelUnavailableError:
    alias = f" (= {repo_id})" if repo_id != name else ""
    return ModelUnavailableError(
        f"cannot load model {name!r}{alias}: {why}, and it is not in the local Hugging Face cache. "
        f"Run with an offline profile instead ({' or '.join(OFFLINE_PROFILES)}: "
        f"`make figures PROFILE=organism` or profile=\"organism\" in the notebook's parameters cell), "
        f"pass a local Hugging Face model directory, or run where the Hub is reachable to download it once."
    )


def load_model(name_or_path: str | os.PathLike, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
               offline: bool | None = None, **bridge_kwargs: Any):
    """Load a model for analysis as a TransformerLens ``TransformerBridge`` in eval mode.

    ``name_or_path`` is a local Hugging Face model directory (organisms are these; load them by name with
    :func:`companion.organism.loading.load_organism`) or a Hub id or TransformerLens alias ("pythia-70m-deduped",
    "gelu-1l"). ``offline=None`` decides from the environment and a connection
    probe; ``True`` never touches the network.
    """
    from transformer_lens.model_bridge import TransformerBridge

    s = os.fspath(name_or_path)
    path = Path(s).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path} is a directory but has no config.json: not a Hugging Face model")
        # A local directory needs no Hub; forcing offline also stops any incidental lookups (e.g. templates).
        with hub_forced_offline():
            model = TransformerBridge.boot_transformers(str(path), device=device, dtype=dtype, **bridge_kwargs)
        model.eval()
        return model
    if s.startswith((".", "/", "~")) or os.sep in s and not _looks_like_repo_id(s):
        raise ModelUnavailableError(f"model directory {s!r} does not exist")

    repo_id = resolve_name(s)
    cached = is_cached_locally(repo_id)
    if offline is None:
        offline = offline_env() or (not cached and not hub_reachable())
    if offline and not cached:
        why = "the Hub is offline here (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set or no connection)"
        raise _unavailable(s, repo_id, why)

    from transformer_lens.model_bridge.sources.tl_legacy import TL_LEGACY_PREFIXES

    ctx = hub_forced_offline() if offline else contextlib.nullcontext()
    with ctx:
        if repo_id.startswith(TL_LEGACY_PREFIXES):
            model = TransformerBridge.boot_tl_legacy(repo_id, device=device, dtype=dtype, **bridge_kwargs)
        else:
            model = TransformerBridge.boot_transformers(repo_id, device=device, dtype=dtype, **bridge_kwargs)
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
