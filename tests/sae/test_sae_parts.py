"""A sweep trained in parts (companion.sae.parts: some SAEs per Slurm job) is assembled into the very cache entry a
sweep trained in one piece makes: same key, same files, bit for bit."""

from __future__ import annotations

import json

import pytest
from test_sae_experiments import _params, tiny_subject  # noqa: F401  (the fixture)

from companion.sae.experiment import site_sweep, train_part
from companion.sae.parts import part_ranges

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_sweep_in_parts_is_assembled_into_the_entry_of_the_whole_sweep(tiny_subject, tmp_path, monkeypatch):  # noqa: F811
    target = "tiny@blocks.0.hook_mlp_out"
    P = _params(members_per_unit=3)  # 7 SAEs: parts [0, 3), [3, 6) and [6, 7), the last trained alone (its own seed)
    whole = site_sweep(P.replace(members_per_unit=0), target)
    whole_dir = tmp_path / "cache" / "sae" / whole.cache_key
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "parts-cache"))
    assert part_ranges(len(whole.saes), 3) == [(0, 3), (3, 6), (6, 7)]
    parts = [train_part(P, target, lo, hi) for lo, hi in part_ranges(len(whole.saes), 3)]
    assembled = site_sweep(P, target)
    assert assembled.cache_key == whole.cache_key and not assembled.from_cache
    entry = tmp_path / "parts-cache" / "sae" / whole.cache_key

    def without_timing(meta):  # each SAE's measured step time (its log's seconds) differs from run to run
        for m in meta["members"]:
            m["log"].pop("seconds")
        return meta

    assert without_timing(json.loads((entry / "sweep.json").read_text())) == without_timing(
        json.loads((whole_dir / "sweep.json").read_text())
    )
    for m in json.loads((entry / "sweep.json").read_text())["members"]:
        for f in sorted((whole_dir / m["folder"]).iterdir()):
            assert (entry / m["folder"] / f.name).read_bytes() == f.read_bytes(), f"{m['folder']}/{f.name}"
        # Assembled from the parts (hard links into their entries), not trained again.
        part = parts[int(m["folder"][-2:]) // 3]
        weights = entry / m["folder"] / "sae_weights.safetensors"
        assert (
            weights.stat().st_ino
            == (tmp_path / "parts-cache" / "sae-part" / part / m["folder"] / "sae_weights.safetensors").stat().st_ino
        )
