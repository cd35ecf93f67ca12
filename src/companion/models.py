"""Loading a model for analysis: real models (paper profile) and organisms through one TransformerLens loader.

TransformerLens 4.x replaced ``HookedTransformer`` with ``transformer_lens.model_bridge.TransformerBridge``,
which wraps the Hugging Face module itself and exposes TransformerLens hook names on it
(``blocks.{L}.hook_resid_pre|mid|post``, ``blocks.{L}.hook_mlp_out``, ``blocks.{L}.mlp.hook_post``,
``blocks.{L}.attn.hook_z``, ...). We use its maintained entry points:

* ``TransformerBridge.boot_transformers(path_or_id)`` for Hugging Face-format models: a local directory (every
  organism is one, see :mod:`companion.organism`), a Hub id (``EleutherAI/pythia-70m-deduped``) or a
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
import socket
import threading
from pathlib import Path
from typing import Any

import torch

OFFLINE_PROFILES = ("ci", "organism")
ORGANISM_PREFIX = "organism:"
_TRUE = {"1", "on", "yes", "true"}


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here (typically: no Hub access and not cached locally)."""


def resolve_name(name: str) -> str:
    """The Hub repository id for a TransformerLens alias or Hub id (unknown names pass through unchanged)."""
    try:
        from transformer_lens.supported_models import get_official_model_name

        return get_official_model_name(name)
    except (ValueError, KeyError):
        return name


def hub_offline_env() -> bool:
    """True when the environment forbids Hub access (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (DNS included)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host.partition(":")
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, int(port or 443)), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo has no timeout of its own: run the probe in a daemon thread and stop waiting for it.
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def is_cached_locally(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds ``config.json`` (HF format) or ``config.json`` of a TL repo."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a transformers dependency
        return False
    hit = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(hit, str) and os.path.isfile(hit)


@contextlib.contextmanager
def _hub_forced_offline():
    """Make huggingface_hub/transformers treat the Hub as offline for the duration (no network, no retries)."""
    import huggingface_hub.constants as hc

    old_const = hc.HF_HUB_OFFLINE
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    hc.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        hc.HF_HUB_OFFLINE = old_const
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _unavailable(name: str, repo_id: str, why: str) -> ModelUnavailableError:
    alias = f" (= {repo_id})" if repo_id != name else ""
    return ModelUnavailableError(
        f"cannot load model {name!r}{alias}: {why}, and it is not in the local Hugging Face cache. "
        f"Run with an offline profile instead ({' or '.join(OFFLINE_PROFILES)}: "
        f"`companion run --profile organism` or profile=\"organism\" in the notebook's parameters cell), "
        f"pass a local Hugging Face model directory, or run where the Hub is reachable to download it once."
    )


def load_model(name_or_path: str | os.PathLike, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
               profile: str | None = None, offline: bool | None = None, **bridge_kwargs: Any):
    """Load a model for analysis as a TransformerLens ``TransformerBridge`` in eval mode.

    ``name_or_path`` is one of: a local Hugging Face model directory (organisms are these); a Hub id or
    TransformerLens alias ("pythia-70m-deduped", "gelu-1l"); or ``"organism:<name>"`` for a named organism
    of ``profile`` (trained on first use). ``offline=None`` decides from the environment and a connection
    probe; ``True`` never touches the network.
    """
    from transformer_lens.model_bridge import TransformerBridge

    s = os.fspath(name_or_path)
    if s.startswith(ORGANISM_PREFIX):
        from companion.organism import load_organism

        return load_organism(s[len(ORGANISM_PREFIX):], profile=profile).model

    path = Path(s).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path} is a directory but has no config.json: not a Hugging Face model")
        # A local directory needs no Hub; forcing offline also stops any incidental lookups (e.g. templates).
        with _hub_forced_offline():
            model = TransformerBridge.boot_transformers(str(path), device=device, dtype=dtype, **bridge_kwargs)
        model.eval()
        return model
    if s.startswith((".", "/", "~")) or os.sep in s and not _looks_like_repo_id(s):
        raise ModelUnavailableError(f"model directory {s!r} does not exist")

    repo_id = resolve_name(s)
    cached = is_cached_locally(repo_id)
    if offline is None:
        offline = hub_offline_env() or (not cached and not hub_reachable())
    if offline and not cached:
        why = "the Hub is offline here (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set or no connection)"
        raise _unavailable(s, repo_id, why)

    from transformer_lens.model_bridge.sources.tl_legacy import TL_LEGACY_PREFIXES

    ctx = _hub_forced_offline() if offline else contextlib.nullcontext()
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
