"""The CLI's output helpers, pure: dates, JSON Lines, URLs without secrets."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from devfleet_command.output import dated, json_line, json_text, shown_url, when

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.builds(pow, st.just(10), st.integers(4400, 4500)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def test_times_become_dates_and_nothing_else_changes() -> None:
    ts = 1796032313.5
    got = dated({"ts": ts, "uptime": 1796032313.5, "nested": [{"started_at": ts, "count": 3}], "at": True})
    assert got["ts"] == when(ts) and datetime.fromisoformat(got["ts"]).timestamp() == int(ts)
    assert got["uptime"] == 1796032313.5  # not a time key
    assert got["nested"] == [{"started_at": when(ts), "count": 3}]
    assert dated({"ts": 12.5, "expires_at": None}) == {"ts": 12.5, "expires_at": None}  # not a date


@given(JSON)
def test_dated_and_json_never_fail_on_any_json(value: Any) -> None:
    out = dated(value)
    json.loads(json_text(out))
    line = json_line(out)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert json.loads(line) == json.loads(json_text(out))


def test_what_json_cannot_carry_is_printed_as_text() -> None:
    hostile = {"big": 10**5000, "nan": float("nan"), "inf": float("-inf"), 1: "int key", "ok": [1.5]}
    out = json.loads(json_text(hostile))
    assert out == {"big": "<number too long>", "nan": "nan", "inf": "-inf", "1": "int key", "ok": [1.5]}
    assert json.loads(json_line(dated(hostile)))["big"] == "<number too long>"


def test_urls_are_shown_without_credentials() -> None:
    assert shown_url("mqtt://alice:s3cret@10.0.0.1:1883") == "mqtt://10.0.0.1:1883"
    assert shown_url("mqtts://broker:8883") == "mqtts://broker:8883"
    assert shown_url("alice:pw@host") == "host"
