"""The paper profile, rehearsed end to end (issue 11): notebooks 01-04 execute under the ``rehearsal`` profile through
the runner, against a loopback Hub serving stand-ins of every repository the paper profile names, with the real
clients (huggingface_hub, transformers, datasets streaming, urllib for the sycophancy files).

Asserted: every notebook ran; every paper-profile model and dataset id (and the sycophancy files) was requested from
the loopback Hub; no process made a non-loopback connection or lookup (the network guard runs in this process and in
every kernel); the gated control was fetched with the token; every figure is stamped as a rehearsal figure,
``fallback: true``; notebook 00 was skipped with its reason.
"""

import json
import time
from pathlib import Path

import pytest
from tests.rehearsal import netguard
from tests.rehearsal.harness import rehearsal_environment

from companion.backbone import runner
from companion.backbone.profiles import load_profile

ROOT = Path(__file__).resolve().parents[2]
# Notebooks 01-04 end to end against the loopback Hub: make test-system.
pytestmark = [pytest.mark.slow, pytest.mark.system]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rehearsal")
    lines: list[str] = []
    with rehearsal_environment(tmp) as (hub, ids, guard_log):
        import os

        os.environ["COMPANION_FIGURES_DIR"] = str(tmp / "figures")
        os.environ["COMPANION_CACHE"] = str(tmp / "cache")  # nothing from an earlier run is trusted
        t0 = time.time()
        results = runner.run_notebooks("rehearsal", root=ROOT, build_dir=tmp / "executed", force=True, log=lines.append)
        seconds = time.time() - t0
        yield {
            "results": results,
            "hub": hub,
            "ids": ids,
            "refusals": netguard.refusals(guard_log),
            "figures": tmp / "figures",
            "log": lines,
            "seconds": seconds,
            "executed": tmp / "executed",
        }


def test_notebooks_01_to_04_run_and_00_is_skipped_with_its_reason(rehearsal):
    status = {r.notebook[:2]: r.status for r in rehearsal["results"]}
    print(
        f"rehearsal: {rehearsal['seconds']:.0f} s; "
        + ", ".join(f"{r.notebook} {r.seconds:.0f}s" for r in rehearsal["results"])
    )
    assert status == {
        "00": "not applicable",
        "01": "ran",
        "02": "ran",
        "03": "ran",
        "04": "ran",
        "05": "not applicable",
    }
    assert any(
        "00_model_organism.ipynb: skipped, not a notebook of profile 'rehearsal'" in line and "organisms" in line
        for line in rehearsal["log"]
    )


def test_every_request_stayed_on_the_loopback_and_every_paper_id_was_requested(rehearsal):
    assert rehearsal["refusals"] == [], f"non-loopback connections or lookups: {rehearsal['refusals'][:5]}"
    hub, ids = rehearsal["hub"], rehearsal["ids"]
    assert {e["client"] for e in hub.log} == {"127.0.0.1"}
    requested = hub.requested_repos()
    missing = [("model", m) for m in ids.models if ("model", m) not in requested]
    missing += [("dataset", d) for d in ids.datasets if ("dataset", d) not in requested]
    assert not missing, f"paper-profile ids never requested: {missing}"
    files = {e["path"].rsplit("/", 1)[-1] for e in hub.log if e["path"].startswith("/raw/") and e["status"] == 200}
    assert set(ids.sycophancy_files) <= files
    # Weights and data were actually downloaded (not only listed): every model's weights file, both datasets' shards.
    got = {e["path"] for e in hub.log if e["method"] == "GET" and e["status"] in (200, 206)}
    for m in ids.models:
        assert any(p.startswith(f"/{m}/resolve/") and p.endswith((".safetensors", ".pth")) for p in got), m
    assert any(p.endswith(".json.gz") and "/datasets/allenai/c4/" in p for p in got)
    assert any(p.endswith(".jsonl.zst") and "/datasets/monology/pile-uncopyrighted/" in p for p in got)
    # The published SAE the paper profile measures, by its SAELens release id: fetched from its repository and folder.
    assert ids.saes, "the paper profile names a SAELens release in external_saes"
    for repo, folder, _, _ in ids.saes:
        assert any(
            p.startswith(f"/{repo}/resolve/") and p.endswith(f"/{folder}/sae_weights.safetensors") for p in got
        ), (repo, folder)
    # The gated control was fetched with a token, as the paper profile documents (HF_TOKEN).
    gated = [e for e in hub.log if e["path"].startswith("/meta-llama/") and e["status"] == 200]
    assert gated and all(e["token"] for e in gated)


def test_the_published_sae_is_measured_beside_the_sweeps(rehearsal):
    # Notebooks 01 and 02 evaluated the release at its own target; its points are in the all-architecture figures.
    side = json.loads((rehearsal["figures"] / "01_pareto_all.json").read_text())
    series = {s for panel in side["data"].values() for s in panel}
    assert "baseline: pythia-70m-deduped-res-sm:blocks.3.hook_resid_post" in series
    assert {"gated", "jumprelu", "topk", "batchtopk"} <= series
    paper = json.loads((rehearsal["figures"] / "01_pareto.json").read_text())
    assert {s for panel in paper["data"].values() for s in panel} == {"baseline", "gated"}


def test_every_figure_is_stamped_as_a_rehearsal_figure(rehearsal):
    sidecars = sorted(rehearsal["figures"].glob("*.json"))
    made_by = {json.loads(p.read_text())["notebook"][: len("notebooks/01")] for p in sidecars}
    assert made_by == {f"notebooks/0{i}" for i in (1, 2, 3, 4)}
    stamp = load_profile("rehearsal").stamp
    assert stamp.startswith("REHEARSAL")
    for p in sidecars:
        side = json.loads(p.read_text())
        assert side["profile"] == "rehearsal" and side["fallback"] is True and side["stamp"] == stamp, p.name
    for nb in sorted((rehearsal["executed"] / "rehearsal").glob("0*.ipynb")):
        meta = json.loads(nb.read_text())["metadata"]["companion"]
        assert meta["executed_profile"] == "rehearsal" and meta["fallback"] is True
