"""A sweep trained in parts: some of its SAEs per Slurm job, so that a paper-scale sweep spreads over many GPUs.

Every SAE of a sweep sees the same batches in the same order and its own seed, so the members can be trained apart
(:func:`companion.sae.experiment.train_part`, one cache entry of kind "sae-part" per range of members, keyed by the
sweep's own spec and the range) and give exactly the SAEs of one pass over all of them; each part pays for its own
pass over the model's activations.  Once every part is in the cache, the sweep's entry is assembled from them
(:func:`assemble_parts`): the same files under the same key as a sweep trained in one piece.
``ParetoParams.members_per_unit`` sets the size of the parts (0: no parts, one job trains the whole sweep).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

PART_KIND = "sae-part"
"""Cache kind of a range of a sweep's members."""


def part_ranges(n_members: int, per_part: int) -> list[tuple[int, int]]:
    """The member ranges ``[lo, hi)`` of the parts (one range, the whole sweep, when ``per_part`` is 0)."""
    if per_part <= 0 or per_part >= n_members:
        return [(0, n_members)]
    return [(lo, min(lo + per_part, n_members)) for lo in range(0, n_members, per_part)]


def part_spec(sweep_spec: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """The cache spec of members ``lo``..``hi - 1`` of the sweep whose "sae" spec is ``sweep_spec``."""
    return {"sweep": sweep_spec, "members": [lo, hi]}


def assemble_parts(params: Any, sweep_spec: dict[str, Any], n_members: int, tmp: Path) -> bool:
    """Fill ``tmp`` with the sweep's entry from its parts, if every part is in the cache; False (and nothing
    written) otherwise."""
    from companion.backbone.cache import default_cache

    ranges = part_ranges(n_members, params.members_per_unit)
    if len(ranges) == 1:
        return False
    cache = default_cache()
    specs = [part_spec(sweep_spec, lo, hi) for lo, hi in ranges]
    if not all(cache.exists(PART_KIND, s) for s in specs):
        return False
    meta: dict[str, Any] = {}
    for s in specs:
        part = cache.get(PART_KIND, s)
        got = json.loads((part / "sweep.json").read_text())
        meta = {**got, "members": meta.get("members", []) + got["members"]}
        for m in got["members"]:
            shutil.copytree(part / m["folder"], tmp / m["folder"], copy_function=_link_or_copy)
    (tmp / "sweep.json").write_text(json.dumps(meta))
    return True


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file of an entry into another (entries are never modified), copying where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
