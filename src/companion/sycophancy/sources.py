"""Notebook 04's data: which datasets it scores, where they come from, and what every figure must say about them.

Anthropic's model-written-evals files (Perez et al. 2022) are read from ``data_dir`` or downloaded at the pinned
commit and checked against their pinned git blob ids (:mod:`companion.sycophancy.pinned`); the organisms' held-out
items are written in the same schema (:func:`organism_eval_dir`), so organism and real data go through one loader
(:mod:`companion.sycophancy.data`).  :func:`preflight` finds a missing or unpinned ``data_dir`` before a run;
:func:`record_provenance` records the files' blob ids and caveats on every figure saved afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from companion.sycophancy.data import FILENAMES, SycophancyDataError, SycophancyDataset, load_sycophancy_dir, subsample
from companion.sycophancy.pinned import check_pinned, download_sycophancy_data

if TYPE_CHECKING:
    from companion.sycophancy.experiment import SweepResult


def load_datasets(
    params: Any, *, offline: bool = False
) -> tuple[dict[str, SycophancyDataset], dict[str, SycophancyDataset]]:
    """The datasets notebook 04 scores, as ``(every valid row, the seeded subsample scored)`` by dataset name.

    ``params.data == "organism"``: held-out organism items (:func:`organism_eval_dir`); else Anthropic's files from
    ``params.data_dir`` or downloaded at the pinned commit and verified (refused when ``offline``).
    """
    if params.data == "organism":
        data_dir = organism_eval_dir(params.organism_items_per_file, params.seed)
    elif params.data_dir is not None:
        data_dir = local_data_dir(params)
        problems = [] if params.allow_unpinned_data else check_pinned(data_dir, params.datasets, params.data_blobs)
        if problems:
            raise SycophancyDataError(
                "; ".join(problems) + ". Use the pinned files, pin these in data_blobs, or "
                "score them anyway with allow_unpinned_data=true (stamped on the figure)"
            )
    else:
        data_dir = download_sycophancy_data(
            base_url=params.data_base_url, commit=params.data_commit, blobs=params.data_blobs, offline=offline
        )
    full = load_sycophancy_dir(data_dir, params.datasets, skip_invalid=params.skip_invalid)
    return full, {name: subsample(ds, params.n_per_dataset, params.seed) for name, ds in full.items()}


def local_data_dir(params: Any) -> Path:
    """``params.data_dir`` as a path: a relative one is relative to the project root (not the kernel's folder)."""
    from companion.backbone.profiles import project_root

    return project_root() / Path(params.data_dir).expanduser()


def preflight(params: Any) -> list[str]:
    """What a run of notebook 04 would stop on, found before it starts (the dry run and ``companion doctor``):
    a data_dir that is missing or whose files are not the pinned ones."""
    if params.data != "anthropic" or params.data_dir is None:
        return []
    d = local_data_dir(params)
    if not d.is_dir():
        return [f"data_dir {params.data_dir!r}: no such directory ({d})"]
    if params.allow_unpinned_data:
        return [p for p in check_pinned(d, params.datasets, {}) if p.endswith("no such file")]
    return check_pinned(d, params.datasets, params.data_blobs)


def dataset_inputs(full: Mapping[str, SycophancyDataset]) -> dict[str, str]:
    """Provenance of the data (``companion.backbone.runtime.record_input``): file -> its git blob id."""
    return {f"sycophancy/{FILENAMES[name]}": ds.blob_id for name, ds in full.items()}


def data_caveats(full: Mapping[str, SycophancyDataset], params: Any, sweep: SweepResult | None = None) -> list[str]:
    """What every figure of the run must say about its data: files scored although they are not the pinned ones
    (``allow_unpinned_data``) and items left out as too long (``drop_too_long``)."""
    out = []
    if params.data == "anthropic":
        for name, ds in full.items():
            pinned = params.data_blobs[FILENAMES[name]]
            if ds.blob_id != pinned:
                out.append(
                    f"UNPINNED DATA: {FILENAMES[name]} is blob {ds.blob_id[:12]}, not the pinned "
                    f"{pinned[:12]} (allow_unpinned_data)"
                )
    return out + (sweep.caveats() if sweep is not None else [])


def record_provenance(full: Mapping[str, SycophancyDataset], params: Any, sweep: SweepResult | None = None) -> None:
    """Record the data's blob ids and caveats (:func:`data_caveats`) for every figure saved afterwards."""
    from companion.backbone.runtime import record_caveat, record_input

    for name, blob in dataset_inputs(full).items():
        record_input(name, blob)
    for text in data_caveats(full, params, sweep):
        record_caveat(text)


def datasets_table(full: Mapping[str, SycophancyDataset], scored: Mapping[str, SycophancyDataset]):
    """One row per dataset: rows read, skipped and scored, the numbers of choices, the blob and whether it is the
    pinned Anthropic file."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "dataset": name,
                "rows": len(ds),
                "skipped": len(ds.skipped),
                "scored": len(scored[name]),
                "choices": "/".join(map(str, sorted({len(it.labels) for it in ds.items}))),
                "blob": ds.blob_id[:12],
                "pinned Anthropic file": ds.pinned,
            }
            for name, ds in full.items()
        ]
    ).set_index("dataset")


def organism_eval_dir(n_per_file: int, seed: int = 0, *, cache: Any = None) -> Path:
    """A cache entry holding held-out organism items in Anthropic's schema, under the three standard file
    names (:func:`companion.organism.sycophancy_items.write_sycophancy_eval`), so organism and real data share one loader."""
    from companion.backbone.cache import default_cache
    from companion.organism.sycophancy_items import write_sycophancy_eval

    cache = cache if cache is not None else default_cache()
    spec = organism_eval_spec(n_per_file, seed)
    return cache.get_or_build(
        "sycophancy-organism-eval",
        spec,
        lambda tmp: write_sycophancy_eval(tmp, n_per_file, seed),
        description=f"organism sycophancy eval, {n_per_file} per file, seed {seed}",
    )


def organism_eval_spec(n_per_file: int, seed: int = 0) -> dict[str, Any]:
    """The cache spec of :func:`organism_eval_dir`'s entry."""
    from companion.backbone.cache import code_fingerprint

    return {"n_per_file": n_per_file, "seed": seed, "code": code_fingerprint("companion.organism.corpus")}
