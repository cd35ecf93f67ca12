"""Notebook 04's scorer against lm-evaluation-harness: the same model, the same items, equal log-likelihoods.

    python benchmarks/bench_lm_eval.py [--items 40] [--batch-size 16] [--templates paren,anthropic] [--small]

A Pythia-shaped GPT-NeoX checkpoint (pythia-70m's dimensions and vocabulary size, random weights, a NeoX-style
byte-level BPE tokenizer trained here on the items) is written to a temporary folder; nothing is downloaded.
The items are held-out organism items in Anthropic's schema, read through the real loader.  Both systems score
every (prompt, answer) pair of every item under each template:

* ours: :func:`companion.sycophancy.scoring.score_items` on the model loaded as a TransformerBridge (what notebook
  04 runs; BOS prepended);
* lm-evaluation-harness: ``HFLM(...).loglikelihood`` with the context ``<bos> + prompt`` (lm-eval then adds no
  second BOS, so both see the same tokens), its one-token-continuation logits cache on.

The script fails unless every log-likelihood agrees within ``--atol``, then prints items/s for both.  Goal: ours
at least as fast as lm-evaluation-harness.  ``--small`` uses a 2-layer, 32-wide model (the agreement test runs
that).  Skips with a message when lm-eval is not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PYTHIA_70M = dict(
    hidden_size=512,
    num_hidden_layers=6,
    num_attention_heads=8,
    intermediate_size=2048,
    vocab_size=50304,
    rotary_pct=0.25,
    max_position_embeddings=2048,
    use_parallel_residual=True,
)
SMALL = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=None,
    rotary_pct=0.25,
    max_position_embeddings=2048,
    use_parallel_residual=True,
)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The two systems' log-likelihoods and speeds on one set of items."""

    ours: np.ndarray
    """Log-likelihood of each (item, answer) pair, ours, in request order."""
    lm_eval: np.ndarray
    """The same from lm-evaluation-harness."""
    n_items: int
    """Items scored (per template, summed over templates)."""
    seconds_ours: float
    """Wall time of our scoring (model already loaded)."""
    seconds_lm_eval: float
    """Wall time of lm-eval's ``loglikelihood`` (model already loaded)."""

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(self.ours - self.lm_eval)))


def _items(directory: Path, n_per_dataset: int):
    from companion.organism.sycophancy_items import write_sycophancy_eval
    from companion.sycophancy.data import load_sycophancy_dir

    write_sycophancy_eval(directory, n_per_dataset, seed=0)
    return [it for ds in load_sycophancy_dir(directory).values() for it in ds.items]


def build_model(directory: Path, texts: list[str], *, small: bool, seed: int = 0) -> Path:
    """A randomly initialised GPT-NeoX with a NeoX-style tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=2048 if small else 4096,
            special_tokens=["<|endoftext|>", "<|padding|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|padding|>",
    )
    dims = dict(SMALL if small else PYTHIA_70M)
    dims["vocab_size"] = dims["vocab_size"] or len(hf_tok)
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        **dims, bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id, tie_word_embeddings=False
    )
    GPTNeoXForCausalLM(cfg).save_pretrained(directory)
    hf_tok.save_pretrained(directory)
    return directory


def compare(
    n_per_dataset: int = 40,
    templates: tuple[str, ...] = ("paren", "anthropic"),
    *,
    batch_size: int = 16,
    small: bool = False,
    workdir: Path | None = None,
    threads: int | None = 1,
) -> Comparison:
    """Score the same items with both systems; returns their log-likelihoods and timings.

    ``threads`` pins torch's intra-op threads for both (1: fair and fastest on a small shared CPU; None: default).
    """
    import torch

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _compare(n_per_dataset, templates, batch_size, small, workdir)
    finally:
        torch.set_num_threads(old_threads)


def _compare(n_per_dataset, templates, batch_size, small, workdir) -> Comparison:
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from companion.models.loading import load_model
    from companion.models.templates import get_template
    from companion.sycophancy.scoring import score_items

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        items = _items(root / "data", n_per_dataset)
        tpls = [get_template(t) for t in templates]
        texts = [tp.prompt(it) + c for tp in tpls for it in items for c in tp.continuations(it)]
        model_dir = build_model(root / "model", texts, small=small)

        bridge = load_model(model_dir)
        score_items(bridge, items[:2], tpls[0])  # first-call set-up is not part of the throughput
        t0 = time.perf_counter()
        ours = []
        for tp in tpls:
            for dataset in dict.fromkeys(it.dataset for it in items):
                subset = [it for it in items if it.dataset == dataset]
                lp = score_items(bridge, subset, tp, batch_size=batch_size).logprobs
                ours += [lp[i, c] for i, it in enumerate(subset) for c in range(len(it.labels))]
        seconds_ours = time.perf_counter() - t0

        lm = HFLM(pretrained=str(model_dir), backend="causal", device="cpu", dtype="float32", batch_size=batch_size)
        bos = lm.tokenizer.bos_token
        requests = [
            Instance(request_type="loglikelihood", doc={}, arguments=(bos + tp.prompt(it), cont), idx=k)
            for tp in tpls
            for dataset in dict.fromkeys(it.dataset for it in items)
            for it in items
            if it.dataset == dataset
            for k, cont in enumerate(tp.continuations(it))
        ]
        with torch.no_grad():  # scoped: compare() is also called inside the test suite's process
            lm.loglikelihood(requests[:2], disable_tqdm=True)  # likewise
            t0 = time.perf_counter()
            theirs = [ll for ll, _greedy in lm.loglikelihood(requests, disable_tqdm=True)]
            seconds_lm_eval = time.perf_counter() - t0
    return Comparison(
        np.asarray(ours, dtype=np.float64),
        np.asarray(theirs, dtype=np.float64),
        len(items) * len(tpls),
        seconds_ours,
        seconds_lm_eval,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=40, help="items per dataset (three datasets)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--templates", default="paren,anthropic")
    ap.add_argument("--small", action="store_true", help="a 2-layer, 32-wide model instead of pythia-70m's shape")
    ap.add_argument("--atol", type=float, default=1e-4)
    a = ap.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("lm-eval is not installed (pip install lm-eval, or make setup): nothing to compare")
        return 0
    r = compare(a.items, tuple(a.templates.split(",")), batch_size=a.batch_size, small=a.small)
    print(f"{r.ours.size} log-likelihoods, max |ours - lm-eval| = {r.max_abs_diff:.2e} (allowed {a.atol:g})")
    if not r.max_abs_diff <= a.atol:
        print("FAIL: the two systems disagree")
        return 1
    ours, theirs = r.n_items / r.seconds_ours, r.n_items / r.seconds_lm_eval
    print(
        f"ours:    {ours:8.1f} items/s ({r.seconds_ours:.2f} s)\nlm-eval: {theirs:8.1f} items/s "
        f"({r.seconds_lm_eval:.2f} s)\nratio:   {ours / theirs:.2f}x (goal >= 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
