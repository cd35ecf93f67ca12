"""Access to the Hugging Face Hub: whether this run may use it, and whether a model is already cached locally.

One rule for "offline", used by model loading and by every download: ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``
or ``HF_DATASETS_OFFLINE`` set to a true value (``1``, ``on``, ``yes``, ``true``, as huggingface_hub reads them).
The offline profiles set all three.  It is read from the environment at call time, because a profile's
environment is applied after the Hugging Face libraries may have been imported.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "on", "yes", "true"}


def offline_env() -> bool:
    """True when the environment forbids Hub and dataset downloads (any of :data:`OFFLINE_VARIABLES` is true)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARIABLES)


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
