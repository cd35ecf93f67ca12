"""The loopback Hub through the real clients (huggingface_hub, transformers, datasets streaming), each in a process
whose environment points it at the loopback: files, listings, sizes, ranged reads, gating with and without a token,
the C4 config declared in README YAML, the Pile's zstd shards (issue 11, blocker 1), and Hub reachability decided
by the clients' own configuration: a proxy and a mirror endpoint (blocker 5)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.rehearsal import builders
from tests.rehearsal.hub import LoopbackHub
from tests.rehearsal.world import ACCEPTED_TOKEN

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # fresh client processes: integration tests, part of make test


@pytest.fixture(scope="module")
def hub():
    h = LoopbackHub(accepted_tokens=(ACCEPTED_TOKEN,)).start()
    h.add_repo("model", "EleutherAI/pythia-70m", builders.pythia_repo("70m", n_layers=1))
    h.add_repo(
        "model",
        "meta-llama/Llama-2-7b-hf",
        builders.llama_repo(tokenizer=builders.llama_tokenizer(chat_template=None), n_layers=1),
        gated=True,
    )
    gelu = builders.gelu_1l_repo(train_steps=0)
    h.add_repo("model", "NeelNanda/GELU_1L512W_C4_Code", gelu)
    h.add_repo(
        "model", json.loads(gelu["config.json"])["tokenizer_name"], builders._saved(builders.neox_tokenizer(seed=3))
    )
    h.add_repo("dataset", "allenai/c4", builders.c4_repo(n_shards=1, docs_per_shard=20))
    h.add_repo("dataset", "monology/pile-uncopyrighted", builders.pile_repo(n_shards=1, docs_per_shard=20))
    sae = builders.saelens_release_sae(16, model_name="pythia-70m-deduped", hook_name="blocks.3.hook_resid_post")
    h.add_repo("model", "ctigges/pythia-70m-deduped__res-sm_processed", {f"3-res-sm/{p}": b for p, b in sae.items()})
    yield h
    h.stop()


def _run(check: str, env: dict, *args: str) -> dict:
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    }
    full.update(env)
    p = subprocess.run(
        [sys.executable, "-m", "tests.rehearsal.clients", check, *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_files_listing_sizes_ranges_and_gating(hub, tmp_path):
    out = _run(
        "files",
        {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path), "HF_TOKEN": ACCEPTED_TOKEN},
        "EleutherAI/pythia-70m",
        "meta-llama/Llama-2-7b-hf",
    )
    repo = hub.repos[("model", "EleutherAI/pythia-70m")]
    assert out["config_downloaded"] == "gpt_neox"
    assert out["listing"] == sorted(repo.files)
    assert out["sizes"] == {p: len(f.data) for p, f in repo.files.items()}
    assert out["ranged"] == out["whole"] == repo.files["model.safetensors"].data[8:12].hex()
    assert any(e["status"] == 206 for e in hub.log), "the file system client read a range"
    assert out["gated_without_token"] == "GatedRepoError 401"
    assert out["gated_with_token"] == "llama"
    assert out["tokenizer"] == ["LlamaTokenizer", "<s>", "<s>"]


def test_datasets_stream_c4_config_and_the_piles_zstd_shards(hub, tmp_path):
    out = _run("datasets", {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path)})
    assert out["c4_keys"] == ["text", "timestamp", "url"] and not out["c4_first"].startswith("realnewslike")
    assert out["pile_meta"]["pile_set_name"] and out["pile_first"]
    assert out["pile_rows"] == 20  # the train/ shard only (val and test are not the train split)
    zst = [e for e in hub.log if e["path"].endswith(".jsonl.zst") and e["status"] in (200, 206)]
    assert zst, "the Pile's zstd shards were read"
    c4_paths = {
        e["path"] for e in hub.log if "/datasets/allenai/c4/resolve/" in e["path"] and e["status"] in (200, 206)
    }
    assert any("/en/c4-train." in p for p in c4_paths) and not any("realnewslike" in p for p in c4_paths)


def test_reachability_follows_the_clients_proxy_and_endpoint(hub, tmp_path):
    # A mirror name that does not resolve, reached through an HTTP proxy (the loopback Hub also answers proxied
    # requests): a raw socket to the endpoint's host fails, the clients succeed.
    out = _run(
        "reachability",
        {
            "HF_ENDPOINT": "http://hub-mirror.invalid",
            "HTTP_PROXY": hub.endpoint,
            "http_proxy": hub.endpoint,
            "NO_PROXY": "",
            "no_proxy": "",
            "HF_HOME": str(tmp_path),
        },
    )
    assert out == {"endpoint": "http://hub-mirror.invalid", "reachable": True}
    assert any(e["via_proxy"] for e in hub.log)
    # No proxy: the same mirror name is unreachable; and the offline switch wins over everything.
    out = _run(
        "reachability",
        {"HF_ENDPOINT": "http://hub-mirror.invalid", "HTTP_PROXY": "", "http_proxy": "", "HF_HOME": str(tmp_path)},
    )
    assert out["reachable"] is False
    out = _run("reachability", {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    assert out["reachable"] is False


def test_a_legacy_transformerlens_repo_loads_as_a_bridge_with_the_weights_it_was_written_from(hub, tmp_path):
    # gelu-1l's layout (TransformerLens config.json, HookedTransformer state dict in model_final.pth), read by
    # companion.models.tl_legacy: the logits are those of the GPT-2-style model the stand-in was converted from.
    out = _run("legacy", {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path)})
    assert out["type"] == "TransformerBridge"
    assert out["max_logit_diff"] < 1e-4
    assert out["bos"] == [0, 0]  # <|endoftext|> prepended, as TransformerLens does for gelu-1l
    assert out["mlp_post"] == [2, out["mlp_post"][1], 128]  # d_mlp of the stand-in
    assert ("model", "NeelNanda/GELU_1L512W_C4_Code") in hub.requested_repos()


def test_a_saelens_release_id_is_read_through_saelens_directory_and_the_hub(hub, tmp_path):
    # SAELens' pretrained-SAE directory maps the release to ctigges' repository and folder; SAELens' loader fetches
    # the files through huggingface_hub (HF_ENDPOINT: the loopback Hub); the converted SAE is cached.
    from safetensors.torch import load as load_safetensors

    out = _run(
        "sae_release",
        {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "COMPANION_CACHE": str(tmp_path / "cache")},
        "pythia-70m-deduped-res-sm:blocks.3.hook_resid_post",
    )
    served = load_safetensors(
        hub.repos[("model", "ctigges/pythia-70m-deduped__res-sm_processed")]
        .files["3-res-sm/sae_weights.safetensors"]
        .data
    )
    assert out["type"] == "BaselineSAE" and (out["d_in"], out["d_sae"]) == (16, 64)
    assert (out["model_name"], out["hook_name"]) == ("pythia-70m-deduped", "blocks.3.hook_resid_post")
    assert out["W_enc_00"] == float(served["W_enc"][0, 0]) and out["cached_read_equal"]
    got = [e["path"] for e in hub.log if e["status"] == 200 and "pythia-70m-deduped__res-sm_processed" in e["path"]]
    assert any(p.endswith("3-res-sm/sae_weights.safetensors") for p in got)
