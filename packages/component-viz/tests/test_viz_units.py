"""The view's pure parts: series, the raw inspector's verdicts, access rules, requests."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_base.contract import Receipt
from devfleet_command import AsyncFleet, CommandHandle
from devfleet_viz.hub import FleetHub
from devfleet_viz.raw import SHOW_BYTES, inspect_payload
from devfleet_viz.series import Series
from devfleet_viz.server import Access, _command_of, is_loopback


def test_series_is_bounded_and_averages_a_bucket() -> None:
    s = Series(capacity=3, step=1.0)
    assert s.add(10.2, 1.0) == (10.0, 1.0)
    assert s.add(10.7, 3.0) == (10.0, 2.0)  # same bucket: the mean
    for t in range(11, 20):
        s.add(float(t), float(t))
    assert len(s) == 3
    assert s.points() == [[17.0, 17.0], [18.0, 18.0], [19.0, 19.0]]
    assert s.points(last=2) == [[18.0, 18.0], [19.0, 19.0]]
    assert s.add(5.0, 1.0) is None  # older than the newest bucket: dropped, never resent
    with pytest.raises(ValueError):
        Series(capacity=0)


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(-1e6, 1e6)), max_size=300))
def test_series_never_grows_past_capacity(samples: list[tuple[float, float]]) -> None:
    s = Series(capacity=20, step=0.5)
    reference: list[list[float]] = []  # [bucket, sum, count], every bucket ever opened
    for ts, v in samples:
        s.add(ts, v)
        bucket = ts - ts % 0.5
        if reference and bucket < reference[-1][0]:
            continue
        if reference and bucket == reference[-1][0]:
            reference[-1][1] += v
            reference[-1][2] += 1
        else:
            reference.append([bucket, v, 1])
    pts = s.points()
    assert len(pts) <= 20
    assert [p[0] for p in pts] == [r[0] for r in reference[-20:]]
    assert [p[1] for p in pts] == pytest.approx([r[1] / r[2] for r in reference[-20:]])


def test_inspector_verdicts() -> None:
    ok = json.dumps({"status": "online", "session": 1, "version": 2}).encode()
    assert inspect_payload("nodes/a/status", ok)["verdict"] == "ok"
    cut = inspect_payload("nodes/a/meta", b'{"session": 1, "version": 2, "hostn')
    assert cut["verdict"] == "truncated" and "mid-document" in cut["reason"]
    junk = inspect_payload("nodes/a/state", b"not json at all")
    assert junk["verdict"] == "malformed"
    shape = inspect_payload("nodes/a/cfg", b'{"config": {}}')
    assert shape["verdict"] == "malformed" and "session" in shape["reason"]
    status = inspect_payload("nodes/a/status", b'{"status": "dancing", "session": 1, "version": 1}')
    assert status["verdict"] == "malformed"
    other = inspect_payload("nodes/a/meta", b'{"node": "b", "session": 1, "version": 1}')
    assert other["verdict"] == "malformed" and "'b'" in other["reason"]
    assert inspect_payload("nodes/a/meta", b"")["verdict"] == "cleared"
    frame = inspect_payload("maps/arena", b'{"map": "arena", "width": -1, "height": 2}')
    assert frame["verdict"] == "malformed"
    big = inspect_payload("nodes/a/meta", b'{"session": 1, "version": 1, "x": "' + b"y" * 10_000 + b'"}')
    assert big["verdict"] == "ok" and big["cut"] and len(big["text"]) == SHOW_BYTES


@given(st.binary(max_size=600), st.sampled_from(["nodes/a/meta", "nodes/a/status", "maps/m", "x/y"]))
def test_inspector_never_raises(payload: bytes, topic: str) -> None:
    out = inspect_payload(topic, payload)
    assert out["verdict"] in ("ok", "malformed", "truncated", "cleared")
    json.dumps(out)  # what the page gets is always JSON-able


def test_loopback_and_access_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("nonsense")
    json_post = {"content-type": "application/json", "host": "127.0.0.1:80"}
    assert Access("127.0.0.1").refusal(json_post, 80) == ""
    assert "Host" in Access("127.0.0.1").refusal({**json_post, "host": "evil.example:80"}, 80)
    assert "json" in Access("127.0.0.1").refusal({**json_post, "content-type": "text/plain"}, 80)
    cross = {**json_post, "origin": "http://evil.example"}
    assert "own page" in Access("127.0.0.1").refusal(cross, 80)
    assert Access("0.0.0.0").readonly
    assert "read-only" in Access("0.0.0.0").refusal(json_post, 80)
    with_token = Access("0.0.0.0", token="s3cret")
    assert not with_token.readonly
    assert "token" in with_token.refusal({**json_post, "host": "fleet:80"}, 80)
    assert "token" in with_token.refusal({**json_post, "authorization": "Bearer wrong"}, 80)
    assert with_token.refusal({**json_post, "host": "fleet:80", "authorization": "Bearer s3cret"}, 80) == ""


def test_command_requests() -> None:
    assert _command_of({"node": "n1", "verb": "ping"}) == ("n1", "ping", {})
    assert _command_of({"node": "n1", "component": "ledstrip", "command": "off", "args": {"a": 1}}) == (
        "n1",
        "component",
        {"component": "ledstrip", "command": "off", "args": {"a": 1}},
    )
    for bad in ([], {"verb": "ping"}, {"node": "n1", "verb": "a/b"}, {"node": "+", "verb": "ping"},
                {"node": "n1", "verb": "ping", "args": [1]}):  # fmt: skip
        with pytest.raises(ValueError):
            _command_of(bad)


async def test_back_to_back_receipts_each_reach_the_pages() -> None:
    """Regression: the hub polled the handle every 50 ms and could miss a short
    ``accepted`` (or the final receipt); now the handle calls it at every state."""
    hub = FleetHub(AsyncFleet("mqtt://127.0.0.1:1"))
    handle = CommandHandle("c1", "n1", "component", asyncio.get_running_loop())
    handle.on_state(hub._note_receipt)
    accepted = {"id": "c1", "node": "n1", "cmd": "component", "status": "accepted"}
    ok = {**accepted, "status": "ok", "result": {"x": 1}}
    for wire in (accepted, ok):  # no await in between
        handle._on_receipt(Receipt.from_wire(wire), wire)
    assert [r["state"] for r in hub.receipts] == ["accepted", "ok"]
    assert [r["state"] for r in hub._new_receipts] == ["accepted", "ok"]  # the next delta carries both
    assert hub.receipts[-1]["result"] == {"x": 1}
