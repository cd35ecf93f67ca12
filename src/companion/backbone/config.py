"""Validated configuration records: pydantic models with one docstring per field.

Every configuration in the package is one: profiles, organism specs, SAE training settings and each notebook's
parameters (:class:`companion.backbone.params.NotebookParams`).

A record is frozen, rejects unknown keys and wrong types (strictly: ``"3e-4"`` is not a number, ``1.0`` is not an
integer), and keeps the docstring under each field as that field's description.  :func:`format_validation_error`
turns pydantic's report into lines naming the full key path (``organisms.backdoor.train.lr: ...``), which is what
a user editing a YAML file needs to see.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Config(BaseModel):
    """Base of every configuration record."""

    # A NaN or infinite setting (`-p lr=nan`) is never meaningful here: refused with the key that holds it.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True, allow_inf_nan=False
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (what cache specs hash)."""
        return self.model_dump(mode="json")


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the candidate closest to a misspelt ``name``, or "" when none is close."""
    match = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _record(annotation: Any) -> Any:
    """The record type inside an annotation (``X | None``, ``Annotated[X, ...]``), else the annotation."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The field names of the record that holds the last key of ``loc`` (what a misspelt key could have meant)."""
    cur = model
    for part in loc[:-1]:
        if isinstance(cur, type) and issubclass(cur, BaseModel):
            field = cur.model_fields.get(str(part))
            if field is None:
                return []
            cur = _record(field.annotation)
        elif typing.get_origin(cur) is dict or (isinstance(cur, types.GenericAlias) and cur.__origin__ is dict):
            cur = _record(typing.get_args(cur)[1])
        else:
            return []
    return list(cur.model_fields) if isinstance(cur, type) and issubclass(cur, BaseModel) else []


def format_validation_error(e: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per problem, each naming its key path under ``prefix``: ``a.b.c: message (got value)``.

    With ``model`` (the record validated), an unknown key gets the closest known one as a suggestion
    (``train.stepz: unknown setting (did you mean 'steps'?)``)."""
    lines = []
    for err in e.errors():
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            known = _fields_at(model, err["loc"]) if model is not None else []
            hint = suggest(str(err["loc"][-1]), known) or (f" (known: {', '.join(known)})" if known else "")
            lines.append(f"{path}: unknown setting{hint}")
            continue
        got = f" (got {err['input']!r})" if err.get("type") not in ("missing", "value_error") else ""
        lines.append(f"{path or '(top level)'}: {msg}{got}")
    return "; ".join(lines)


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged onto ``base``: mappings key by key (recursively), anything else replaced by ``over``."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else v
        return out
    return over
