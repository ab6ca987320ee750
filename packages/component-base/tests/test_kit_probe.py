"""MqttProbe and the plugin's fixtures, against the session mosquitto."""

from __future__ import annotations

import pytest

from devfleet_base.testing import FakeContext, MosquittoBroker, MqttProbe, ProbeTimeout
from devfleet_base.testing import plugin as kit_plugin
from devfleet_base.testing.mqtt_probe import filter_covers, topic_matches


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("#", "$SYS/x", False),
        ("+/b", "a/b", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("a/#", "a/+/c", True),
        ("a/+", "a/b", True),
        ("a/+", "a/#", False),
        ("a/b", "a/+", False),
        ("#", "x/#", True),
        ("a/+/c", "a/+/c", True),
    ],
)
def test_filter_covers(outer: str, inner: str, expected: bool) -> None:
    assert filter_covers(outer, inner) is expected


def test_wait_for_sees_messages_that_arrived_before_the_call(probe: MqttProbe) -> None:
    probe.subscribe("kit/early/#")
    probe.publish("kit/early/a", {"n": 1})
    probe.wait_for("kit/early/a")
    # Already received: returns at once, no new message needed.
    assert probe.wait_for("kit/early/a", timeout=0.01).json() == {"n": 1}


def test_wait_for_subscribes_when_needed_and_filters_with_predicate(probe: MqttProbe) -> None:
    mark = probe.mark()
    probe.subscribe("kit/pred/x")  # wait_for on another filter subscribes itself
    for n in range(5):
        probe.publish("kit/pred/x", {"n": n})
    msg = probe.wait_for("kit/pred/x", lambda m: m.json()["n"] == 3, since=mark)
    assert msg.json() == {"n": 3}
    assert [m.json()["n"] for m in probe.messages("kit/pred/x", since=mark)] == [0, 1, 2, 3, 4]


def test_wait_for_timeout_names_what_was_awaited_and_seen(probe: MqttProbe) -> None:
    probe.subscribe("kit/timeout/#")
    probe.publish("kit/timeout/a", {"state": "offline"})
    with pytest.raises(ProbeTimeout) as info:
        probe.wait_for("kit/timeout/a", lambda m: m.json()["state"] == "online", timeout=0.3)
    text = str(info.value)
    assert "'kit/timeout/a'" in text
    assert "satisfying" in text
    assert '{"state":"offline"}' in text
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, TimeoutError)


def test_predicate_errors_count_as_no_match(probe: MqttProbe) -> None:
    probe.subscribe("kit/badjson")
    probe.publish("kit/badjson", b"not json")
    probe.publish("kit/badjson", {"ok": True})
    assert probe.wait_for("kit/badjson", lambda m: m.json()["ok"]).json() == {"ok": True}


def test_retained_collects_exactly_the_retained_messages(probe: MqttProbe, probe_v311: MqttProbe) -> None:
    for n in range(300):
        probe_v311.publish(f"kit/ret/{n}/status", {"n": n}, qos=0, retain=True)
    probe_v311.publish("kit/ret/live", "not retained")
    probe_v311.publish("kit/other/x", "other filter", retain=True)
    probe_v311.publish("kit/ret/cleared", "gone", retain=True)
    probe_v311.publish("kit/ret/cleared", None, retain=True)  # an empty payload clears it

    got = probe.retained("kit/ret/#")

    assert len(got) == 300
    assert got["kit/ret/299/status"].json() == {"n": 299}
    assert all(m.retain for m in got.values())
    assert "kit/ret/live" not in got
    assert "kit/ret/cleared" not in got
    assert set(probe_v311.retained("kit/ret/+/status")) == {f"kit/ret/{n}/status" for n in range(300)}


def test_retained_on_empty_filter_returns_nothing(probe: MqttProbe) -> None:
    assert probe.retained("kit/nothing-here/#") == {}


def test_v5_properties_round_trip(probe: MqttProbe) -> None:
    probe.subscribe("kit/props")
    probe.publish(
        "kit/props",
        {"op": "ping"},
        properties={
            "ResponseTopic": "kit/props/reply",
            "CorrelationData": b"c-1",
            "UserProperty": [("origin", "test")],
        },
    )
    msg = probe.wait_for("kit/props")
    assert msg.properties["ResponseTopic"] == "kit/props/reply"
    assert msg.properties["CorrelationData"] == b"c-1"
    assert ("origin", "test") in msg.properties["UserProperty"]


def test_properties_need_v5(probe_v311: MqttProbe) -> None:
    with pytest.raises(ValueError, match="protocol 5"):
        probe_v311.publish("kit/props311", 1, properties={"ResponseTopic": "x"})


def test_probe_as_context_manager(mqtt_broker: MosquittoBroker) -> None:
    with MqttProbe(mqtt_broker.host, mqtt_broker.port, protocol="3.1.1") as p:
        assert p.connected
        p.publish("kit/cm", 1, qos=0)
    assert not p.connected


def test_fake_context_fixture(fake_context: FakeContext) -> None:
    assert isinstance(fake_context, FakeContext)
    assert fake_context.node == "test-node"


def test_missing_mosquitto_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import devfleet_base.testing.broker as broker_module

    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install mosquitto"):
        kit_plugin._start_mosquitto()


def test_plugin_import_does_not_import_paho() -> None:
    import subprocess
    import sys

    code = "import sys, devfleet_base.testing.plugin; print(any(m.startswith('paho') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
