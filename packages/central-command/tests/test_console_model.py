"""Unit tests of the sans-IO FleetModel (no broker)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_base import contract
from devfleet_command.model import (
    FleetModel,
    InvalidMessage,
    NodeAppeared,
    NodeChanged,
    NodeLost,
    NodeOffline,
    NodeOnline,
    NodeRemoved,
    NodeStale,
)


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def desc(node: str, session: int, version: int, **extra: Any) -> bytes:
    return enc({"node": node, "session": session, "version": version, "ts": 1.0, **extra})


def status(node: str, value: str, session: int, version: int) -> bytes:
    return desc(node, session, version, status=value)


T = contract.node_topic


def test_birth_makes_a_node_and_events() -> None:
    m = FleetModel()
    ev = m.feed(T("n1", "meta"), desc("n1", 1, 1, hostname="h"), retained=True, now=100)
    assert [type(e) for e in ev] == [NodeAppeared, NodeChanged]
    ev = m.feed(T("n1", "status"), status("n1", "online", 1, 2), True, 100)
    assert [type(e) for e in ev] == [NodeOnline]
    m.feed(T("n1", "cfg"), desc("n1", 1, 3, config_version=4, config={"heartbeat": {"interval": 2.0}}))
    m.feed(T("n1", "state"), desc("n1", 1, 4, components={"led": {"state": "running"}}, actors={}))
    n = m.get("n1")
    assert n is not None and n.online and n.health == "online"
    assert n.meta is not None and n.meta["hostname"] == "h"
    assert n.config_version == 4 and n.heartbeat_interval == 2.0
    assert n.components == {"led": {"state": "running"}}
    assert n.session == 1


def test_late_will_is_ignored() -> None:
    m = FleetModel()
    # session 2's birth arrives before session 1's will (reserved at its connect, version 1)
    m.feed(T("n1", "status"), status("n1", "online", 2, 5))
    assert m.feed(T("n1", "status"), status("n1", "lost", 1, 1)) == []
    assert m.get("n1").status == "online"  # type: ignore[union-attr]
    # ... and within one session a will reserved before a reconnect's birth
    assert m.feed(T("n1", "status"), status("n1", "lost", 2, 3)) == []
    ev = m.feed(T("n1", "status"), status("n1", "lost", 2, 9))
    assert [type(e) for e in ev] == [NodeLost]
    ev = m.feed(T("n1", "status"), status("n1", "offline", 3, 1))
    assert [type(e) for e in ev] == [NodeOffline]


def test_duplicates_and_older_descriptions_ignored() -> None:
    m = FleetModel()
    m.feed(T("n1", "meta"), desc("n1", 1, 7, a=1))
    assert m.feed(T("n1", "meta"), desc("n1", 1, 7, a=2)) == []
    assert m.feed(T("n1", "meta"), desc("n1", 1, 6, a=3)) == []
    assert m.get("n1").meta["a"] == 1  # type: ignore[union-attr,index]
    assert m.feed(T("n1", "meta"), desc("n1", 2, 1, a=4))
    assert m.get("n1").meta["a"] == 4  # type: ignore[union-attr,index]


def test_stale_once_and_recovery() -> None:
    m = FleetModel()
    m.feed(T("n1", "status"), status("n1", "online", 1, 1), now=0)
    m.feed(T("n1", "cfg"), desc("n1", 1, 2, config={"heartbeat": {"interval": 1.0}}), now=0)
    m.feed(T("n1", "heartbeat"), enc({"node": "n1", "uptime": 1}), now=10)
    assert m.check_stale(12.9) == []
    ev = m.check_stale(13.5)
    assert [type(e) for e in ev] == [NodeStale] and m.get("n1").health == "stale"  # type: ignore[union-attr]
    assert m.check_stale(20) == []  # once
    ev = m.feed(T("n1", "heartbeat"), enc({"node": "n1"}), now=21)
    assert any(isinstance(e, NodeOnline) for e in ev)
    assert m.get("n1").online  # type: ignore[union-attr]


def test_stale_reason_and_broker_in_summary_and_ls_table() -> None:
    from rich.console import Console

    from devfleet_command.commands.nodes import table

    m = FleetModel()
    m.feed(T("n1", "status"), status("n1", "online", 1, 1), now=0)
    m.feed(T("n1", "cfg"), desc("n1", 1, 2, config={"heartbeat": {"interval": 10.0}}), now=0)
    m.feed(T("n1", "heartbeat"), enc({"node": "n1", "broker": "127.0.0.1:4001"}), now=5)
    view = m.get("n1")
    assert view is not None and view.stale_reason(40) is None and view.broker == "127.0.0.1:4001"
    m.check_stale(40)
    assert view.stale_reason(40) == "no heartbeat for 35 s (every 10 s expected)"
    assert view.summary(40)["stale_reason"].startswith("no heartbeat for 35 s")
    assert view.summary()["stale_reason"] == "no heartbeat in time (every 10 s expected)"
    console = Console(width=200, record=True)
    console.print(table([view], now=40))
    assert "stale (no heartbeat for 35 s" in console.export_text()


def test_default_interval_and_offline_never_stale() -> None:
    m = FleetModel()
    m.feed(T("n1", "status"), status("n1", "online", 1, 1), now=0)
    m.feed(T("n2", "status"), status("n2", "offline", 1, 1), now=0)
    assert m.check_stale(29) == []
    assert [e.node for e in m.check_stale(31)] == ["n1"]  # no heartbeat at all: counted from birth


def test_removal_by_empty_retained() -> None:
    m = FleetModel()
    m.feed(T("n1", "meta"), desc("n1", 1, 1))
    m.feed(T("n1", "state"), desc("n1", 1, 2))
    ev = m.feed(T("n1", "state"), b"", retained=True)
    assert [type(e) for e in ev] == [NodeChanged] and m.get("n1").state is None  # type: ignore[union-attr]
    ev = m.feed(T("n1", "meta"), b"", retained=True)
    assert [type(e) for e in ev] == [NodeRemoved] and "n1" not in m
    assert m.feed(T("n1", "status"), b"", retained=True) == []  # an empty payload creates nothing
    assert len(m) == 0


def test_malformed_counted_per_node_and_globally() -> None:
    m = FleetModel()
    m.feed(T("n1", "meta"), desc("n1", 1, 1))
    bad = [
        (T("n1", "meta"), b"{not json"),
        (T("n1", "meta"), b"[1,2]"),
        (T("n1", "state"), enc({"session": "1", "version": 2})),
        (T("n1", "status"), status("n1", "sideways", 1, 5)),
        (T("n1", "cfg"), desc("other", 1, 9)),
        (contract.node_telemetry_topic("n1", "cpu"), enc({"value": "high"})),
        (T("n1", "heartbeat"), b"\xff\xfe"),
    ]
    for topic, payload in bad:
        ev = m.feed(topic, payload)
        assert [type(e) for e in ev] == [InvalidMessage], topic
    assert m.invalid_total == len(bad)
    assert m.get("n1").invalid == len(bad)  # type: ignore[union-attr]
    assert m.feed("some/other/topic", b"x") == []
    assert m.ignored_total == 1


def test_telemetry_history_bounded() -> None:
    m = FleetModel(history=5)
    for i in range(20):
        m.feed(contract.node_telemetry_topic("n1", "cpu"), enc({"value": i, "unit": "%", "ts": i}), now=i)
    n = m.get("n1")
    assert n is not None and n.telemetry["cpu"].value == 19.0
    assert [s.value for s in n.history["cpu"]] == [15, 16, 17, 18, 19]


def test_drift() -> None:
    m = FleetModel()
    m.feed(T("n1", "cfg"), desc("n1", 1, 1, config={"telemetry": {"interval": 30.0}}, applied_id="a"))
    m.feed(T("n1", "cfg/desired"), enc({"id": "d1", "args": {"set": {"telemetry.interval": 5.0}}}))
    [d] = m.drift()
    assert d.node == "n1" and d.differences == {"telemetry.interval": (5.0, 30.0)}
    m.feed(T("n1", "cfg"), desc("n1", 1, 2, config={"telemetry": {"interval": 5.0}}, applied_id="d1"))
    assert m.drift() == []


_topics = st.sampled_from(
    [
        T("n1", "meta"),
        T("n1", "status"),
        T("n1", "state"),
        T("n1", "cfg"),
        T("n1", "cfg/desired"),
        T("n1", "heartbeat"),
        contract.node_telemetry_topic("n1", "cpu"),
        "agents/x/heartbeat",
        "nodes/n1/logs",
        "junk",
    ]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "node": st.sampled_from(["n1", "n2", 3]),
        "session": st.integers(-1, 3) | st.text(max_size=2),
        "version": st.integers(-1, 3) | st.booleans(),
        "status": st.sampled_from(["online", "offline", "lost", "x", 1]),
        "config": _json,
        "value": _json,
        "ts": _json,
        "args": _json,
        "timestamp": _json,
    },
)
_payloads = st.binary(max_size=40) | _json.map(lambda v: json.dumps(v).encode()) | _fields.map(enc)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_topics, _payloads, st.booleans(), st.none() | st.floats(0, 1e6)), max_size=30))
def test_junk_never_raises(messages: list[tuple[str, bytes, bool, float | None]]) -> None:
    m = FleetModel()
    for topic, payload, retained, now in messages:
        m.feed(topic, payload, retained, now)
    m.check_stale(1e7)
    m.drift()
    for n in m:
        n.summary()
        json.dumps(n.to_dict(), default=str)
        _ = n.heartbeat_interval, n.groups, n.components, n.config_version


def test_overflowing_numbers_are_counted_not_raised() -> None:
    m = FleetModel()
    huge = "1" + "0" * 400
    ev = m.feed(contract.node_telemetry_topic("n1", "cpu"), f'{{"value": {huge}}}'.encode(), False, 5.0)
    assert [type(e) for e in ev] == [InvalidMessage] and m.invalid_total == 1
    m.feed(T("n1", "cfg"), desc("n1", 1, 1, config={"heartbeat": {"interval": 10**400}}))
    assert m.get("n1").heartbeat_interval == 10.0  # type: ignore[union-attr]
    ev = m.feed(T("n1", "heartbeat"), f'{{"node": "n1", "timestamp": {huge}}}'.encode(), True, 5.0)
    assert m.get("n1").heartbeat_at is None and not any(isinstance(e, InvalidMessage) for e in ev)  # type: ignore[union-attr]


def test_names_outside_the_grammar_are_ignored_and_counted() -> None:
    m = FleetModel()
    assert m.feed("nodes/Kitchen Pi/meta", desc("Kitchen Pi", 1, 1), True, 1.0) == []
    assert m.feed("nodes/Kitchen Pi/status", status("Kitchen Pi", "online", 1, 2), True, 1.0) == []
    assert len(m) == 0 and m.foreign_total == 2 and m.foreign_names == {"Kitchen Pi"}


def test_a_retained_heartbeat_dates_the_node_by_its_own_timestamp() -> None:
    m = FleetModel()
    m.feed(T("n1", "status"), status("n1", "online", 1, 1), True, 1000.0)
    m.feed(T("n2", "status"), status("n2", "online", 1, 1), True, 1000.0)
    m.feed(T("n3", "status"), status("n3", "online", 1, 1), True, 1000.0)
    m.feed(T("n1", "heartbeat"), enc({"node": "n1", "timestamp": 500.0, "cpu": 3.0}), True, 1000.0)
    m.feed(T("n2", "heartbeat"), enc({"node": "n2", "timestamp": 995.0}), True, 1000.0)
    # n1's last heartbeat is 500 s old: stale at the first check, not 30 s later.
    assert [e.node for e in m.check_stale(1000.0)] == ["n1"]
    assert [n.name for n in m.unconfirmed()] == ["n3"]  # no heartbeat, only a retained birth
    assert m.get("n2").online  # type: ignore[union-attr]
