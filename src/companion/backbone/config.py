"""Validated configuration records: pydantic models with one docstring per field.

Every configuration in the package is one: profiles, organism specs, SAE training settings and each notebook's
parameters (:class:`companion.backbone.params.NotebookParams`).

A record is frozen, rejects unknown keys and wrong types (strictly: ``"3e-4"`` is not a number, ``1.0`` is not an
integer), and keeps the docstring under each field as that field's description.  :func:`format_validation_error`
turns pydantic's report into lines naming the full key path (``organisms.backdoor.train.lr: ...``), which is what
a user editing a YAML file needs to see.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Config(BaseModel):
    """Base of every configuration record."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (what cache specs hash)."""
        return self.model_dump(mode="json")


def format_validation_error(e: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming its key path under ``prefix``: ``a.b.c: message (got value)``."""
    lines = []
    for err in e.errors():
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
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
