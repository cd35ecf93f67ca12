"""Exercise the loopback Hub with the real clients, in a fresh process whose environment points them at it
(``python -m tests.rehearsal.clients <check>``, run by ``tests/paper/test_rehearsal_hub.py``); prints one JSON object.

The clients read ``HF_ENDPOINT`` and the offline switches once, at import, so each check runs in a process started
with the right environment rather than patching library constants in the test process.
"""

from __future__ import annotations

import json
import sys


def files_and_gating(repo: str, gated_repo: str) -> dict:
    import huggingface_hub as hh
    from huggingface_hub.errors import GatedRepoError

    out: dict = {}
    path = hh.hf_hub_download(repo, "config.json")
    out["config_downloaded"] = json.load(open(path))["model_type"]
    out["listing"] = sorted(hh.list_repo_files(repo))
    info = hh.HfApi().model_info(repo, files_metadata=True)
    out["sizes"] = {s.rfilename: s.size for s in info.siblings}
    fs = hh.HfFileSystem()
    with fs.open(f"{repo}/model.safetensors", "rb", block_size=16) as f:  # ranged reads
        f.seek(8)
        out["ranged"] = f.read(4).hex()
    out["whole"] = open(hh.hf_hub_download(repo, "model.safetensors"), "rb").read()[8:12].hex()
    try:
        hh.hf_hub_download(gated_repo, "config.json", token=False)
        out["gated_without_token"] = "downloaded"
    except GatedRepoError as e:
        out["gated_without_token"] = f"GatedRepoError {e.response.status_code}"
    out["gated_with_token"] = json.load(open(hh.hf_hub_download(gated_repo, "config.json")))["model_type"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gated_repo)
    out["tokenizer"] = [
        type(tok).__name__,
        tok.bos_token,
        tok.convert_ids_to_tokens(tok("Hello world")["input_ids"])[0],
    ]
    return out


def datasets_stream() -> dict:
    import datasets

    from companion.sae.subjects import _only_the_hub

    out = {}
    with _only_the_hub():
        c4 = datasets.load_dataset("allenai/c4", "en", split="train", streaming=True)
        pile = datasets.load_dataset("monology/pile-uncopyrighted", split="train", streaming=True)
    out["c4_first"] = next(iter(c4))["text"][:40]
    out["c4_keys"] = sorted(next(iter(c4)))
    out["pile_first"] = next(iter(pile))["text"][:40]
    out["pile_meta"] = next(iter(pile))["meta"]
    out["pile_rows"] = sum(1 for _ in pile)
    return out


def reachability() -> dict:
    from companion.models.hub import hub_endpoint, hub_reachable

    return {"endpoint": hub_endpoint(), "reachable": hub_reachable("EleutherAI/pythia-70m")}


def legacy_model() -> dict:
    """gelu-1l (TransformerLens' legacy format) through companion's loader, against the Hugging Face model it was
    written from (:func:`tests.rehearsal.builders.gelu_1l_repo` with ``train_steps=0``)."""
    import torch
    from tests.rehearsal.builders import gelu_1l_hf

    from companion.models.loading import load_model

    model = load_model("gelu-1l", offline=False)
    _, hf = gelu_1l_hf(train_steps=0)
    toks = model.to_tokens(["def f(x):\n    return x + 1", "the river and the city"])
    with torch.no_grad():
        diff = (model(toks) - hf(toks).logits).abs().max().item()
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n == "blocks.0.mlp.hook_post")
    return {
        "type": type(model).__name__,
        "max_logit_diff": diff,
        "bos": toks[:, 0].tolist(),
        "mlp_post": list(cache["blocks.0.mlp.hook_post"].shape),
    }


def sae_release(ref: str) -> dict:
    """A SAELens release read by companion.sae.formats: SAELens' directory, its loader, the Hub (HF_ENDPOINT)."""
    import torch

    from companion.sae.formats import read_sae

    stored = read_sae(ref)
    x = torch.randn(8, stored.sae.d_in, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        again = read_sae(ref).sae(x)  # the second read comes from the companion cache
        same = bool(torch.equal(stored.sae(x), again))
    return {
        "type": type(stored.sae).__name__,
        "d_in": stored.sae.d_in,
        "d_sae": stored.sae.n_latents,
        "model_name": stored.model_name,
        "hook_name": stored.hook_name,
        "cached_read_equal": same,
        "W_enc_00": float(stored.sae.W_enc[0, 0]),
    }


if __name__ == "__main__":
    check = sys.argv[1]
    result = {
        "files": lambda: files_and_gating(sys.argv[2], sys.argv[3]),
        "datasets": datasets_stream,
        "reachability": reachability,
        "legacy": legacy_model,
        "sae_release": lambda: sae_release(sys.argv[2]),
    }[check]()
    print("RESULT " + json.dumps(result))
