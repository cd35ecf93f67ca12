"""Scoring text with a language model: the one place that tokenises, pads, batches and reads logits or activations.

Every caller that runs a model over many short texts goes through here: the probes (final-token residual
activations, the behavioural yes/no score), the sycophancy scorer and the organism's multiple-choice check.

* **Tokenisation.** ``model.to_tokens(text, prepend_bos=...)`` without truncation; a text longer than the
  model's context is an error naming it (:class:`SequenceTooLongError`), never silently cut.  ``prepend_bos=None``
  keeps the model's own default (TransformerLens: yes for GPT-2 and Llama, no for GPT-NeoX).
* **Continuations.** The tokens of ``continuation`` after ``prompt`` are the tail of the *joint* tokenisation
  ``prompt + continuation`` (what the model sees in running text; SentencePiece tokenisers would otherwise add a
  word-boundary token to a lone " Yes").  When the joint tokenisation does not extend the prompt's own tokens (a
  token straddles the boundary), the continuation is tokenised on its own and the item is flagged (``joint``).
* **Batching.** Sequences are sorted by length and right-padded into batches bounded in sequences, tokens and
  logits.  With causal attention a real token never attends to the padding after it, so a batched score equals
  the one-at-a-time score (tested); no attention mask is needed.
* **Logits only where needed.** A continuation of ``k`` tokens needs the next-token distribution at ``k``
  positions; only those are unembedded (Hugging Face's ``logits_to_keep``), and sequences shared by several
  continuations (always, for single-token continuations) are run once.
* **Activations.** Hooks capture the final token's activation; the forward stops right after the last hook
  needed, by raising from it (``run_with_hooks(stop_at_layer=...)`` fails on some bridge architectures).

Shapes: ``n`` texts/prompts, ``k`` continuations per prompt (ragged, NaN-padded to ``k_max``), ``d`` = d_model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np


class SequenceTooLongError(ValueError):
    """A text (with its continuation) is longer than the model's context; the message names it."""


# ------------------------------------------------------------------------------------------------ tokens
def token_ids(model: Any, text: str, *, prepend_bos: bool | None = None) -> list[int]:
    """Token ids of ``text`` as ``model.to_tokens`` makes them (never truncated).  ``prepend_bos=None``: the model's
    default, except that a text which already starts with the BOS token's text (a chat template written out, e.g.
    ``"<s>[INST] ..."``) gets no second one: it is tokenised as the template's rendered text is."""
    if prepend_bos is None and _starts_with_bos(model, text):
        prepend_bos = False
    kw = {} if prepend_bos is None else {"prepend_bos": prepend_bos}
    ids = model.to_tokens(text, truncate=False, move_to_device=False, **kw)
    return [int(t) for t in ids[0].tolist()]


def _starts_with_bos(model: Any, text: str) -> bool:
    bos = getattr(getattr(model, "tokenizer", None), "bos_token", None)
    return isinstance(bos, str) and bool(bos) and text.startswith(bos)


def context_length(model: Any) -> int | None:
    """The model's context length (``cfg.n_ctx``), None when unknown."""
    n = getattr(getattr(model, "cfg", None), "n_ctx", None)
    return int(n) if n else None


def check_length(n_tokens: int, n_ctx: int | None, what: str) -> None:
    """Raise :class:`SequenceTooLongError` naming ``what`` when ``n_tokens`` exceeds ``n_ctx``."""
    if n_ctx is not None and n_tokens > n_ctx:
        raise SequenceTooLongError(
            f"{what} is {n_tokens} tokens, longer than the model's context of {n_ctx}; "
            "not truncated. Use a model with a longer context or drop it."
        )


def encode_texts(
    model: Any, texts: Sequence[str], *, prepend_bos: bool | None = None, names: Sequence[str] | None = None
) -> list[list[int]]:
    """Token ids of each text; a text longer than the context raises, named by ``names[i]`` (default: its start)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    n_ctx = context_length(model)
    out = []
    for i, t in enumerate(texts):
        ids = token_ids(model, t, prepend_bos=prepend_bos)
        check_length(len(ids), n_ctx, names[i] if names is not None else f"text {i} ({t[:60]!r}...)")
        out.append(ids)
    return out


def continuation_ids(
    model: Any, prompt_ids: Sequence[int], prompt: str, continuation: str, *, prepend_bos: bool | None = None
) -> tuple[tuple[int, ...], bool]:
    """The tokens of ``continuation`` after ``prompt`` and whether they came from the joint tokenisation.

    ``prompt_ids`` must be ``token_ids(model, prompt, prepend_bos=prepend_bos)``.
    """
    joint = token_ids(model, prompt + continuation, prepend_bos=prepend_bos)
    n = len(prompt_ids)
    if len(joint) > n and joint[:n] == list(prompt_ids):
        return tuple(joint[n:]), True
    alone = token_ids(model, continuation, prepend_bos=False)
    if not alone:
        raise ValueError(f"continuation {continuation!r} tokenises to nothing")
    return tuple(alone), False


def tokens_needed(model: Any, prompt: str, continuations: Sequence[str], *, prepend_bos: bool | None = None) -> int:
    """The longest ``prompt + continuation`` in tokens: what :func:`score_continuations` checks against the context."""
    p_ids = token_ids(model, prompt, prepend_bos=prepend_bos)
    return max(
        len(p_ids) + len(continuation_ids(model, p_ids, prompt, c, prepend_bos=prepend_bos)[0]) for c in continuations
    )


def pad_token_id(model: Any) -> int:
    """The id used to right-pad batches: the tokenizer's pad, else EOS, else BOS, else 0 (never attended to)."""
    tok = getattr(model, "tokenizer", None)
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        v = getattr(tok, attr, None) if tok is not None else None
        if v is not None:
            return int(v)
    return 0


# ------------------------------------------------------------------------------------------------ batches
def length_sorted_batches(
    lengths: Sequence[int], *, batch_size: int, fits: Callable[[list[int]], bool] | None = None
) -> list[list[int]]:
    """Indices grouped into batches in order of increasing length (so right padding stays small).

    A batch holds at most ``batch_size`` items and, with ``fits``, only while ``fits(batch)`` holds (a single
    item always makes a batch).  Callers scatter results back by index.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) >= batch_size or (fits is not None and not fits(cur + [i]))):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def right_padded(seqs: Sequence[Sequence[int]], pad_id: int, device: Any = None):
    """``[len(seqs), max_len]`` LongTensor of the sequences, right-padded with ``pad_id``."""
    import torch

    width = max(len(s) for s in seqs)
    toks = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    for r, s in enumerate(seqs):
        toks[r, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    return toks.to(device) if device is not None else toks


def model_device(model: Any):
    """Where the model's inputs go: ``cfg.device`` when set, else its parameters' device, else the CPU."""
    import torch

    dev = getattr(getattr(model, "cfg", None), "device", None)
    if dev is not None:
        return torch.device(dev)
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


# ------------------------------------------------------------------------------------------------ activations
def residual_hook_name(layer: int, n_layers: int) -> str:
    """TransformerLens hook of residual layer ``layer`` in ``0..n_layers`` (0 = embeddings, l = after block l-1)."""
    if not 0 <= layer <= n_layers:
        raise ValueError(f"residual layer must be in 0..{n_layers}, got {layer}")
    return "blocks.0.hook_resid_pre" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


def hook_block(name: str) -> int | None:
    """The block index of a TransformerLens hook name (``blocks.3.hook_resid_post`` -> 3), None outside blocks."""
    m = re.match(r"^blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else None


class _StopForward(Exception):
    """Raised from the last hook a caller needs: the rest of the forward pass cannot change what was captured."""


def check_hook_names(model: Any, names: Sequence[str]) -> None:
    """A ``KeyError`` for any of ``names`` that is not a hook of ``model`` (TransformerLens 3's bridge would skip it
    silently in ``run_with_hooks``: a splice at a misspelt site would measure the clean model)."""
    known = model.hook_dict
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(
            f"hook {', '.join(map(repr, missing))} does not exist on this model; its hook names are the "
            "keys of model.hook_dict (e.g. 'blocks.0.hook_resid_post', 'blocks.0.mlp.hook_post')"
        )


def run_hooks_then_stop(model: Any, tokens: Any, hooks: list[tuple[str, Callable]]) -> None:
    """Run ``model`` on ``tokens`` with forward ``hooks``, stopping right after the hook that fires last.

    When every hook is inside a block, the last one in network order raises :class:`_StopForward` after running,
    so later blocks and the unembedding are skipped; otherwise the whole forward runs.  Unknown hook names are a
    ``KeyError`` (:func:`check_hook_names`).
    """
    import torch

    check_hook_names(model, [n for n, _ in hooks])
    order = [(hook_block(n), _hook_rank(n)) for n, _ in hooks]
    hooks = list(hooks)
    if hooks and all(b is not None for b, _ in order):
        i_last = max(range(len(hooks)), key=lambda i: (order[i], i))
        name, fn = hooks[i_last]

        def stopper(x, hook=None):
            fn(x, hook)
            raise _StopForward

        hooks[i_last] = (name, stopper)
    with torch.no_grad():
        try:
            model.run_with_hooks(tokens, fwd_hooks=hooks, return_type=None)
        except _StopForward:
            pass


_HOOK_ORDER = ("hook_resid_pre", "attn.", "hook_attn_out", "hook_resid_mid", "mlp.", "hook_mlp_out", "hook_resid_post")


def _hook_rank(name: str) -> int:
    """Order of hooks inside one block (a hook that fires later ranks higher)."""
    tail = name.split(".", 2)[-1]
    for i, key in enumerate(_HOOK_ORDER):
        if tail.startswith(key):
            return i
    return len(_HOOK_ORDER)


def final_token_activations(
    model: Any,
    texts: Sequence[str],
    hook_names: Sequence[str],
    *,
    batch_size: int = 16,
    prepend_bos: bool | None = None,
    max_batch_tokens: int = 2**15,
) -> np.ndarray:
    """The activation at each text's final token at each hook: float32 ``(n, len(hook_names), d)``.

    The hooks must have one width ``d`` (per-head hooks, ``attn.hook_z``, are flattened over heads).  Batched with right padding: the final token's
    activation does not depend on padding after it (tested equal to one text at a time).
    """
    import torch

    names = list(hook_names)
    if not names:
        raise ValueError("hook_names must not be empty")
    ids = encode_texts(model, texts, prepend_bos=prepend_bos)
    lengths = [len(x) for x in ids]
    pad = pad_token_id(model)
    device = model_device(model)
    out: np.ndarray | None = None
    for batch in length_sorted_batches(
        lengths, batch_size=batch_size, fits=lambda b: len(b) * max(lengths[i] for i in b) <= max_batch_tokens
    ):
        toks = right_padded([ids[i] for i in batch], pad, device)
        last = torch.tensor([lengths[i] - 1 for i in batch], device=device)
        rows = torch.arange(len(batch), device=device)
        got: dict[int, torch.Tensor] = {}

        def grab(x, hook=None, j=0):
            got[j] = x[rows, last].reshape(len(batch), -1).detach().float().cpu()

        run_hooks_then_stop(
            model, toks, [(n, (lambda x, hook=None, j=j: grab(x, hook, j))) for j, n in enumerate(names)]
        )
        if len(got) != len(names):
            raise RuntimeError(
                f"hooks {names} fired {len(got)} of {len(names)} times; are they this model's hook names?"
            )
        widths = {got[j].shape[-1] for j in range(len(names))}
        if len(widths) != 1:
            raise ValueError(
                f"hooks {names} have different widths {sorted(widths)}: ask for hooks of one width at a time"
            )
        if out is None:
            out = np.zeros((len(texts), len(names), widths.pop()), dtype=np.float32)
        for j in range(len(names)):
            out[batch, j] = got[j].numpy()
    assert out is not None
    return out


# ------------------------------------------------------------------------------------------------ log-probabilities
@dataclasses.dataclass(frozen=True)
class ContinuationScores:
    """Log-probabilities of each prompt's continuations (one model, one set of prompts)."""

    logprobs: np.ndarray
    """``[n, k_max]`` float64: log P(continuation c | prompt i), summed over its tokens; NaN past a prompt's k."""
    joint: np.ndarray
    """``[n]`` bool: every continuation of prompt i was read off the joint tokenisation (see module docstring)."""
    n_tokens: np.ndarray
    """``[n, k_max]`` int: tokens in each continuation (0 past a prompt's k)."""


def _logits_at(model: Any, toks: Any, keep: list[int]):
    """Logits ``[batch, len(keep), d_vocab]`` at sequence positions ``keep``, and a position -> column map.

    Asks the wrapped Hugging Face model for those positions only (``logits_to_keep`` as an index tensor); falls
    back to the full logits when the architecture ignores or rejects it.
    """
    import torch

    try:
        logits = model(toks, return_type="logits", logits_to_keep=torch.tensor(keep, device=toks.device))
        if logits.shape[1] == len(keep):
            return logits, {q: k for k, q in enumerate(keep)}
    except TypeError:
        pass
    logits = model(toks, return_type="logits")
    return logits, {q: q for q in keep}


def score_continuations(
    model: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    *,
    prepend_bos: bool | None = None,
    batch_size: int = 16,
    max_batch_tokens: int = 2**15,
    max_logit_elements: int = 2**26,
    names: Sequence[str] | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> ContinuationScores:
    """log P(continuation | prompt) for every prompt and each of its continuations (multi-token: summed).

    The sequences fed are ``prompt + continuation[:-1]``, each distinct one once; a batch holds at most
    ``batch_size`` sequences, ``max_batch_tokens`` tokens and ``max_logit_elements`` unembedded logits.
    ``names[i]`` names prompt i in errors (default: its index).  ``batch_size=1`` is the one-at-a-time baseline.
    """
    import torch

    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuation lists")
    n = len(prompts)
    k_max = max((len(c) for c in continuations), default=1)
    logprobs = np.full((n, k_max), np.nan)
    n_tokens = np.zeros((n, k_max), dtype=np.int64)
    joint = np.ones(n, dtype=bool)
    n_ctx = context_length(model)
    d_vocab = int(getattr(getattr(model, "cfg", None), "d_vocab", 0) or 0) or 50_000

    # Each distinct fed sequence, with the (prompt, choice, first position, target ids) requests it serves.
    seq_index: dict[tuple[int, ...], int] = {}
    seqs: list[tuple[int, ...]] = []
    requests: list[list[tuple[int, int, int, tuple[int, ...]]]] = []
    for i, (prompt, conts) in enumerate(zip(prompts, continuations, strict=True)):
        if not conts:
            raise ValueError(f"{names[i] if names is not None else f'prompt {i}'} has no continuations")
        p_ids = token_ids(model, prompt, prepend_bos=prepend_bos)
        for c, cont in enumerate(conts):
            cids, was_joint = continuation_ids(model, p_ids, prompt, cont, prepend_bos=prepend_bos)
            joint[i] &= was_joint
            n_tokens[i, c] = len(cids)
            seq = tuple(p_ids) + cids[:-1]
            check_length(
                len(seq) + 1, n_ctx, f"{names[i] if names is not None else f'prompt {i}'} (with continuation {cont!r})"
            )
            j = seq_index.get(seq)
            if j is None:
                j = seq_index[seq] = len(seqs)
                seqs.append(seq)
                requests.append([])
            requests[j].append((i, c, len(p_ids) - 1, cids))

    # Positions whose next-token distribution each sequence needs.
    need = [sorted({st + t for _, _, st, cids in requests[j] for t in range(len(cids))}) for j in range(len(seqs))]
    lengths = [len(s) for s in seqs]

    def fits(b: list[int]) -> bool:
        width = max(lengths[j] for j in b)
        positions = set().union(*(need[j] for j in b))
        return len(b) * width <= max_batch_tokens and len(b) * len(positions) * d_vocab <= max_logit_elements

    batches: Iterable[list[int]] = length_sorted_batches(lengths, batch_size=batch_size, fits=fits)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(list(batches), desc=desc, leave=False)
    pad = pad_token_id(model)
    device = model_device(model)
    with torch.inference_mode():
        for b in batches:
            toks = right_padded([seqs[j] for j in b], pad, device)
            keep = sorted(set().union(*(need[j] for j in b)))
            logits, col = _logits_at(model, toks, keep)
            for r, j in enumerate(b):
                # One log-softmax per needed position of this sequence, shared by its requests.
                lsm = torch.log_softmax(logits[r, [col[q] for q in need[j]]].double(), dim=-1).cpu()
                row_of = {q: k for k, q in enumerate(need[j])}
                for i, c, start, cids in requests[j]:
                    logprobs[i, c] = float(sum(lsm[row_of[start + t], tok] for t, tok in enumerate(cids)))
    return ContinuationScores(logprobs=logprobs, joint=joint, n_tokens=n_tokens)


def normalised_choice_probs(logprobs: np.ndarray) -> np.ndarray:
    """Softmax over each row's finite entries: ``[n, k]`` log-probabilities (NaN = absent choice) -> ``[n, k]``."""
    lp = np.asarray(logprobs, dtype=np.float64)
    valid = ~np.isnan(lp)
    if not valid.any(axis=1).all():
        raise ValueError("every item needs at least one scored choice")
    filled = np.where(valid, lp, -np.inf)
    m = filled.max(axis=1, keepdims=True)
    e = np.where(valid, np.exp(filled - m), 0.0)
    return e / e.sum(axis=1, keepdims=True)
