"""Typed notebook parameters: a :class:`~companion.backbone.config.Config` record per notebook.

Papermill only warns about a parameter the notebook does not declare; we reject it.  Every notebook declares a
subclass of :class:`NotebookParams` (one docstring per field, cross-field checks in a pydantic
``model_validator``).  :meth:`NotebookParams.from_dict` builds it from data (a profile's YAML section, the
values papermill injects) and :meth:`NotebookParams.from_text` reads command-line text (``companion figures -p
lr=3e-4``) by each field's declared type: :func:`read_text` gives the text the shape the type expects and pydantic
converts and checks it.  Either way an unknown name or a bad value is a :class:`ParameterError`, one line naming
the class, the parameter and the value.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, Union

from pydantic import TypeAdapter, ValidationError

from companion.backbone.config import Config, format_validation_error, suggest

ParamsT = TypeVar("ParamsT", bound="NotebookParams")


class ParameterError(ValueError):
    """A notebook parameter is unknown or has the wrong type or value."""


class NotebookParams(Config):
    """Base class of every notebook's parameters."""

    seed: int = 0
    """Seed for every random number generator the notebook uses."""

    @classmethod
    def field_names(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def docs(cls) -> dict[str, str]:
        """The docstring under each field, on one line."""
        return {name: " ".join(f.description.split()) for name, f in cls.model_fields.items() if f.description}

    @classmethod
    def _reject_unknown(cls, names: Iterable[str]) -> None:
        """Raise ``ParameterError`` naming every name that is not a field, and the allowed ones."""
        allowed = cls.field_names()
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise ParameterError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(u) + suggest(u, allowed) for u in unknown)} for "
                f"{cls.__name__}. Allowed: {', '.join(allowed)}."
            )

    @classmethod
    def from_dict(cls: type[ParamsT], values: Mapping[str, Any]) -> ParamsT:
        """Build the parameters from data; unknown names and bad values raise ``ParameterError``.

        The values are validated as JSON, strictly: a list fills a tuple and an integer a float, nothing else
        converts (``"3"`` is not an int, ``2.0`` is not an int, ``True`` is not a number).
        """
        cls._reject_unknown(values)
        try:
            return cls.model_validate_json(json.dumps(dict(values), default=_plain_data))
        except ValidationError as e:
            raise ParameterError(format_validation_error(e, cls.__name__, cls)) from None

    @classmethod
    def from_text(cls, texts: Mapping[str, str]) -> dict[str, Any]:
        """Convert ``name -> text`` (command-line values) by each field's declared type; unknown names raise.

        ``3e-4`` is a float, ``1e6`` an int where an int is declared, ``true``/``false`` (``yes``/``no``,
        ``on``/``off``) a bool, ``none`` an optional's None, ``[1, 2]`` or ``1,2`` a tuple; a ``str`` field takes
        the text verbatim.  Returns plain data (tuples as lists) for :meth:`from_dict`.
        """
        cls._reject_unknown(texts)
        out = {}
        for name, text in texts.items():
            adapter: TypeAdapter[Any] = TypeAdapter(cls.model_fields[name].annotation)  # type: ignore[arg-type]
            try:
                value = adapter.validate_python(read_text(text, cls.model_fields[name].annotation))
            except ValidationError as e:
                raise ParameterError(format_validation_error(e, f"{cls.__name__}.{name}")) from None
            except ValueError as e:
                raise ParameterError(f"{cls.__name__}.{name}: {e}") from None
            out[name] = adapter.dump_python(value, mode="json")
        return out

    def preflight(self, profile: Any) -> list[str]:
        """What a run with these parameters under ``profile`` would stop on that validation cannot see (a data folder
        that is missing, a misspelt organism setting), found before anything runs: one line per problem.  The dry
        run and the runner ask every notebook that will run; each notebook's class adds its own checks."""
        return []

    def sources(self, profile: Any) -> dict[str, str]:
        """What a run with these parameters would download from outside the model hub, not cached yet: name -> URL
        (``companion doctor`` checks that each answers through the configured URL and proxies)."""
        return {}

    def replace(self: ParamsT, **changes: Any) -> ParamsT:
        """A copy with some fields changed, validated like ``from_dict``."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def _repr_markdown_(self) -> str:
        docs = self.docs()
        rows = [f"| `{k}` | `{v!r}` | {docs.get(k, '')} |" for k, v in self.to_dict().items()]
        return f"**{type(self).__name__}**\n\n| parameter | value | meaning |\n|---|---|---|\n" + "\n".join(rows)

    def _repr_html_(self) -> str:
        """The table JupyterLab shows: it fits the output's width, long values (blob ids, URLs, lists) wrapping
        inside their column, so nothing runs off the right edge of the page."""
        import html

        docs = self.docs()
        cell = 'style="text-align:left; vertical-align:top; overflow-wrap:anywhere; white-space:normal"'
        rows = "".join(
            f"<tr><td {cell}><code>{html.escape(k)}</code></td><td {cell}><code>{html.escape(repr(v))}"
            f"</code></td><td {cell}>{html.escape(docs.get(k, ''))}</td></tr>"
            for k, v in self.to_dict().items()
        )
        widths = "".join(f'<col style="width:{w}%">' for w in (22, 33, 45))
        head = "".join(f"<th {cell}>{h}</th>" for h in ("parameter", "value", "meaning"))
        return (
            f"<b>{html.escape(type(self).__name__)}</b>"
            f'<table style="width:100%; table-layout:fixed"><colgroup>{widths}</colgroup>'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )


def _plain_data(obj: Any) -> Any:
    """``json.dumps`` fallback for :meth:`NotebookParams.from_dict`: paths become text, anything else is refused."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise ParameterError(f"parameter values must be plain data (numbers, text, lists, mappings), got {obj!r}")


_NONE = {"none", "null", "~", ""}


def read_text(text: str, annotation: Any) -> Any:
    """Give command-line ``text`` the shape ``annotation`` expects, keeping its scalars as text for pydantic.

    ``none``/``null``/``~`` is None where the annotation allows None; where it expects a tuple, list or dict,
    ``[a, b]`` / ``{a: b}`` is read as YAML with every scalar kept as text and ``a,b`` is a bare list; an integral
    number in scientific notation (``1e6``) is an int for an int field.  Anything else stays text.
    """
    raw = text.strip()
    is_union = typing.get_origin(annotation) in (Union, types.UnionType)
    options = typing.get_args(annotation) if is_union else (annotation,)
    if type(None) in options and raw.lower() in _NONE:
        return None
    if any(typing.get_origin(a) in (tuple, list, dict) for a in options):
        if not raw.startswith(("[", "{")):
            return [s.strip() for s in raw.split(",") if s.strip()]
        import yaml

        try:
            return yaml.load(raw, Loader=yaml.BaseLoader)
        except yaml.YAMLError as e:
            raise ValueError(f"cannot read {text!r} as a list or mapping ({getattr(e, 'problem', e)})") from None
    if int in options:
        try:
            number = float(raw)
        except ValueError:
            return text
        if number.is_integer() and abs(number) < 2**53 and any(c in raw for c in "eE"):
            return int(number)
    return text
