"""Strict conversion of plain data (YAML) into frozen dataclasses, and back.

``from_mapping(cls, raw)`` checks every key and value against ``cls``'s annotations: unknown keys
(with the closest allowed one), wrong types, values outside a ``Literal``; lists become tuples and
whole numbers become floats where a float is expected. A ``Union`` of dataclasses is chosen by the
``name`` key (each class declares ``name: Literal["…"]`` and may accept ``ALIASES``). Errors are
:class:`~common.errors.UserError` naming the key, what is allowed and what was received.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Dict, Literal, Tuple, Union

from common.errors import UserError, describe_choices

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(value) for value in typing.get_args(kind))
    if origin is Union:
        return " or ".join(_type_name(arg) for arg in typing.get_args(kind))
    if origin in (tuple, Tuple):
        return f"a list of {_type_name(typing.get_args(kind)[0])}"
    if origin in (dict, Dict):
        return f"a mapping of {_type_name(typing.get_args(kind)[1])}"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(kind, str(kind))


def _wrong(where: str, kind, value):
    return UserError(f"{where}: expected {_type_name(kind)} (received {value!r})")


def _scalar(value, kind, where: str):
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)  # PyYAML reads 1e-4 (no dot) as a string
    if kind is str and isinstance(value, str):
        return value
    if kind in (bool, int, float, str):
        raise _wrong(where, kind, value)
    raise TypeError(f"unsupported annotation {kind!r} at {where}")


def _union(value, kind, where: str):
    options = typing.get_args(kind)
    if value is None and type(None) in options:
        return None
    classes = [option for option in options if dataclasses.is_dataclass(option)]
    if classes and len(classes) == len(options):
        return _chosen_by_name(value, classes, where)
    for option in (option for option in options if option is not type(None)):
        try:
            return coerce(value, option, where)
        except UserError:
            continue
    words = [word for option in options if typing.get_origin(option) is Literal for word in typing.get_args(option)]
    close = difflib.get_close_matches(str(value), [str(word) for word in words], n=1)
    raise UserError(f"{where}: expected {_type_name(kind)} (received {value!r})"
                    + (f" (did you mean {close[0]!r}?)" if close else ""))


def coerce(value, kind, where: str):
    """Check ``value`` against the annotation ``kind`` and convert it (lists → tuples, ints → floats)."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return from_mapping(kind, value, where)
    if origin is Union:
        return _union(value, kind, where)
    if origin is Literal:
        allowed = typing.get_args(kind)
        if value in allowed and type(value) in {type(option) for option in allowed}:
            return value
        raise UserError(f"{where}: " + describe_choices("value", value, allowed))
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, kind, value)
        item = typing.get_args(kind)[0]
        return tuple(coerce(element, item, f"{where}[{index}]") for index, element in enumerate(value))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _wrong(where, kind, value)
        key_kind, value_kind = typing.get_args(kind)
        return {coerce(key, key_kind, where): coerce(item, value_kind, path(where, key))
                for key, item in value.items()}
    return _scalar(value, kind, where)


def _name_of(cls) -> str:
    return typing.get_args(typing.get_type_hints(cls)["name"])[0]


def _chosen_by_name(raw, classes, where: str):
    """One of several dataclasses, chosen by the ``name`` key (or one of the class's ``ALIASES``);
    a class may tidy the raw values first (``cleaned(raw)``, e.g. to read an older layout)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping with a name (received {raw!r})")
    by_name = {_name_of(cls): cls for cls in classes}
    by_name.update({alias: cls for cls in classes for alias in getattr(cls, "ALIASES", ())})
    name = raw.get("name", _name_of(classes[0]))
    if name not in by_name:
        raise UserError(f"{path(where, 'name')}: " + describe_choices("name", name, [_name_of(c) for c in classes]))
    cls = by_name[name]
    values = dict(cls.cleaned(raw) if hasattr(cls, "cleaned") else raw, name=_name_of(cls))
    return from_mapping(cls, values, where, f"the {values['name']!r} {where.rsplit('.', 1)[-1]}")


def from_mapping(cls, raw, where: str = "", what: str = ""):
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are errors (``what`` names
    the variant in them, e.g. "the 'cosine' schedule")."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'the configuration'}: expected a mapping of keys to values (received {raw!r})")
    hints = typing.get_type_hints(cls)
    allowed = [field.name for field in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            owner = f" of {what}" if what else ""
            raise UserError(f"{path(where, key)}: unknown key{owner}{hint}; allowed keys: {', '.join(allowed)}")
        values[key] = coerce(value, hints[key], path(where, key))
    return cls(**values)


def path(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def to_plain(value):
    """Dataclasses → dicts, tuples → lists (for YAML)."""
    if dataclasses.is_dataclass(value):
        return {field.name: to_plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value
