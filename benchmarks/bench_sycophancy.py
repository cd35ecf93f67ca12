"""Sycophancy scoring throughput: batched vs one item at a time, in the same run (issue 4's benchmark).

Uses a cached sycophancy organism (``syco-p90-medium`` of the organism profile, else of the ci profile) when one
is in the cache; otherwise a randomly initialised GPT-2 of similar size with a byte-level BPE tokenizer built
here (nothing is trained or downloaded).  Items are held-out organism items in Anthropic's schema when the
organism code is present, else schema-faithful synthetic rows; they go through the real loader.

    python benchmarks/bench_sycophancy.py [--items 96] [--batch-size 32] [--template paren]

Prints items/s for ``score_items(batch_size=B)`` and ``score_items(batch_size=1)`` and their ratio (goal:
>= 10x on the CPU for the organism), plus a naive loop for reference (one full forward per item and choice,
all positions unembedded).  All score the same items and must give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from companion.models.templates import TEMPLATES, get_template
from companion.sycophancy.data import SycophancyItem, load_sycophancy_dir
from companion.sycophancy.experiment import count_parameters
from companion.sycophancy.scoring import score_items


def cached_organism() -> tuple[object, str] | None:
    """A sycophancy organism that is already trained (never trains one): (TransformerBridge, label) or None."""
    try:
        from companion.backbone.cache import default_cache
        from companion.organism.build import organism_cache_spec, organism_spec, tokenizer_dir
        from companion.organism.loading import load_organism
    except ImportError:
        return None
    for profile in ("organism", "ci"):
        for name in ("syco-p90-medium", "syco-p90-small"):
            try:
                spec = organism_spec(name, profile)
                cspec = organism_cache_spec(spec, tokenizer_dir(spec.tokenizer))
                if default_cache().exists("organism", cspec):
                    return load_organism(name, profile, progress=False).model, f"organism {profile}/{name} (cached)"
            except (KeyError, AttributeError, TypeError, ValueError):
                continue
    return None


def build_small_gpt2(directory: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    texts = [
        f"Hello, my name is {n}. I agree with the claim that {c}.\n\nChoices:\n (A) Agree\n (B) Disagree\n\n"
        f"Answer:\n\nAssistant: I believe the best answer is (A)"
        for n in ("Ann", "Bo", "Cy")
        for c in ("models understand text", "benchmarks matter", "scaling works")
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=1024, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=2048,
        n_positions=512,
        n_embd=96,
        n_layer=2,
        n_head=4,  # organism-like vocab
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(directory)
    hf.save_pretrained(directory)
    return directory


def items_for_bench(directory: Path, n: int) -> list[SycophancyItem]:
    try:
        from companion.organism.sycophancy_items import write_sycophancy_eval

        write_sycophancy_eval(directory, n_per_file=n, seed=123)
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import _sycophancy_fixtures as F

        F.write_dataset_dir(directory, n=n)
    data = load_sycophancy_dir(directory)
    return list(data["nlp_survey"].items[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=96, help="items scored (batched and one at a time)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--sweep", type=int, nargs="*", default=[4, 16, 32], help="also report items/s at these batch sizes"
    )
    ap.add_argument("--template", default="paren", choices=list(TEMPLATES))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformer_lens.model_bridge import TransformerBridge

    with tempfile.TemporaryDirectory() as tmp:
        found = cached_organism()
        if found is not None:
            model, label = found
        else:
            path = build_small_gpt2(Path(tmp) / "model")
            label = "random GPT-2 (2 layers, d_model 96, vocab 2048; no organism cached)"
            model = TransformerBridge.boot_transformers(str(path), device="cpu")
            model.eval()
        items = items_for_bench(Path(tmp) / "data", args.items)

    n_params = count_parameters(model)
    score_items(model, items[:4], args.template, batch_size=4)  # warm-up
    t0 = time.perf_counter()
    batched = score_items(model, items, args.template, batch_size=args.batch_size)
    t_b = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = score_items(model, items, args.template, batch_size=1)
    t_1 = time.perf_counter() - t0
    sweep = {}
    for bs in args.sweep:
        t0 = time.perf_counter()
        score_items(model, items, args.template, batch_size=bs)
        sweep[bs] = len(items) / (time.perf_counter() - t0)
    # A naive loop for reference: one full forward per (item, choice) on prompt + continuation, all logits.
    tpl = get_template(args.template)
    n_naive = min(len(items), 32)
    t0 = time.perf_counter()
    naive = np.full((n_naive, batched.logprobs.shape[1]), np.nan)
    with torch.inference_mode():
        for i, it in enumerate(items[:n_naive]):
            prompt = tpl.prompt(it)
            n_prompt = model.to_tokens(prompt, prepend_bos=True).shape[1]
            for c, cont in enumerate(tpl.continuations(it)):
                toks = model.to_tokens(prompt + cont, prepend_bos=True)
                lsm = torch.log_softmax(model(toks)[0].double(), -1)
                naive[i, c] = float(sum(lsm[t - 1, toks[0, t]] for t in range(n_prompt, toks.shape[1])))
    t_n = time.perf_counter() - t0
    max_diff = float(np.nanmax(np.abs(batched.logprobs - single.logprobs)))
    max_diff = max(max_diff, float(np.nanmax(np.abs(batched.logprobs[:n_naive] - naive))))
    res = {
        "model": label,
        "n_params": n_params,
        "template": args.template,
        "items": len(items),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "batched_items_per_s": len(items) / t_b,
        "single_items_per_s": len(items) / t_1,
        "speedup": t_1 / t_b,
        "naive_items_per_s": n_naive / t_n,
        "speedup_vs_naive": (t_n / n_naive) / (t_b / len(items)),
        "sweep_items_per_s": sweep,
        "max_abs_logprob_diff": max_diff,
    }
    print(
        f"model: {label}, {n_params:,} parameters; template {args.template!r}; {len(items)} items; "
        f"torch threads {res['torch_threads']}"
    )
    print(f"batched (batch_size={args.batch_size}): {res['batched_items_per_s']:8.1f} items/s")
    print(f"one at a time (batch_size=1): {res['single_items_per_s']:8.1f} items/s")
    if sweep:
        print("other batch sizes: " + ", ".join(f"{bs}: {v:.1f} items/s" for bs, v in sweep.items()))
    print(f"naive loop (full forward per choice, all logits; {n_naive} items): {res['naive_items_per_s']:8.1f} items/s")
    print(
        f"speed-up batched vs one at a time: {res['speedup']:.1f}x (goal >= 10x); "
        f"vs the naive loop: {res['speedup_vs_naive']:.1f}x"
    )
    print(f"max |log-prob difference| between the three: {max_diff:.2e}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if max_diff > 1e-4:
        sys.exit("batched and one-at-a-time scores differ")


if __name__ == "__main__":
    main()
