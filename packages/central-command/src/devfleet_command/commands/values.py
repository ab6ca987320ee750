"""Values typed on the command line: JSON, refused when it is malformed, and a
plain string only where a string is wanted.

``config set n1 description=lab bench`` sets a string because the node's config
schema wants one there; ``config set n1 telemetry.interval=5`` sets a number;
``config set n1 'groups=["a"'`` is refused ("not valid JSON: ..."), never
silently stored as the string ``'["a"'``. Where no schema is known (``cmd``,
``component``, ``task``) a bare word (``effect=rainbow``) is a string, and text
that starts like JSON (``{``, ``[``, ``"``) must be valid JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from devfleet_base.schema import Field, Schema

__all__ = ["assignments", "config_assignments", "field_at", "parse_typed", "parse_value"]

_JSON_START = ("{", "[", '"')


def _invalid(text: str, exc: json.JSONDecodeError, where: str = "") -> UsageError:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return UsageError(f"{where}not valid JSON: {exc.msg} at column {exc.colno}: {shown}")


def parse_value(text: str, *, where: str = "") -> Any:
    """A value where no schema is known: JSON when it parses; a bare word
    (``rainbow``, ``lab bench``) as a string.

    Raises:
        UsageError: ``text`` starts like JSON (``{``, ``[``, ``"``) but is not valid JSON.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith(_JSON_START):
            raise _invalid(text, exc, where) from None
        return text


def parse_typed(text: str, field: Field | None, *, where: str = "") -> Any:
    """A value for ``field`` of a schema: the text itself where a string is wanted
    (a JSON string such as ``"42"`` is unquoted), else JSON that must parse.

    Args:
        text: what followed ``=``.
        field: the schema field the value is for; None when unknown (then :func:`parse_value`).
        where: prefix for the error message (``"telemetry.interval: "``).

    Raises:
        UsageError: a non-string field given text that is not valid JSON.
    """
    if field is None or field.kind == "any":
        return parse_value(text, where=where)
    if field.kind == "str":
        if text.startswith('"'):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return text
            return value if isinstance(value, str) else text
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = f" (a {field.kind} is wanted here)"
        raise UsageError(str(_invalid(text, exc, where)) + hint) from None


def field_at(schema: Schema, dotted: str) -> Field | None:
    """The field a dotted key (``telemetry.interval``, ``components.ledstrip.enabled``)
    names in ``schema``, or None where the schema says nothing (free-form settings)."""
    current: Schema | None = schema
    found: Field | None = None
    for part in dotted.split("."):
        if found is not None:  # descend from the previous field
            if found.schema is not None:
                current = found.schema
            elif found.values is not None:  # a free-form dict: any key, this field
                found = found.values
                current = found.schema
                continue
            else:
                return None
        if current is None:
            return None
        found = current.fields.get(part)
        if found is None:
            return None
    return found


def _split(item: str) -> tuple[str, str]:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise UsageError(f"expected key=value, got {item!r}")
    return key, text


def assignments(items: list[str]) -> dict[str, Any]:
    """``["effect=rainbow", "speed=2"]`` → ``{"effect": "rainbow", "speed": 2}``, each
    value read by :func:`parse_value` (no schema known).

    Raises:
        UsageError: an item without ``=`` or key, or text that starts like JSON but is not.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, text = _split(item)
        out[key] = parse_value(text, where=f"{key}: ")
    return out


def config_assignments(items: list[str]) -> dict[str, Any]:
    """``["telemetry.interval=5", "description=lab bench"]`` → dotted keys to values,
    each typed by the node config schema (:func:`parse_typed`).

    Raises:
        UsageError: an item without ``=`` or key, or a value that is not valid JSON
            where the schema wants something other than a string.
    """
    from devfleet_base.node_config import NODE_CONFIG_SCHEMA

    out: dict[str, Any] = {}
    for item in items:
        key, text = _split(item)
        out[key] = parse_typed(text, field_at(NODE_CONFIG_SCHEMA, key), where=f"{key}: ")
    return out
