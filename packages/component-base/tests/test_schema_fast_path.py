"""The fast path of Schema.validate must give exactly what the full walk gives."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_base.contract import RECEIPT_SCHEMA, STATUS_SCHEMA
from devfleet_base.errors import ContractError
from devfleet_base.schema import Field, Schema

SCHEMA = Schema(
    "s",
    {
        "name": Field("str", required=True, pattern=r"[a-z]+", max=8),
        "level": Field("int", min=0, max=10, default=3),
        "ratio": Field("float", min=0.5, nullable=True),
        "mode": Field("str", choices=("a", "b")),
        "tags": Field("list", default=[]),
        "flag": Field("bool"),
        "n": Field("number"),
        "anything": Field("any"),
    },
)

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "b", "abc", "ABC", "toolongname", ""]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _outcome(fn: Any, data: Any) -> Any:
    try:
        return ("ok", fn(data))
    except ContractError as exc:
        return ("error", exc.message)


def _same(a: Any, b: Any) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return bool(a[1] == b[1])
    return repr(a[1]) == repr(b[1]) and [type(v) for v in a[1].values()] == [type(v) for v in b[1].values()]


@given(st.dictionaries(st.sampled_from([*SCHEMA.fields, "extra"]), _VALUES, max_size=6))
def test_fast_path_matches_the_full_walk(data: dict[str, Any]) -> None:
    for schema in (SCHEMA, Schema("t", SCHEMA.fields, extra="allow")):
        fast = _outcome(schema.validate, data)
        full = _outcome(lambda d, s=schema: s._validate(d, None), data)
        assert _same(fast, full), (data, fast, full)


def test_fast_path_widens_nothing_it_should_not() -> None:
    out = SCHEMA.validate({"name": "ab", "ratio": 1})
    assert out == {"name": "ab", "ratio": 1.0, "level": 3, "tags": []}
    assert type(out["ratio"]) is float


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "online", "node": "n1", "version": 1, "session": 1, "ts": 1.0},
        {"status": "gone", "node": "n1", "version": 1, "session": 1},
        {"status": "online", "node": "n1", "version": True, "session": 1},
        {"status": "online", "node": "bad name", "version": 1, "session": 1},
        {"status": "online", "version": 1, "session": 1, "ts": math.inf},
        {"status": "online", "version": 1},
    ],
)
def test_status_schema_same_answer(payload: dict[str, Any]) -> None:
    assert _same(
        _outcome(STATUS_SCHEMA.validate, payload),
        _outcome(lambda d: STATUS_SCHEMA._validate(d, None), payload),
    )


def test_receipt_schema_same_answer() -> None:
    good = {"id": "a" * 12, "node": "n1", "cmd": "ping", "status": "ok", "ts": 1.0, "result": {"x": 1}}
    assert RECEIPT_SCHEMA.validate(good) == RECEIPT_SCHEMA._validate(good, None)
