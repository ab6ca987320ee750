"""Selectors on what nodes say about themselves: ``arch=armv7l``,
``components.ledstrip.version<1.2``, ``groups~lobby``.

A selector is ``FIELD OP VALUE``. ``FIELD`` is a dotted path into the node's
view: its ``meta`` (``arch``, ``board``, ``agent_version``...), plus
``components`` (from its retained ``state``), ``groups``, ``node`` (its name)
and ``health``. Operators: ``=`` (or ``==``) ``!=`` (string equality), ``<`` ``<=`` ``>``
``>=`` (versions, compared with :class:`packaging.version.Version`; numbers as
numbers), ``~`` (membership in a list, or a substring). A node without the
field does not match (``!=`` included). Idea: Kubernetes label selectors and
hawkBit's target filter queries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from ..errors import InvalidRequest
from ..model import NodeView

__all__ = ["Selector", "node_fields"]

_EXPR = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(==|<=|>=|!=|=|<|>|~)\s*(.*?)\s*$")
_MISSING = object()


def node_fields(view: NodeView) -> dict[str, Any]:
    """What a selector can see of a node (read-only dicts of the model)."""
    fields: dict[str, Any] = dict(view.meta or {})
    fields["components"] = view.components
    fields["groups"] = view.groups
    fields["node"] = view.name
    fields["health"] = view.health
    return fields


@dataclass(frozen=True)
class Selector:
    """One ``FIELD OP VALUE`` condition."""

    path: tuple[str, ...]
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse ``arch=armv7l``.

        Raises:
            InvalidRequest: not of the form ``FIELD OP VALUE``, or an ordering with a
                value that is not a version.
        """
        match = _EXPR.match(text) if isinstance(text, str) else None
        if match is None or not match.group(3):
            raise InvalidRequest(
                f"bad selector {text!r}: expected FIELD OP VALUE with OP one of = != < <= > >= ~"
                " (e.g. arch=armv7l or components.ledstrip.version<1.2)"
            )
        field, op, value = match.groups()
        op = "=" if op == "==" else op
        if op in ("<", "<=", ">", ">="):
            try:
                Version(value)
            except InvalidVersion:
                raise InvalidRequest(f"bad selector {text!r}: {value!r} is not a version") from None
        return cls(tuple(field.split(".")), op, value)

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}{self.op}{self.value}"

    def matches(self, fields: dict[str, Any]) -> bool:
        """Whether a node's fields (see :func:`node_fields`) satisfy it."""
        have: Any = fields
        for part in self.path:
            have = have.get(part, _MISSING) if isinstance(have, dict) else _MISSING
            if have is _MISSING:
                return False
        if have is None:
            return False
        op, value = self.op, self.value
        if op == "=":
            return _text(have) == value
        if op == "!=":
            return _text(have) != value
        if op == "~":
            return value in have if isinstance(have, (list, str)) else False
        try:
            left = Version(str(have))
        except InvalidVersion:
            return False
        right = Version(value)
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
