"""Hostile input on every inbound topic never crashes the agent; junk commands get error receipts."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_base import contract

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=15,
)
_payloads = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=70)},
        optional={"args": _json, "expires_at": _json, "reply_to": st.text(max_size=40), "_sig": _json},
    ).map(lambda v: json.dumps(v).encode()),
)
# Not `restart`: {"id": "0"} is a valid restart, which takes the node off the broker for a
# moment by design (its own tests cover it); the messages sent meanwhile would be lost.
_verbs = st.sampled_from(["ping", "configure", "rebirth", "config_get", "nope"])


def test_junk_never_crashes_and_commands_get_error_receipts(agent_factory, probe):
    agent = agent_factory("junk1")
    probe.wait_for("nodes/junk1/status", lambda m: m.json()["status"] == "online")
    probe.subscribe("nodes/junk1/receipts")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(verb=_verbs, payload=_payloads)
    def one(verb, payload):
        mark = probe.mark()
        probe.publish(contract.node_command_topic("junk1", verb), payload)
        receipt = probe.wait_for("nodes/junk1/receipts", since=mark).json()
        assert receipt["status"] in ("error", "accepted", "ok")
        if receipt["status"] == "error":
            assert receipt["code"] in {
                "bad_json",
                "invalid",
                "unknown_command",
                "expired",
                "too_large",
                "conflict",
                "failed",
                "bad_signature",
                "not_found",
            }
            assert receipt["message"]

    one()
    # Junk on the other inbound topics: desired config, own status, Wactorz topics.
    for topic in (
        "nodes/junk1/cfg/desired",
        "nodes/junk1/status",
        "nodes/junk1/spawn",
        "nodes/junk1/stop",
        "nodes/junk1/migrate",
        "nodes/junk1/list",
        "nodes/junk1/reply/x1",
        "agents/by-name/zz/task",
    ):
        for payload in (b"", b"\xff", b"[]", b"{}", b'{"name": 5}', b"null", b"x" * 600_000):
            probe.publish(topic, payload)
    probe.publish("nodes/junk1/cfg/desired", None, retain=True)
    mark = probe.mark()
    probe.publish(contract.node_command_topic("junk1", "ping"), contract.Command.envelope(id="alive"))
    assert probe.wait_for("nodes/junk1/receipts", lambda m: m.json()["status"] == "ok", since=mark)
    assert agent.error is None
