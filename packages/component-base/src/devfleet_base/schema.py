"""A small declarative validator for JSON-shaped data.

The agent must run on a Raspberry Pi Zero, where pydantic-core and msgspec have
no wheels, so payloads, node config, component config and command arguments are
all checked by this one mechanism: a :class:`Schema` of :class:`Field` s.

Validation returns a new, normalised value (defaults filled in, ints widened to
floats where a float is wanted) and raises :class:`~devfleet_base.errors.ContractError`
naming the offending path, e.g. ``telemetry.interval: must be >= 0.5``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ContractError

__all__ = ["MISSING", "Field", "Schema"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "number": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
    "any": (str, int, float, bool, dict, list, type(None)),
}


@dataclass(frozen=True)
class Field:
    """One field of a :class:`Schema`.

    Args:
        kind: ``str``, ``int``, ``float``/``number``, ``bool``, ``dict``, ``list`` or ``any``.
        required: the field must be present.
        default: the value filled in when absent (copied for dicts and lists).
        nullable: ``None`` is allowed.
        min: lower bound (numbers) or minimum length (str, list, dict).
        max: upper bound (numbers) or maximum length (str, list, dict).
        choices: the allowed values.
        pattern: a regular expression a string must match in full.
        items: the field every list item must satisfy.
        schema: the schema a dict must satisfy.
        values: the field every value of a free-form dict must satisfy.
        doc: one line for generated docs.
    """

    kind: str
    required: bool = False
    default: Any = MISSING
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None
    items: Field | None = None
    schema: Schema | None = None
    values: Field | None = None
    doc: str = ""
    _ok: Callable[[Any], bool] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _JSON_TYPES:
            raise ValueError(f"unknown field kind {self.kind!r}")
        object.__setattr__(self, "_ok", _compile_fast(self))

    def check(self, value: Any, path: str) -> Any:
        """Validate ``value`` at ``path``; return the normalised value."""
        if value is None:
            if self.nullable:
                return None
            raise ContractError(f"{path}: must not be null")
        if not _is_kind(value, self.kind):
            raise ContractError(f"{path}: expected {self.kind}, got {_json_type_name(value)}")
        if self.kind in ("float", "number") and not math.isfinite(value):
            raise ContractError(f"{path}: must be a finite number")
        if self.kind == "float":
            value = float(value)
        self._check_bounds(value, path)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ContractError(f"{path}: must be one of {allowed}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ContractError(f"{path}: {value[:40]!r} does not match {self.pattern}")
        if isinstance(value, list) and self.items is not None:
            value = [self.items.check(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if self.schema is not None:
                value = self.schema.validate(value, path=path)
            elif self.values is not None:
                value = {_check_key(k, path): self.values.check(v, f"{path}.{k}") for k, v in value.items()}
        return value

    def _check_bounds(self, value: Any, path: str) -> None:
        if isinstance(value, (str, list, dict)):
            size = len(value)
            if self.min is not None and size < self.min:
                raise ContractError(f"{path}: length must be >= {self.min:g}")
            if self.max is not None and size > self.max:
                raise ContractError(f"{path}: length must be <= {self.max:g}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ContractError(f"{path}: must be >= {self.min:g}")
            if self.max is not None and value > self.max:
                raise ContractError(f"{path}: must be <= {self.max:g}")

    def fill_default(self) -> Any:
        """The default, copied so that callers never share a mutable default."""
        if isinstance(self.default, (dict, list)):
            if not self.default:
                return type(self.default)()  # an empty default: no deepcopy needed
            import copy

            return copy.deepcopy(self.default)
        if self.default is MISSING and self.schema is not None:
            return self.schema.defaults()
        return self.default


@dataclass(frozen=True)
class Schema:
    """A named mapping of fields.

    Args:
        name: used in error messages and docs.
        fields: the known keys.
        extra: ``"forbid"`` refuses unknown keys, ``"allow"`` keeps them as they are.
    """

    name: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    extra: str = "forbid"

    def validate(self, data: Any, *, path: str | None = None) -> dict[str, Any]:
        """Validate ``data`` and return a normalised copy with defaults filled in."""
        if type(data) is dict and self._all_plain_valid(data):
            # The common case, every value already valid as it is: the same result as the
            # full walk below, without building a path string or a copy per field.
            out = dict(data)
            if len(out) < len(self.fields):
                for key, spec in self.fields.items():
                    if key not in out:
                        if spec.required:
                            return self._validate(data, path)  # raises, naming the key
                        default = spec.fill_default()
                        if default is not MISSING:
                            out[key] = default
            return out
        return self._validate(data, path)

    def _all_plain_valid(self, data: dict[str, Any]) -> bool:
        """True when every key is known (or extra keys are allowed) and every value passes
        its field's fast check, so that the full walk would return the values unchanged."""
        fields = self.fields
        forbid = self.extra == "forbid"
        for key, value in data.items():
            spec = fields.get(key)
            if spec is None:
                if forbid or type(key) is not str:
                    return False
                continue
            ok = spec._ok
            if ok is None or not ok(value):
                return False
        return True

    def _validate(self, data: Any, path: str | None) -> dict[str, Any]:
        where = path or self.name
        if not isinstance(data, dict):
            raise ContractError(f"{where}: expected an object, got {_json_type_name(data)}")
        out: dict[str, Any] = {}
        for key, value in data.items():
            _check_key(key, where)
            spec = self.fields.get(key)
            if spec is None:
                if self.extra == "forbid":
                    known = ", ".join(sorted(self.fields)) or "none"
                    raise ContractError(f"{where}: unknown key {key!r} (known: {known})")
                out[key] = value
                continue
            out[key] = spec.check(value, f"{where}.{key}" if path or self.name else key)
        for key, spec in self.fields.items():
            if key in out:
                continue
            if spec.required:
                raise ContractError(f"{where}: missing required key {key!r}")
            default = spec.fill_default()
            if default is not MISSING:
                out[key] = default
        return out

    def defaults(self) -> dict[str, Any]:
        """Every field's default, as a dict (required fields left out)."""
        out: dict[str, Any] = {}
        for key, spec in self.fields.items():
            default = spec.fill_default()
            if default is not MISSING:
                out[key] = default
        return out


_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float,),  # an int is widened to float by the full check: not "unchanged"
    "number": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
}


def _compile_fast(spec: Field) -> Callable[[Any], bool] | None:
    """A predicate that is True only when ``spec.check`` would accept ``value`` and return
    it unchanged; False means "take the full check" (which finds and names the error).
    None for fields the fast path does not cover (nested schemas, items, a constrained
    ``any``)."""
    if spec.items is not None or spec.schema is not None or spec.values is not None:
        return None
    nullable = spec.nullable
    if spec.kind == "any":
        if spec.min is not None or spec.max is not None or spec.choices is not None or spec.pattern:
            return None
        return (lambda value: True) if nullable else (lambda value: value is not None)
    types = _EXACT_TYPES[spec.kind]
    lo, hi, choices = spec.min, spec.max, spec.choices
    rx = re.compile(spec.pattern) if spec.pattern is not None else None
    finite = spec.kind in ("float", "number")
    sized = spec.kind in ("str", "list", "dict")
    numeric = spec.kind in ("int", "float", "number")
    isfinite = math.isfinite

    def ok(value: Any) -> bool:
        if value is None:
            return nullable
        if type(value) not in types:  # exact types: a bool is not an int here
            return False
        if finite and not isfinite(value):
            return False
        if lo is not None or hi is not None:
            size = len(value) if sized else value if numeric else None
            if size is not None:
                if lo is not None and size < lo:
                    return False
                if hi is not None and size > hi:
                    return False
        if choices is not None and value not in choices:
            return False
        return rx is None or rx.fullmatch(value) is not None

    return ok


def _check_key(key: Any, path: str) -> str:
    if not isinstance(key, str):
        raise ContractError(f"{path}: keys must be strings")
    return key


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if isinstance(value, bool):
        return kind == "bool"
    return isinstance(value, _JSON_TYPES[kind])


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
