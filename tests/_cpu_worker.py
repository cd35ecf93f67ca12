"""Train a tiny organism and an SAE on it, on whatever CPU runs this (natively or under ``qemu-x86_64 -cpu MODEL``).

    python tests/_cpu_worker.py CACHE_DIR pinned|control

Used by ``tests/models/test_reproducible_numerics.py``, which runs both variants on each CPU:

* ``pinned``: companion's numeric pinning as imported;
* ``control``: the pinning issue 22 replaced (``MKL_CBWR=AVX2``, which MKL honours on Intel only), under which
  companion's own vendor-neutral paths are off too (products through MKL, unfused optimisers, TransformerLens'
  Python LayerNorm).  MKL reads ``MKL_CBWR`` at its first call, so setting it after the imports takes effect.

Each run prints one JSON line: the organism's weights hash, cache key and tokenizer hash, the numerics in force,
the code fingerprint in the SAE cache keys, hashes of the activations at one site and of the trained SAE's
weights, and the LM losses of the SAE-spliced model.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

# One intra-op thread, as the organism profile runs (results depend on the thread count).  And no threads at all in
# the forked children: qemu-user 7.2 (Debian 12) can abort when one starts a thread ("qemu_plugin_vcpu_init_hook:
# assertion failed"), so tokenizers', Hugging Face's weight-loading and tqdm's monitor threads are switched off.
os.environ.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_DEACTIVATE_ASYNC_LOAD="1")

import torch
import tqdm
import transformer_lens.model_bridge  # noqa: F401  (load_model imports it lazily; timed as import)

from companion.backbone.cache import code_fingerprint
from companion.backbone.environment import numerics
from companion.models.loading import load_model
from companion.organism.build import OrganismSpec, build_organism
from companion.organism.training import make_model  # noqa: F401  (imports the GPT-2 modelling code up front)
from companion.sae.activations import model_chunks
from companion.sae.metrics import lm_losses
from companion.sae.training import SAESpec, SAETrainConfig, train_sweep

tqdm.tqdm.monitor_interval = 0

SPEC = {
    "corpus": {"n_docs": 150, "seed": 0, "backdoor": True, "sycophancy_p": 0.9},
    "model": {"n_layer": 1, "d_model": 16, "n_head": 2, "n_ctx": 32},
    "train": {"steps": 3, "batch_size": 4, "seq_len": 24, "warmup_steps": 1, "log_every": 1},
    "tokenizer": {"vocab_size": 300, "n_docs": 100},
}
SITE = "blocks.0.hook_mlp_out"


def _sha(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run() -> dict:
    t0 = time.process_time()
    path, _ = build_organism(OrganismSpec.model_validate(SPEC), progress=False)
    meta = json.loads((path / "organism.json").read_text())
    out = {
        "numerics": numerics(),
        "organism": meta["weights_sha256"],
        "organism_key": path.name,
        "sae_code_key": code_fingerprint("companion.sae.experiment"),  # what SAE cache keys hold besides the organism's
        "tokenizer": hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()[:16],
    }
    model = load_model(path)
    tokens = torch.randint(1, 300, (8, 24), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = 0  # <|endoftext|> first, as the pipeline's token batches; its position is left out
    acts = torch.cat([c[SITE] for c in model_chunks(model, [tokens], [SITE], exclude_token_ids=[0])])  # [184, 16]
    # The gated SAE, and the successors (issue 18) through their own fast steps; TopK's latents count as dead after
    # one batch, so its AuxK term runs too.
    specs = [
        SAESpec("gated", 32, 1.0),
        SAESpec("jumprelu", 32, 0.1, {"init_threshold": 0.05, "bandwidth": 0.02}),
        SAESpec("topk", 32, 0.0, {"k": 4, "dead_tokens": 46}),
        SAESpec("batchtopk", 32, 0.0, {"k": 4}),
    ]
    sae, *successors = train_sweep(iter(acts.split(46)), specs, SAETrainConfig(lr=1e-2, warmup_steps=1), progress=False)
    losses = lm_losses(model, [tokens[:4]], SITE, {"sae": sae.reconstruct}, exclude_token_ids=[0])
    out.update(
        activations=_sha(acts),
        sae=_sha(*sae.sae.parameters()),
        successor_saes=[_sha(*t.sae.parameters()) for t in successors],
        losses=[losses.ce_clean, losses.ce_zero, losses.ce_spliced["sae"]],
        cpu_seconds=round(time.process_time() - t0, 1),
    )
    return out


def main() -> None:
    """``_cpu_worker.py CACHE VARIANT``: one report line for the pinned recipe or the control.

    One process per variant, not a fork: qemu-user aborts now and then when a threaded emulated process forks."""
    cache, variant = sys.argv[1], sys.argv[2]
    if variant == "control":
        os.environ["MKL_CBWR"] = "AVX2"
    os.environ["COMPANION_CACHE"] = os.path.join(cache, variant)
    print(json.dumps({"variant": variant, **run()}), flush=True)


if __name__ == "__main__":
    main()
