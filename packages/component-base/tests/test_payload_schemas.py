"""The payload schemas: the tolerant reader, its generated fast path, the JSON Schema export
and docs/contract.md, which publishes them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devfleet_base import payload_schemas
from devfleet_base.contract import NAME_PATTERN
from devfleet_base.errors import ContractError
from devfleet_base.schema import Field, Schema

DOC = Path(__file__).resolve().parents[3] / "docs" / "contract.md"

NESTED = Schema(
    "n",
    {
        "id": Field("int", required=True, min=0),
        "name": Field("str", pattern=NAME_PATTERN, max=8),
        "ratio": Field("float", nullable=True, min=0, max=1),
        "n": Field("number"),
        "mode": Field("str", choices=("a", "b"), nullable=True),
        "flag": Field("bool"),
        "tags": Field("list", max=3, items=Field("str", max=3)),
        "counts": Field("dict", values=Field("int", min=0)),
        "inner": Field("dict", schema=Schema("inner", {"x": Field("float", default=1.0), "y": Field("int")})),
        "rows": Field("list", items=Field("dict", schema=Schema("row", {"a": Field("int", required=True)}))),
        "anything": Field("any"),
        "constrained": Field("any", choices=(1, 2)),
    },
)

_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 5)
    | st.just(10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["a", "b", "abc", "bad name", "toolongname", ""]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "x", "y", "z"]), inner, max_size=3)
    ),
    max_leaves=6,
)
_DATA = st.dictionaries(st.sampled_from([*NESTED.fields, "extra"]), _VALUES, max_size=8)


def _outcome(fn: Any, data: Any) -> Any:
    try:
        out = fn(data)
    except ContractError as exc:
        return ("error", exc.message)
    return ("ok", repr(out), [type(v) for v in out.values()])


@given(_DATA)
def test_read_fast_path_gives_what_the_full_walk_gives(data: dict[str, Any]) -> None:
    assert _outcome(NESTED.read, data) == _outcome(lambda d: NESTED._read_full(d, None), data)


@given(_DATA)
def test_generated_reader_agrees_with_the_field_predicates(data: dict[str, Any]) -> None:
    by_predicates = all(k in data for k in NESTED._required) and all(
        NESTED.fields[k]._ok is not None and NESTED.fields[k]._ok(v)  # type: ignore[misc]
        for k, v in data.items()
        if k in NESTED.fields
    )
    assert NESTED._read_plain(data) == by_predicates


@given(_DATA)
def test_validate_fast_path_with_nested_fields_matches_the_full_walk(data: dict[str, Any]) -> None:
    schema = Schema("n", {k: f for k, f in NESTED.fields.items() if k != "constrained"})
    assert _outcome(schema.validate, data) == _outcome(lambda d: schema._validate(d, None), data)


@given(_DATA)
@example({"id": 1, "constrained": True})
def test_what_the_schema_accepts_the_json_schema_accepts(data: dict[str, Any]) -> None:
    try:
        NESTED.validate(data)
    except ContractError:
        return
    jsonschema.validate(data, NESTED.to_json_schema(), cls=jsonschema.Draft202012Validator)


def test_read_keeps_unknown_drops_malformed_optional_refuses_malformed_required() -> None:
    good = {"id": 1, "name": "n1", "extra": object()}
    assert NESTED.read(good) is good  # the fast path: no copy
    assert NESTED.read({"id": 1, "name": "bad name", "tags": "x", "more": 1}) == {"id": 1, "more": 1}
    assert NESTED.read({"id": 1, "ratio": 1}) == {"id": 1, "ratio": 1.0}  # normalised as validate does
    with pytest.raises(ContractError, match=r"n\.id: expected int"):
        NESTED.read({"id": "1"})
    with pytest.raises(ContractError, match="missing required key 'id'"):
        NESTED.read({"name": "n1"})
    with pytest.raises(ContractError, match="expected an object"):
        NESTED.read([1])


def test_a_huge_integer_is_not_a_finite_number() -> None:
    for kind in ("float", "number"):
        field = Field(kind)
        assert not field.accepts(10**400)
        with pytest.raises(ContractError, match="finite"):
            field.check(10**400, "x")
    assert Field("int").accepts(10**400)


def test_json_schema_anchors_patterns_and_maps_bounds() -> None:
    out = Field("str", pattern="[a-z]+", min=1, max=4, nullable=True, doc="d").to_json_schema()
    assert out == {
        "description": "d",
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": 4,
        "pattern": "^(?:[a-z]+)$",
    }
    validator = jsonschema.Draft202012Validator({"type": "object", "properties": {"s": out}})
    assert validator.is_valid({"s": "ab"}) and not validator.is_valid({"s": "ab1"})


def test_published_schemas_are_valid_draft_2020_12() -> None:
    for topic, schema in payload_schemas.json_schemas().items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", topic
        jsonschema.Draft202012Validator.check_schema(schema)


def test_contract_doc_shows_the_schemas_the_code_has() -> None:
    text = DOC.read_text()
    m = re.search(r"<!-- payload-schemas:start -->\n(.*?)<!-- payload-schemas:end -->", text, re.S)
    assert m, f"no payload-schemas section in {DOC}"
    assert m.group(1) == payload_schemas.markdown(), (
        "docs/contract.md disagrees with devfleet_base.payload_schemas: "
        "replace the section with the output of `python -m devfleet_base.payload_schemas`"
    )


def test_every_published_topic_is_in_the_topic_table() -> None:
    from devfleet_base.contract import TOPICS

    patterns = {t.pattern for t in TOPICS}
    for spec in payload_schemas.PAYLOADS:
        for topic in spec.topic.split(", "):
            assert topic in patterns or topic.startswith("nodes/{node}/components/"), topic
