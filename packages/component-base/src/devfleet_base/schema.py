"""A small declarative validator for JSON-shaped data.

The agent must run on a Raspberry Pi Zero, where pydantic-core and msgspec have
no wheels, so payloads, node config, component config and command arguments are
all checked by this one mechanism: a :class:`Schema` of :class:`Field` s.

Validation returns a new, normalised value (defaults filled in, ints widened to
floats where a float is wanted) and raises :class:`~devfleet_base.errors.ContractError`
naming the offending path, e.g. ``telemetry.interval: must be >= 0.5``.

Two ways to apply a schema: :meth:`Schema.validate` for what a program accepts
(commands, config: every field must be right) and :meth:`Schema.read` for what a
reader takes in (the console reading descriptions: the required fields must be
right, a malformed optional field is dropped and unknown keys are kept; the
robustness principle, RFC 1122 §1.2.2). :meth:`Schema.to_json_schema` publishes a
schema as JSON Schema (draft 2020-12) for consoles in other languages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import ContractError

__all__ = ["JSON_SCHEMA_DIALECT", "MISSING", "Field", "Schema"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The ``$schema`` of what :meth:`Schema.to_json_schema` writes."""


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
        if self.kind in ("float", "number") and not _finite(value):
            raise ContractError(f"{path}: must be a finite number")
        if self.kind == "float":
            value = float(value)
        self._check_bounds(value, path)
        if self.choices is not None and not _in_choices(value, self.choices):
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

    def accepts(self, value: Any) -> bool:
        """Whether :meth:`check` would accept ``value`` (the compiled predicate first)."""
        ok = self._ok
        if ok is not None and ok(value):
            return True
        try:
            self.check(value, "value")
        except ContractError:
            return False
        return True

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

    def to_json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema (draft 2020-12) subschema; see :meth:`Schema.to_json_schema`."""
        out: dict[str, Any] = {}
        if self.doc:
            out["description"] = self.doc
        if self.kind == "any":
            if not self.nullable:
                out["not"] = {"type": "null"}
        else:
            name = _JSON_SCHEMA_TYPES[self.kind]
            out["type"] = [name, "null"] if self.nullable else name
        bounds = _JSON_SCHEMA_BOUNDS.get(self.kind)
        if bounds is not None:
            if self.min is not None:
                out[bounds[0]] = _json_number(self.min)
            if self.max is not None:
                out[bounds[1]] = _json_number(self.max)
        if self.choices is not None:
            out["enum"] = [*self.choices, None] if self.nullable else list(self.choices)
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.items is not None:
            out["items"] = self.items.to_json_schema()
        if self.schema is not None:
            nested = self.schema.to_json_schema(dialect=False)
            out.update((k, v) for k, v in nested.items() if k not in ("title", "type"))
        if self.values is not None:
            out["additionalProperties"] = self.values.to_json_schema()
        if self.default is not MISSING:
            out["default"] = self.default
        return out

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


_JSON_SCHEMA_TYPES: Final = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "dict": "object",
    "list": "array",
}
_JSON_SCHEMA_BOUNDS: Final = {
    "str": ("minLength", "maxLength"),
    "list": ("minItems", "maxItems"),
    "dict": ("minProperties", "maxProperties"),
    "int": ("minimum", "maximum"),
    "float": ("minimum", "maximum"),
    "number": ("minimum", "maximum"),
}


def _json_number(value: float) -> int | float:
    """``10`` rather than ``10.0`` where a bound is whole (lengths must be integers)."""
    return int(value) if float(value).is_integer() else value


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
    _required: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _filled: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _plain: Callable[[dict[str, Any]], Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _reader: Callable[[Any], dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        required = tuple(k for k, spec in self.fields.items() if spec.required)
        object.__setattr__(self, "_required", required)
        # The keys validate() adds when absent: a value lacking one is not returned unchanged.
        filled = tuple(
            k
            for k, spec in self.fields.items()
            if spec.required or spec.default is not MISSING or spec.schema is not None
        )
        object.__setattr__(self, "_filled", filled)

    def validate(self, data: Any, *, path: str | None = None) -> dict[str, Any]:
        """Validate ``data`` and return a normalised copy with defaults filled in."""
        if type(data) is dict and self._all_plain_valid(data):
            # The common case, every value already valid as it is: the same result as the
            # full walk below, without building a path string or a copy per field.
            out = dict(data)
            if len(out) < len(self.fields):
                fields = self.fields
                for key in self._filled:  # the others add nothing when absent
                    if key not in out:
                        spec = fields[key]
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
        fields = self.fields
        for key in self._filled:  # the others have no default to give
            default = fields[key].fill_default()
            if default is not MISSING:
                out[key] = default
        return out

    def read(self, data: Any, *, path: str | None = None) -> dict[str, Any]:
        """Take ``data`` in as a tolerant reader: what a console does with a node's payload.

        Required fields must be present and valid; a present optional field that is
        malformed is dropped (a reader treats it as absent); unknown keys are kept
        whatever ``extra`` says; no defaults are filled in. When every field is fine
        as it is (the common case, checked by the compiled predicates) ``data``
        itself is returned, not a copy.

        Returns:
            ``data``, or a copy without its malformed optional fields (values of the
            others normalised as :meth:`validate` does).

        Raises:
            ContractError: ``data`` is not an object, or a required field is missing
                or malformed (the message names it).
        """
        if path is None:
            return self.reader(data)
        if type(data) is dict and self._read_plain(data):
            return data
        return self._read_full(data, path)

    @property
    def reader(self) -> Callable[[Any], dict[str, Any]]:
        """:meth:`read` as one generated function (made on first use): the fields' fast
        checks inline, the full walk only when one fails. A console binds it once and
        calls it per message (one call instead of three)."""
        reader = self._reader
        if reader is None:
            reader = _compile_reader(self, full=self._read_full)
            object.__setattr__(self, "_reader", reader)
        return reader

    def _read_full(self, data: Any, path: str | None) -> dict[str, Any]:
        where = path or self.name
        if not isinstance(data, dict):
            raise ContractError(f"{where}: expected an object, got {_json_type_name(data)}")
        out: dict[str, Any] = {}
        for key, value in data.items():
            spec = self.fields.get(key)
            if spec is None:
                out[key] = value
                continue
            try:
                out[key] = spec.check(value, f"{where}.{key}")
            except ContractError:
                if spec.required:
                    raise
        for key in self._required:
            if key not in out:
                raise ContractError(f"{where}: missing required key {key!r}")
        return out

    def _read_plain(self, data: dict[str, Any]) -> bool:
        """True when :meth:`read` would return ``data`` unchanged: one generated function
        per schema (made on first use) that tests each known field inline."""
        plain = self._plain
        if plain is None:
            plain = _compile_reader(self)
            object.__setattr__(self, "_plain", plain)
        return bool(plain(data))

    def to_json_schema(self, *, dialect: bool = True) -> dict[str, Any]:
        """This schema as JSON Schema (draft 2020-12), for validators in any language.

        Args:
            dialect: add ``$schema`` (the top level of a document; nested objects leave it out).

        ``pattern`` is anchored (``^(?:...)$``) because JSON Schema searches where this
        module matches in full; ``extra="allow"`` leaves ``additionalProperties`` open.
        """
        out: dict[str, Any] = {}
        if dialect:
            out["$schema"] = JSON_SCHEMA_DIALECT
        out["title"] = self.name
        out["type"] = "object"
        out["properties"] = {key: spec.to_json_schema() for key, spec in self.fields.items()}
        required = list(self._required)
        if required:
            out["required"] = required
        if self.extra == "forbid":
            out["additionalProperties"] = False
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
    None for fields the fast path does not cover (a constrained ``any``, list items or
    dict values that have no predicate of their own)."""
    nullable = spec.nullable
    if spec.kind == "any":
        if spec.min is not None or spec.max is not None or spec.choices is not None or spec.pattern:
            return None
        return (lambda value: True) if nullable else (lambda value: value is not None)
    covered, inner = _compile_inner(spec)
    if not covered:
        return None
    types = _EXACT_TYPES[spec.kind]
    lo, hi, choices = spec.min, spec.max, spec.choices
    rx = re.compile(spec.pattern) if spec.pattern is not None else None
    finite = spec.kind in ("float", "number")
    sized = spec.kind in ("str", "list", "dict")
    numeric = spec.kind in ("int", "float", "number")

    def ok(value: Any) -> bool:
        if value is None:
            return nullable
        if type(value) not in types:  # exact types: a bool is not an int here
            return False
        if finite and not _finite(value):
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
        if rx is not None and rx.fullmatch(value) is None:
            return False
        return inner is None or inner(value)

    return ok


def _compile_inner(spec: Field) -> tuple[bool, Callable[[Any], bool] | None]:
    """The predicate for a list's items, a dict's values or a nested schema (None when the
    field has none of them); ``covered`` is False when one of them has no predicate."""
    if spec.items is not None:
        item_ok = spec.items._ok
        if item_ok is None:
            return False, None
        return True, lambda value: all(item_ok(v) for v in value)
    if spec.values is not None:
        value_ok = spec.values._ok
        if value_ok is None:
            return False, None
        return True, lambda value: all(type(k) is str and value_ok(v) for k, v in value.items())
    if spec.schema is not None:
        nested = spec.schema
        filled = nested._filled
        return True, lambda value: all(k in value for k in filled) and nested._all_plain_valid(value)
    return True, None


def _compile_reader(schema: Schema, *, full: Callable[[Any, None], dict[str, Any]] | None = None) -> Any:
    """Generate a function of ``data`` that tests every known field's fast check inline
    (what ``Field._ok`` says, loops over list items and dict values included: a call per
    field cost more than the test itself) and that every required key is present; unknown
    keys are not looked at. The idea is attrs' and dataclasses' generated ``__init__``.

    Without ``full``: ``plain(data) -> bool`` (True: :meth:`Schema.read` returns ``data``
    as it is). With ``full`` (the full walk): ``read(data) -> dict``, which returns
    ``data`` when every check passes and ``full(data, None)`` otherwise.
    """
    env: dict[str, Any] = {"_MISSING": MISSING, "_finite": _finite}
    body = ["    get = data.get"]
    if full is not None:
        env["_full"] = full
        body = ["    if type(data) is not dict:", "        return _full(data, None)", *body]
    for i, (key, spec) in enumerate(schema.fields.items()):
        body.append(f"    v = get({key!r}, _MISSING)")
        body.append("    if v is _MISSING:")
        body.append("        return False" if spec.required else "        pass")
        body.append("    else:")
        body.extend(_inline_checks(spec, "v", f"{i}", env, "        "))
    body.append("    return True")
    if full is not None:
        body = [line.replace("return False", "return _full(data, None)") for line in body[:-1]]
        body.append("    return data")
    # Constants and builtins as default arguments: local loads, cheaper than global ones.
    names = [*env, "type", "len", "str", "int", "float", "bool", "dict", "list"]
    env.update(type=type, len=len, str=str, int=int, float=float, bool=bool, dict=dict, list=list)
    lines = [f"def generated(data, {', '.join(f'{n}={n}' for n in names)}):", *body]
    exec("\n".join(lines), env)  # noqa: S102 - source generated above from the schema only
    return env["generated"]


def _inline_checks(spec: Field, var: str, tag: str, env: dict[str, Any], pad: str) -> list[str]:
    """Statements that ``return False`` exactly when ``spec._ok(var)`` would be False."""
    if spec._ok is None:
        return [f"{pad}return False"]  # no fast check: the full walk decides
    if spec.kind == "any" or spec.schema is not None:
        env[f"_ok{tag}"] = spec._ok
        return [f"{pad}if not _ok{tag}({var}):", f"{pad}    return False"]
    lines: list[str] = []
    if spec.nullable:
        lines.append(f"{pad}if {var} is not None:")
        pad += "    "
    if spec.kind == "number":
        parts = [f"(type({var}) is int or type({var}) is float)", f"_finite({var})"]
    else:
        parts = [f"type({var}) is {_EXACT_TYPES[spec.kind][0].__name__}"]
        if spec.kind == "float":
            parts.append(f"{var} - {var} == 0.0")  # finite: inf - inf and nan - nan are nan
    if spec.kind != "bool":
        size = f"len({var})" if spec.kind in ("str", "list", "dict") else var
        if spec.min is not None:
            parts.append(f"{size} >= {spec.min!r}")
        if spec.max is not None:
            parts.append(f"{size} <= {spec.max!r}")
    if spec.choices is not None:
        env[f"_choices{tag}"] = spec.choices
        parts.append(f"{var} in _choices{tag}")
    if spec.pattern is not None:
        env[f"_match{tag}"] = re.compile(spec.pattern).fullmatch
        parts.append(f"_match{tag}({var}) is not None")
    lines += [f"{pad}if not ({' and '.join(parts)}):", f"{pad}    return False"]
    item = f"x{tag}"
    if spec.items is not None:
        lines.append(f"{pad}for {item} in {var}:")
        lines += _inline_checks(spec.items, item, f"{tag}_", env, pad + "    ")
    elif spec.values is not None:
        lines.append(f"{pad}for k{tag}, {item} in {var}.items():")
        lines += [f"{pad}    if type(k{tag}) is not str:", f"{pad}        return False"]
        lines += _inline_checks(spec.values, item, f"{tag}_", env, pad + "    ")
    return lines


def _in_choices(value: Any, choices: tuple[Any, ...]) -> bool:
    """``value in choices``, except that ``True`` is not ``1`` (JSON Schema's ``enum`` too)."""
    is_bool = type(value) is bool
    return any(c == value and (type(c) is bool) == is_bool for c in choices)


def _finite(value: Any) -> bool:
    """``math.isfinite`` that says False for an int too large for a float (``1e400`` as an
    integer: JSON allows it) rather than raising OverflowError."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


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
