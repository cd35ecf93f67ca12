"""Where notebook 04's files come from: Anthropic's at the pinned commit, downloaded and verified, or local copies
checked against the same pins (Perez et al. 2022's model-written evals, ``docs/references.md#sycophancy-data``).

A file is identified by its git blob id (:func:`companion.sycophancy.data.git_blob_id`); :func:`download_sycophancy_data`
refuses a download whose bytes are not the pinned ones, and :func:`check_pinned` names every local file that is not.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from companion.sycophancy import data as _data
from companion.sycophancy.data import (
    DATA_CACHE_KIND,
    DATASETS,
    DEFAULT_BASE_URL,
    FILENAMES,
    PINNED_BLOBS,
    PINNED_COMMIT,
    SycophancyDataError,
    _broken_philpapers_message,
    git_blob_id,
)


def check_pinned(directory: str | os.PathLike, datasets: Sequence[str], blobs: Mapping[str, str]) -> list[str]:
    """One line per file of ``datasets`` in ``directory`` that is missing or is not the pinned file (``blobs``: file
    name -> git blob id), naming the file and both blob ids; empty when every file is the pinned one."""
    d = Path(directory)
    problems = []
    for name in datasets:
        fname = FILENAMES.get(name)
        if fname is None:
            problems.append(f"unknown sycophancy dataset {name!r}; choose from {list(DATASETS)}")
            continue
        p = d / fname
        if not p.is_file():
            problems.append(f"{p}: no such file")
            continue
        blob, expected = git_blob_id(p.read_bytes()), blobs.get(fname)
        if expected is not None and blob != expected:
            problems.append(
                f"{p}: git blob id {blob} is not the pinned {expected}: the file differs from the "
                "pinned one (edited, cut short or another version)"
            )
    return problems


def data_cache_spec(commit: str, blobs: Mapping[str, str]) -> dict[str, Any]:
    """The cache key of the downloaded files: the commit and the blobs, not the URL (verified bytes are the same
    wherever they came from)."""
    return {"source": "anthropics/evals/sycophancy", "commit": commit, "blobs": dict(sorted(blobs.items()))}


def file_urls(base_url: str, commit: str, blobs: Mapping[str, str]) -> dict[str, str]:
    """File name -> the URL :func:`download_sycophancy_data` fetches it from (``${VAR}`` in ``base_url`` expanded)."""
    from companion.backbone.profiles import expand_env

    base = expand_env(base_url, "the sycophancy data's base URL").rstrip("/")
    return {fname: f"{base}/{commit}/sycophancy/{fname}" for fname in blobs}


def download_sycophancy_data(
    *,
    cache: Any = None,
    base_url: str = DEFAULT_BASE_URL,
    commit: str = PINNED_COMMIT,
    blobs: Mapping[str, str] = PINNED_BLOBS,
    offline: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """The directory (a cache entry) holding the three files, downloading them on first use.

    Each file is fetched from ``{base_url}/{commit}/sycophancy/{file}`` into a private temporary directory and
    its git blob id checked against ``blobs``; only when all match is the entry renamed into place
    (:meth:`companion.backbone.cache.Cache.get_or_build`), so a failed or tampered download leaves nothing behind.
    ``base_url`` may hold ``${VAR}`` references (the rehearsal profile points it at its loopback Hub); the cache key
    is the commit and the blobs, not the URL, since verified bytes are the same wherever they came from.
    A cached entry is used without touching the network.  ``offline`` (default:
    :func:`companion.models.hub.offline_env`, the variables the offline profiles set) makes a cache miss fail at
    once with a message instead of trying the network.
    """
    from companion.backbone.cache import default_cache

    cache = cache if cache is not None else default_cache()
    spec = data_cache_spec(commit, blobs)
    if cache.exists(DATA_CACHE_KIND, spec):
        return cache.get(DATA_CACHE_KIND, spec)
    if offline is None:
        from companion.models.hub import offline_env

        offline = offline_env()
    if offline:
        raise SycophancyDataError(
            "the sycophancy data is not in the cache and this run is offline (an offline profile, or "
            "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE set), so it will not be downloaded. Put the three files "
            f"{sorted(blobs)} in a directory and pass data_dir=..., or run once with the 'paper' profile "
            f"to download them into {cache.root}."
        )

    urls = file_urls(base_url, commit, blobs)

    def build(tmp: Path) -> None:
        for fname, expected in blobs.items():
            url = urls[fname]
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - fixed https/loopback URL
                    data = r.read()
            except (urllib.error.URLError, OSError) as e:
                raise SycophancyDataError(f"could not download {url}: {e}") from None
            blob = git_blob_id(data)
            if fname == FILENAMES["philpapers2020"] and blob == _data.BROKEN_PHILPAPERS_BLOB:
                raise SycophancyDataError(
                    _broken_philpapers_message(Path(url), "its bytes are those of the NLP-survey file")
                )
            if blob != expected:
                raise SycophancyDataError(
                    f"{url}: git blob id {blob} does not match the pinned {expected}: the file differs from "
                    f"anthropics/evals@{commit[:12]} (tampered, truncated or a different version); not used."
                )
            (tmp / fname).write_bytes(data)

    return cache.get_or_build(DATA_CACHE_KIND, spec, build, description=f"anthropics/evals sycophancy @ {commit[:12]}")
