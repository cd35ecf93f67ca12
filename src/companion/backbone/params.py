"""Typed notebook parameters.

Papermill only warns about a parameter the notebook does not declare; we reject it.  Every notebook
declares a dataclass subclassing :class:`NotebookParams` (one-line docstring per field, validation in
``__post_init__``), and :meth:`NotebookParams.from_dict` builds it from a mapping, refusing unknown names and
values of the wrong type with a message that lists what is allowed.  :meth:`NotebookParams.from_text` reads
command-line text (``companion figures -p lr=3e-4``) by each field's declared type.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar, Union

T = TypeVar("T", bound="NotebookParams")


class ParameterError(ValueError):
    """A notebook parameter is unknown or has the wrong type or value."""


@dataclasses.dataclass
class NotebookParams:
    """Base class of every notebook's parameters."""

    seed: int = 0
    """Seed for every random number generator the notebook uses."""

    #: Printed as the heading of the parameter table.
    title: ClassVar[str] = "parameters"

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _reject_unknown(cls, names: Iterable[str]) -> None:
        """Raise ``ParameterError`` naming every name that is not a field, and the allowed ones."""
        allowed = cls.field_names()
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise ParameterError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
                f"{cls.__name__}. Allowed: {', '.join(allowed)}."
            )

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
        """Build the parameters from ``values``; unknown names and wrong types raise ``ParameterError``."""
        hints = typing.get_type_hints(cls)
        cls._reject_unknown(values)
        kwargs = {}
        for name, value in values.items():
            kwargs[name] = _coerce(name, value, hints[name], cls.__name__)
        try:
            return cls(**kwargs)
        except ParameterError:
            raise
        except (TypeError, ValueError) as e:
            raise ParameterError(f"{cls.__name__}: {e}") from e

    @classmethod
    def from_text(cls, texts: Mapping[str, str]) -> dict[str, Any]:
        """Convert ``name -> text`` (command-line values) by each field's declared type; unknown names raise.

        ``3e-4`` is a float, ``true``/``false`` a bool, ``none`` an optional's None, ``[1, 2]`` or ``1,2`` a
        tuple; a ``str`` field takes the text verbatim.  Returns plain values for :meth:`from_dict`.
        """
        hints = typing.get_type_hints(cls)
        cls._reject_unknown(texts)
        return {name: _plain(convert_text(name, text, hints[name], cls.__name__)) for name, text in texts.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict of the values (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def replace(self: T, **changes: Any) -> T:
        """A copy with some fields changed, validated like ``from_dict``."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def docs(cls) -> dict[str, str]:
        """The one-line docstring under each field (attribute docstrings, read from the source)."""
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            if not (dataclasses.is_dataclass(klass) and issubclass(klass, NotebookParams)):
                continue
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
            except (OSError, TypeError):
                continue
            body = tree.body[0].body  # type: ignore[attr-defined]
            for a, b in zip(body, body[1:]):
                if (
                    isinstance(a, ast.AnnAssign)
                    and isinstance(a.target, ast.Name)
                    and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)
                ):
                    out[a.target.id] = " ".join(b.value.value.split())
        return out

    def _repr_markdown_(self) -> str:
        docs = self.docs()
        rows = [f"| `{k}` | `{v!r}` | {docs.get(k, '')} |" for k, v in self.to_dict().items()]
        return f"**{type(self).__name__}**\n\n| parameter | value | meaning |\n|---|---|---|\n" + "\n".join(rows)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(name: str, value: Any, tp: Any, owner: str) -> Any:
    """Check ``value`` against annotation ``tp``; allow only lossless conversions (int->float, list->tuple)."""
    err = ParameterError(
        f"parameter {name!r} of {owner} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a, owner)
            except ParameterError:
                pass
        raise err
    if origin is typing.Literal:
        if value in args:
            return value
        raise ParameterError(f"parameter {name!r} of {owner} must be one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise err
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, v, args[0], owner) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise err
            return tuple(_coerce(name, v, a, owner) for v, a in zip(value, args))
        item = args[0] if args else Any
        seq = [_coerce(name, v, item, owner) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, Mapping):
            raise err
        kt, vt = args if args else (Any, Any)
        return {_coerce(name, k, kt, owner): _coerce(name, v, vt, owner) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise err
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise err
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise err
    if tp is str:
        if isinstance(value, str):
            return value
        raise err
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise err
    return value


_TRUE, _FALSE, _NONE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}, {"none", "null", "~", ""}


def convert_text(name: str, text: Any, tp: Any, owner: str) -> Any:
    """Read command-line ``text`` as a value of annotation ``tp`` (see :meth:`NotebookParams.from_text`).

    Non-text values (items of a YAML list) are checked by :func:`_coerce`.  The error names the parameter,
    its class and the offending text.
    """
    if not isinstance(text, str):
        return _coerce(name, text, tp, owner)
    err = ParameterError(f"parameter {name!r} of {owner} must be {_type_name(tp)}, got {text!r}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    raw = text.strip()
    if tp is Any:
        import yaml

        return yaml.safe_load(raw) if raw else ""
    if origin in (Union, types.UnionType):
        if raw.lower() in _NONE and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return convert_text(name, text, a, owner)
                except ParameterError:
                    pass
        raise err
    if origin is typing.Literal:
        for a in args:
            if raw == str(a) or (isinstance(a, bool) and raw.lower() in (_TRUE if a else _FALSE)):
                return a
        raise ParameterError(f"parameter {name!r} of {owner} must be one of {list(args)}, got {text!r}")
    if origin in (tuple, list, dict):
        import yaml

        try:  # "[1, 2]" / "{a: b}" are YAML, read with every scalar kept as text; "1,2" is a bare list
            items = yaml.load(raw, Loader=yaml.BaseLoader) if raw.startswith(("[", "{")) \
                else [s.strip() for s in raw.split(",") if s.strip()]
        except yaml.YAMLError:
            raise err from None
        if origin is dict:
            if not isinstance(items, Mapping):
                raise err
            kt, vt = args if args else (Any, Any)
            return {convert_text(name, str(k), kt, owner): convert_text(name, v, vt, owner) for k, v in items.items()}
        if not isinstance(items, list):
            raise err
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(items):
                raise err
            return tuple(convert_text(name, v, a, owner) for v, a in zip(items, args))
        item = args[0] if args else Any
        seq = [convert_text(name, v, item, owner) for v in items]
        return tuple(seq) if origin is tuple else seq
    if tp is str:
        return text
    if tp is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise err
    if tp is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            pass
        try:  # 1e6 tokens: an integer written in scientific notation
            f = float(raw)
        except ValueError:
            raise err from None
        if f.is_integer() and abs(f) < 2**53:
            return int(f)
        raise err
    if tp is float:
        try:
            return float(raw.replace("_", ""))
        except ValueError:
            raise err from None
    return _coerce(name, text, tp, owner)
