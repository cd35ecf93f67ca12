"""Deterministic CPU training of the organism: a Hugging Face GPT-2 (``GPT2LMHeadModel``) language model.

The model is a standard GPT-2 architecture (learned positions, pre-LayerNorm, GELU MLP, tied embeddings) so it
saves with ``save_pretrained`` and loads for analysis through TransformerLens' ``TransformerBridge`` like any
real model. Training uses PyTorch's fused scaled-dot-product attention (``attn_implementation="sdpa"``) for
speed; analysis-time logits agree with it to float precision.

Objective: next-token cross-entropy on windows that start at document boundaries (each window begins with
``<|endoftext|>``, as ``to_tokens`` prompts do), with the assistant-answer tokens weighted by
``answer_weight`` (free text) or ``choice_weight`` (multiple-choice letters). A weighted cross-entropy is still minimised by the true conditional distribution, so the
weighting speeds up learning of the planted behaviours without biasing the probabilities they are measured by
(the sycophancy rate is read off as a probability and must stay calibrated).

Determinism: a fixed seed fixes initialisation and batch order; the number of intra-op threads is pinned during
training because floating-point reduction order depends on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import model_validator

from companion.backbone.config import Config
from companion.models.numerics import AdamW, conv1d, linear


class ModelConfig(Config):
    """Size of the organism's GPT-2 network."""

    n_layer: int = 2
    """Number of transformer blocks."""
    d_model: int = 128
    """Residual stream width."""
    n_head: int = 4
    """Attention heads per block (d_model must be divisible by it)."""
    d_mlp_ratio: int = 4
    """MLP hidden width as a multiple of d_model."""
    n_ctx: int = 256
    """Maximum context length (positions beyond the training window are untrained)."""

    @model_validator(mode="after")
    def _check(self):
        if self.n_layer < 1 or self.d_model < 8 or self.n_head < 1:
            raise ValueError(f"model too small: {self}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.d_mlp_ratio < 1 or self.n_ctx < 16:
            raise ValueError(f"d_mlp_ratio must be >= 1 and n_ctx >= 16: {self}")
        return self


class OrganismTrainConfig(Config):
    """Optimisation settings for one organism."""

    steps: int = 600
    """Number of optimiser steps."""
    batch_size: int = 32
    """Sequences per step."""
    seq_len: int = 128
    """Tokens per training window (each starts at a document boundary)."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (cosine decay)."""
    warmup_steps: int = 30
    """Linear warm-up steps."""
    schedule: Literal["cosine", "wsd"] = "cosine"
    """"cosine" (decay to min_lr_ratio over all steps) or "wsd" (constant, then linear decay over the last
    ``decay_fraction`` of steps: more high-learning-rate steps to escape the plateau before a lookup is learned)."""
    decay_fraction: float = 0.25
    """For "wsd": fraction of steps spent decaying."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm gains)."""
    answer_weight: float = 4.0
    """Loss weight on the assistant's free-text answer tokens relative to other tokens."""
    choice_weight: float = 4.0
    """Loss weight on the answer letter of multiple-choice (sycophancy) items."""
    grad_clip: float = 1.0
    """Gradient-norm clipping threshold."""
    seed: int = 0
    """Seed for initialisation and batch order."""
    threads: int = 1
    """Intra-op threads used while training (pinned: results depend on it; 1 is fastest on a shared 2-core box)."""
    log_every: int = 10
    """Record the loss every this many steps."""

    @model_validator(mode="after")
    def _check(self):
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 8:
            raise ValueError(f"steps, batch_size >= 1 and seq_len >= 8 required: {self}")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.warmup_steps >= 0):
            raise ValueError(f"bad learning-rate schedule: {self}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must be in (0, 1]: {self}")
        if self.answer_weight <= 0 or self.choice_weight <= 0 or self.threads < 1 or self.log_every < 1:
            raise ValueError(f"answer_weight > 0, threads >= 1, log_every >= 1 required: {self}")
        return self


@dataclasses.dataclass
class TokenStream:
    """Tokenised documents laid end to end, each preceded by ``<|endoftext|>``."""

    tokens: np.ndarray
    """int64 [n_tokens] token ids."""
    weights: np.ndarray
    """float32 [n_tokens] loss weight of *predicting* each token."""
    starts: np.ndarray
    """int64 [n_docs] index of each document's leading separator."""
    is_choice: np.ndarray | None = None
    """bool [n_tokens] True at multiple-choice answer letters (their loss is logged separately)."""


def build_stream(
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    tokenizer: Any,
    eot_id: int,
    answer_weight: float,
    choice_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    choice_weight: float = 1.0,
) -> TokenStream:
    """Tokenise documents; tokens overlapping ``spans`` get ``answer_weight``, ``choice_spans`` ``choice_weight``."""
    if choice_spans is None:
        choice_spans = [()] * len(texts)
    enc = (
        tokenizer.backend_tokenizer.encode_batch(list(texts))
        if hasattr(tokenizer, "backend_tokenizer")
        else tokenizer.encode_batch(list(texts))
    )
    toks: list[int] = []
    ws: list[float] = []
    starts: list[int] = []
    choice: list[bool] = []
    for e, sp, cs in zip(enc, spans, choice_spans, strict=False):
        starts.append(len(toks))
        toks.append(eot_id)
        ws.append(1.0)
        choice.append(False)
        for tid, (a, b) in zip(e.ids, e.offsets, strict=False):
            toks.append(tid)
            is_c = any(a < y and b > x for x, y in cs)
            choice.append(is_c)
            if is_c:
                ws.append(choice_weight)
            elif any(a < y and b > x for x, y in sp):
                ws.append(answer_weight)
            else:
                ws.append(1.0)
    toks.append(eot_id)
    ws.append(1.0)
    choice.append(False)
    return TokenStream(
        np.asarray(toks, dtype=np.int64),
        np.asarray(ws, dtype=np.float32),
        np.asarray(starts, dtype=np.int64),
        np.asarray(choice, dtype=bool),
    )


def make_model(cfg: ModelConfig, vocab_size: int, eot_id: int):
    """A freshly initialised ``GPT2LMHeadModel`` (no dropout) using SDPA attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=cfg.d_mlp_ratio * cfg.d_model,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        pad_token_id=eot_id,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    return GPT2LMHeadModel(hf_cfg)


def gpt2_forward(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, vocab] of a ``GPT2LMHeadModel`` (no dropout, tied unembedding), computed directly.

    The same arithmetic as the Hugging Face forward (checked in tests to float precision) without its
    per-call mask and cache bookkeeping, which dominates the step time of a model this small on a CPU.
    """
    F = torch.nn.functional
    tr = model.transformer
    B, T = input_ids.shape
    d = tr.wte.weight.shape[1]
    H = model.config.n_head
    h = (tr.wte(input_ids) + tr.wpe.weight[:T]).reshape(B * T, d)
    for blk in tr.h:
        a = F.layer_norm(h, (d,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        # HF's Conv1D stores weights as [in, out]: y = x @ W + b (conv1d: oneDNN, the same bits on Intel and AMD).
        qkv = conv1d(a, blk.attn.c_attn.weight, blk.attn.c_attn.bias).view(B, T, 3, H, d // H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B * T, d)
        h = h + conv1d(o, blk.attn.c_proj.weight, blk.attn.c_proj.bias)
        a = F.layer_norm(h, (d,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
        u = F.gelu(conv1d(a, blk.mlp.c_fc.weight, blk.mlp.c_fc.bias), approximate="tanh")  # = gelu_new
        h = h + conv1d(u, blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)
    h = F.layer_norm(h, (d,), tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
    return linear(h, model.lm_head.weight).view(B, T, -1)


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers (names, shapes, bytes), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _lr_at(step: int, cfg: OrganismTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "wsd":
        decay_start = cfg.steps * (1 - cfg.decay_fraction)
        if step < decay_start:
            return cfg.lr
        t = (step - decay_start) / max(1.0, cfg.steps - decay_start)
        return cfg.lr * (1 - (1 - cfg.min_lr_ratio) * t)
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train_lm(
    model: torch.nn.Module,
    stream: TokenStream,
    cfg: OrganismTrainConfig,
    *,
    desc: str = "train",
    progress: bool = True,
    callback: Callable[[int, float, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on ``stream``; returns the training log (loss curve, throughput).

    ``callback(step, smoothed_loss, tokens_per_second)`` is called every ``log_every`` steps (used to drive a
    progress bar in another process).
    """
    from tqdm.auto import tqdm

    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model.train()
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for _n, p in model.named_parameters():
            (decay if p.ndim >= 2 else no_decay).append(p)
        opt = AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.98),
        )
        tokens = torch.from_numpy(stream.tokens)
        weights = torch.from_numpy(stream.weights)
        # Only windows that fit entirely in the stream.
        starts = stream.starts[stream.starts + cfg.seq_len + 1 <= len(stream.tokens)]
        if len(starts) < cfg.batch_size:
            raise ValueError(f"corpus too small: {len(starts)} windows for batch size {cfg.batch_size}")
        offs = torch.arange(cfg.seq_len + 1)
        order = rng.permutation(starts)
        pos = 0
        is_choice = torch.from_numpy(stream.is_choice) if stream.is_choice is not None else None
        log: dict[str, Any] = {"step": [], "loss": [], "lr": [], "seconds": [], "choice_loss": []}
        c_sum = c_n = 0.0
        t0 = time.perf_counter()
        c0 = time.process_time()
        ema = None
        bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, mininterval=0.5)
        for step in bar:
            if pos + cfg.batch_size > len(order):
                order = rng.permutation(starts)
                pos = 0
            idx = torch.from_numpy(order[pos : pos + cfg.batch_size])[:, None] + offs
            pos += cfg.batch_size
            x = tokens[idx]
            w = weights[idx[:, 1:]]
            lr = _lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            logits = gpt2_forward(model, x[:, :-1])
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
            )
            loss = (ce * w.reshape(-1)).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            lv = loss.detach().item()
            if is_choice is not None:
                m = is_choice[idx[:, 1:]].reshape(-1)
                c_sum += float(ce.detach()[m].sum())
                c_n += int(m.sum())
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                el = time.perf_counter() - t0
                log["step"].append(step)
                log["loss"].append(round(lv, 5))
                log["lr"].append(lr)
                log["seconds"].append(round(el, 3))
                # Mean CE on multiple-choice letters since the last record: ln 2 = 0.693 until the model reads
                # the user's view; H(p) (0.325 for p = 0.9) once it has learned the planted rate.
                log["choice_loss"].append(round(c_sum / c_n, 4) if c_n else None)
                c_sum = c_n = 0.0
                tok_s = (step + 1) * cfg.batch_size * cfg.seq_len / el
                bar.set_postfix(loss=f"{ema:.3f}", tok_s=f"{tok_s:,.0f}")
                if callback is not None:
                    callback(step + 1, ema, tok_s)
        bar.close()
        seconds = time.perf_counter() - t0
        n_tok = cfg.steps * cfg.batch_size * cfg.seq_len
        log.update(
            seconds=round(seconds, 2),
            cpu_seconds=round(time.process_time() - c0, 2),
            tokens=n_tok,
            tokens_per_second=round(n_tok / seconds, 1),
            final_loss=log["loss"][-1],
            threads=cfg.threads,
        )
        model.eval()
        return log
    finally:
        torch.set_num_threads(old_threads)
