"""Anthropic's sycophancy datasets (Perez et al. 2022, model-written evals): pinned files, validation, download.

The data: ``anthropics/evals`` folder ``sycophancy/`` (CC-BY-4.0) at commit :data:`PINNED_COMMIT`; three JSON
Lines files whose git blob ids are in :data:`PINNED_BLOBS` (``docs/references.md#sycophancy-data``).  The first
release's philpapers file was a byte copy of the NLP file (blob ``480ff82…``); :func:`load_sycophancy_file` and
:func:`companion.sycophancy.pinned.download_sycophancy_data` reject it.  Every row is validated (:func:`parse_row`); an invalid one is an
error naming its file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DATASETS: tuple[str, ...] = ("nlp_survey", "philpapers2020", "political_typology_quiz")
"""The three sycophancy datasets, by short name."""


FILENAMES: dict[str, str] = {name: f"sycophancy_on_{name}.jsonl" for name in DATASETS}
"""Short dataset name -> file name in ``anthropics/evals/sycophancy/``."""


PINNED_COMMIT = "84fcc677e52e1902d696c32cd1a6b663e70d3993"
"""The ``anthropics/evals`` commit the files are downloaded from (data last changed in 1e60395…)."""


PINNED_BLOBS: dict[str, str] = {
    "sycophancy_on_nlp_survey.jsonl": "480ff822079406be617c21979a3848fb29e5c0e2",
    "sycophancy_on_philpapers2020.jsonl": "5525210614d4f26b1732042e7dcb7210d23fe5aa",
    "sycophancy_on_political_typology_quiz.jsonl": "52f57e31aece2d5126c49cc0e5a9a738b7513754",
}
"""File name -> git blob SHA-1 at :data:`PINNED_COMMIT` (``docs/references.md#sycophancy-data``)."""


BROKEN_PHILPAPERS_BLOB = PINNED_BLOBS["sycophancy_on_nlp_survey.jsonl"]
"""The blob of the known broken philpapers copy: a byte copy of the NLP-survey file (first release)."""


DEFAULT_BASE_URL = "https://raw.githubusercontent.com/anthropics/evals"
"""Files are fetched from ``{base_url}/{commit}/sycophancy/{file}``."""


DATA_CACHE_KIND = "sycophancy-data"
"""Cache kind of downloaded data entries."""


REQUIRED_FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")


class SycophancyDataError(ValueError):
    """A sycophancy data file is malformed, tampered with or unavailable; the message names file and line."""


def git_blob_id(data: bytes) -> str:
    """The git blob SHA-1 of ``data``: ``sha1(b"blob <size>\\0" + data)`` — what ``git hash-object`` prints."""
    h = hashlib.sha1()
    h.update(b"blob %d\x00" % len(data))
    h.update(data)
    return h.hexdigest()


def dataset_of_filename(path: str | os.PathLike) -> str | None:
    """The short dataset name for a standard file name (``sycophancy_on_<name>.jsonl``), else None."""
    name = Path(path).name
    for ds, fn in FILENAMES.items():
        if fn == name:
            return ds
    return None


@dataclasses.dataclass(frozen=True)
class SycophancyItem:
    """One validated row of a sycophancy file."""

    dataset: str
    """Short dataset name ("nlp_survey", "philpapers2020", "political_typology_quiz" or the file stem)."""
    line: int
    """1-based line number of the row in its file."""
    question: str
    """The question text as in the file (biography, question, choices, ending "Answer:")."""
    labels: tuple[str, ...]
    """The choice labels parsed from the question, in order ("A", "B", ...)."""
    choice_texts: tuple[str, ...]
    """The text of each choice, aligned with ``labels``."""
    matching: int
    """Index into ``labels`` of the sycophantic answer (``answer_matching_behavior``)."""
    not_matching: tuple[int, ...]
    """Indices into ``labels`` of ``answer_not_matching_behavior`` (one for a string, several for a list)."""
    user_affiliation: str | None = None
    """"liberal"/"conservative" on politics rows, else None."""


@dataclasses.dataclass(frozen=True)
class SycophancyDataset:
    """The validated rows of one file, with its identity."""

    name: str
    """Short dataset name."""
    path: str
    """Where the file was read from."""
    blob_id: str
    """Git blob SHA-1 of the file's bytes."""
    items: tuple[SycophancyItem, ...]
    """The valid rows, in file order."""
    skipped: tuple[str, ...] = ()
    """One "file:line: reason" message per row skipped (only with ``skip_invalid=True``)."""

    @property
    def pinned(self) -> bool:
        """True when the file is byte-identical to the pinned Anthropic file of the same name."""
        return PINNED_BLOBS.get(FILENAMES.get(self.name, ""), None) == self.blob_id

    def __len__(self) -> int:
        return len(self.items)


_CHOICE_LINE = re.compile(r"^\s*\(([A-Za-z0-9]{1,3})\)\s?(.*)$")


_ANSWER = re.compile(r"^\s*\(([A-Za-z0-9]{1,3})\)\s*$")


_ANSWER_TAIL = re.compile(r"\n\s*Answer:\s*$")


def parse_choices(question: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Parse the choice block at the end of a question: returns ``(labels, texts)``.

    The block is the maximal run of lines ``" (X) text"`` just before the trailing ``"Answer:"`` (optionally
    introduced by a ``"Choices:"`` line), which covers all three files' layouts (philpapers can have more than
    two choices).  Raises ``ValueError`` when fewer than two choices are found or labels repeat.
    """
    body = _ANSWER_TAIL.sub("", question.rstrip())
    lines = body.rstrip().split("\n")
    labels: list[str] = []
    texts: list[str] = []
    for line in reversed(lines):
        m = _CHOICE_LINE.match(line)
        if not m:
            break
        labels.append(m.group(1))
        texts.append(m.group(2).strip())
    labels.reverse()
    texts.reverse()
    if len(labels) < 2:
        raise ValueError(
            f"could not find at least two choices ' (A) ...' on the lines before 'Answer:' (found {len(labels)})"
        )
    if len(set(labels)) != len(labels):
        raise ValueError(f"choice labels repeat: {labels}")
    return tuple(labels), tuple(texts)


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def question_key(item: SycophancyItem) -> str:
    """What identifies the underlying question of an item, with the user's biography removed: the last sentence
    before the choices plus the choice texts in sorted order (choice order can be shuffled between items).

    Rows of the same question with different biographies share a key; it is the resampling unit of the
    question-level (cluster) bootstrap.
    """
    body = _ANSWER_TAIL.sub("", item.question.rstrip()).rstrip().split("\n")
    body = body[: len(body) - len(item.labels)]
    while body and (not body[-1].strip() or body[-1].strip() == "Choices:"):
        body.pop()
    pre = "\n".join(body).strip()
    last = _SENTENCE_END.split(pre)[-1] if pre else ""
    return last + " || " + " | ".join(sorted(item.choice_texts))


def _answer_label(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string like ' (A)', got {type(value).__name__} {value!r}")
    m = _ANSWER.match(value)
    if not m:
        raise ValueError(f"{field} {value!r} is not an answer of the form ' (A)'")
    return m.group(1)


def parse_row(row: Any, dataset: str, line: int) -> SycophancyItem:
    """Validate one decoded JSON row and return it as a :class:`SycophancyItem` (``ValueError`` if invalid).

    ``answer_not_matching_behavior`` may be a string (NLP, politics) or a non-empty list of strings
    (philpapers).  Every answer must be one of the question's choices, and the sycophantic answer must not
    also be listed as non-sycophantic.
    """
    if not isinstance(row, dict):
        raise ValueError(f"row is a JSON {type(row).__name__}, not an object")
    missing = [f for f in REQUIRED_FIELDS if f not in row]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    question = row["question"]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"'question' must be a non-empty string, got {type(question).__name__}")
    try:
        labels, texts = parse_choices(question)
    except ValueError as e:
        raise ValueError(f"'question': {e}") from None
    match_label = _answer_label(row["answer_matching_behavior"], "answer_matching_behavior")
    raw_not = row["answer_not_matching_behavior"]
    if isinstance(raw_not, str):
        not_labels = [_answer_label(raw_not, "answer_not_matching_behavior")]
    elif isinstance(raw_not, list):
        if not raw_not:
            raise ValueError("answer_not_matching_behavior is an empty list")
        not_labels = [_answer_label(v, "answer_not_matching_behavior") for v in raw_not]
    else:
        raise ValueError(
            f"answer_not_matching_behavior must be a string or a list of strings, got {type(raw_not).__name__}"
        )
    for lab, field in [(match_label, "answer_matching_behavior")] + [
        (n, "answer_not_matching_behavior") for n in not_labels
    ]:
        if lab not in labels:
            raise ValueError(f"{field} ({lab}) is not one of the question's choices {list(labels)}")
    if match_label in not_labels:
        raise ValueError(f"({match_label}) is both the matching and a non-matching answer")
    if len(set(not_labels)) != len(not_labels):
        raise ValueError(f"answer_not_matching_behavior repeats a choice: {not_labels}")
    aff = row.get("user_affiliation")
    if aff is not None and not isinstance(aff, str):
        raise ValueError(f"user_affiliation must be a string, got {type(aff).__name__}")
    return SycophancyItem(
        dataset=dataset,
        line=line,
        question=question,
        labels=labels,
        choice_texts=texts,
        matching=labels.index(match_label),
        not_matching=tuple(labels.index(n) for n in not_labels),
        user_affiliation=aff,
    )


def load_sycophancy_file(
    path: str | os.PathLike, dataset: str | None = None, *, skip_invalid: bool = False
) -> SycophancyDataset:
    """Read and validate one JSONL file.

    Every row is checked (:func:`parse_row`); the first invalid row raises :class:`SycophancyDataError`
    naming ``file:line`` and the reason.  With ``skip_invalid=True`` invalid rows are skipped instead and
    reported in ``SycophancyDataset.skipped`` (never silently).  A blank line is only allowed at the end.
    A philpapers file that is the known broken copy (the NLP file's bytes, or no list-valued
    ``answer_not_matching_behavior`` at all) is rejected regardless of ``skip_invalid``.
    """
    p = Path(path)
    if not p.is_file():
        raise SycophancyDataError(f"{p}: no such file")
    data = p.read_bytes()
    blob = git_blob_id(data)
    name = dataset or dataset_of_filename(p) or p.stem
    if name == "philpapers2020" and blob == BROKEN_PHILPAPERS_BLOB:
        raise SycophancyDataError(_broken_philpapers_message(p, "its bytes are those of the NLP-survey file"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SycophancyDataError(
            f"{p}:{line}: not UTF-8: byte 0x{data[e.start]:02x} at column {column} "
            f"({e.reason}); the files are UTF-8 JSON Lines"
        ) from None
    lines = text.split("\n")
    while lines and lines[-1].strip() == "":
        lines.pop()  # trailing newline(s)
    if not lines:
        raise SycophancyDataError(f"{p}: the file is empty: no rows to score (expected one JSON object per line)")
    items: list[SycophancyItem] = []
    skipped: list[str] = []
    n_list_form = 0
    for i, raw in enumerate(lines, start=1):
        try:
            if not raw.strip():
                raise ValueError("empty line inside the file")
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"malformed JSON ({e.msg} at column {e.colno})") from None
            item = parse_row(row, name, i)
            if isinstance(row.get("answer_not_matching_behavior"), list):
                n_list_form += 1
        except ValueError as e:
            msg = f"{p}:{i}: {e}"
            if not skip_invalid:
                raise SycophancyDataError(msg) from None
            skipped.append(msg)
            continue
        items.append(item)
    if not items:  # every row was skipped: scoring nothing would draw an empty panel with zero statistics
        raise SycophancyDataError(f"{p}: none of its {len(lines)} rows is usable; the first: {skipped[0]}")
    if name == "philpapers2020" and items and n_list_form == 0:
        raise SycophancyDataError(
            _broken_philpapers_message(p, "none of its rows has a list-valued answer_not_matching_behavior")
        )
    return SycophancyDataset(name=name, path=str(p), blob_id=blob, items=tuple(items), skipped=tuple(skipped))


def _broken_philpapers_message(path: Path, why: str) -> str:
    return (
        f"{path}: this is the known broken copy of sycophancy_on_philpapers2020.jsonl ({why}). In the first "
        f"release of anthropics/evals the philpapers file was a byte copy of the NLP-survey file, and mirrors "
        f"may still carry it. Use the file at commit {PINNED_COMMIT} (blob "
        f"{PINNED_BLOBS['sycophancy_on_philpapers2020.jsonl']}), e.g. via download_sycophancy_data()."
    )


def load_sycophancy_dir(
    directory: str | os.PathLike,
    datasets: Sequence[str] = DATASETS,
    *,
    skip_invalid: bool = False,
) -> dict[str, SycophancyDataset]:
    """Load the standard files of ``datasets`` from ``directory`` (dataset name -> :class:`SycophancyDataset`).
    Whether they are the pinned files is :func:`companion.sycophancy.pinned.check_pinned`'s question."""
    d = Path(directory)
    out: dict[str, SycophancyDataset] = {}
    for name in datasets:
        if name not in FILENAMES:
            raise ValueError(f"unknown sycophancy dataset {name!r}; choose from {list(DATASETS)}")
        out[name] = load_sycophancy_file(d / FILENAMES[name], name, skip_invalid=skip_invalid)
    if "philpapers2020" in out and "nlp_survey" in out and out["philpapers2020"].blob_id == out["nlp_survey"].blob_id:
        raise SycophancyDataError(
            _broken_philpapers_message(
                Path(out["philpapers2020"].path), "it is byte-identical to the NLP file beside it"
            )
        )
    return out


def subsample(ds: SycophancyDataset, n: int | None, seed: int) -> SycophancyDataset:
    """A seeded random subset of ``n`` items (file order kept); the whole dataset when ``n`` is None or larger."""
    if n is None or n >= len(ds.items):
        return ds
    rng = np.random.default_rng([seed, len(ds.items), sum(map(ord, ds.name))])
    idx = np.sort(rng.choice(len(ds.items), size=n, replace=False))
    return dataclasses.replace(ds, items=tuple(ds.items[i] for i in idx))
