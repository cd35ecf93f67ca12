"""Access to the Hugging Face Hub: whether this run may use it, and whether a model is already cached locally.

One rule for "offline", used by model loading and by every download: ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``
or ``HF_DATASETS_OFFLINE`` set to a true value (``1``, ``on``, ``yes``, ``true``, as huggingface_hub reads them).
The offline profiles set all three.  It is read from the environment at call time, because a profile's
environment is applied after the Hugging Face libraries may have been imported.
"""

from __future__ import annotations

import contextlib
import os

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "on", "yes", "true"}


def offline_env() -> bool:
    """True when the environment forbids Hub and dataset downloads (any of :data:`OFFLINE_VARIABLES` is true)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARIABLES)


def hub_endpoint() -> str:
    """The endpoint the Hub clients will use: huggingface_hub's (read from ``HF_ENDPOINT`` when it was imported)."""
    import huggingface_hub.constants as hc

    return hc.ENDPOINT


def hub_reachable(repo_id: str | None = None, timeout: float = 5.0, repo_type: str = "model") -> bool:
    """Whether the Hub answers, asked the way the clients ask: through huggingface_hub's own HTTP session.

    So whatever the clients would use decides it: their endpoint (``HF_ENDPOINT``, a mirror), their proxies
    (``HTTP(S)_PROXY``/``NO_PROXY``, honoured by the session), their offline switches.  Any HTTP answer counts as
    reachable (even 401/404: the server is there); a connection error or timeout does not.  Not a raw socket to a
    fixed host, which is wrong behind a proxy or with a mirror.
    """
    if offline_env():
        return False
    from huggingface_hub.utils import get_session

    path = f"/api/{repo_type}s/{repo_id}" if repo_id else "/api/models/gpt2"
    try:
        get_session().head(hub_endpoint() + path, timeout=timeout, follow_redirects=False)
    except Exception:  # httpx's connect/read/proxy errors, huggingface_hub's offline error: not reachable
        return False
    return True


def is_cached_locally(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds ``config.json`` (HF format) or ``config.json`` of a TL repo."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a transformers dependency
        return False
    hit = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(hit, str) and os.path.isfile(hit)


@contextlib.contextmanager
def hub_forced_offline():
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
