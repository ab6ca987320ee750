"""Field failures (issue 17: 1, 4; issue 18: a restart is not a warning), over a real broker."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_agent.testing import AgentThread
from devfleet_base import contract
from devfleet_base.testing.mqtt_probe import ProbeTimeout


def _online(msg):
    return msg.json()["status"] == "online"


def _wait_until(predicate, timeout: float, what: str) -> None:
    """Wait for a condition another thread makes true (checked on a short tick)."""
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        done.wait(0.05)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_duplicate_node_names_back_off_and_say_so(agent_factory, probe, caplog, protocol, tmp_path, request):
    name = f"dup-{protocol.replace('.', '')}"
    caplog.set_level(logging.ERROR, logger="devfleet.agent")
    probe.subscribe(f"nodes/{name}/status")
    first = agent_factory(name, protocol=protocol)
    probe.wait_for(f"nodes/{name}/status", _online)
    # The same name on another host: its own data directory, its own process.
    second = AgentThread(replace(first.settings, data_dir=str(tmp_path / "twin"))).start()
    request.addfinalizer(second.stop)
    agents = (first.agent, second.agent)
    _wait_until(lambda: all(a.name_clash is not None for a in agents), 20, "both agents to see the clash")
    lines = [r for r in caplog.records if "another agent process uses the node name" in r.getMessage()]
    assert len(lines) == 2, [r.getMessage() for r in lines]  # one line each, not one per takeover
    # Both back off: before, they took the session from each other ~4 times a second.
    mark = probe.mark()
    with pytest.raises(ProbeTimeout):
        probe.wait_for(
            f"nodes/{name}/status",
            lambda m: len([x for x in probe.messages(f"nodes/{name}/status", since=mark) if _online(x)]) > 3,
            timeout=6,
            since=mark,
        )
    # The clash is in the node's retained status and state for consoles to show.
    retained = probe.retained(f"nodes/{name}/+")
    status = retained[f"nodes/{name}/status"].json()
    if status["status"] == "online":
        assert status["name_clash"]["instance"] in {a.descriptions.instance for a in agents} | {None}
    assert "name_clash" in retained[f"nodes/{name}/state"].json()


def test_one_node_restarting_is_not_a_clash(agent_factory, probe, caplog):
    caplog.set_level(logging.INFO, logger="devfleet.agent")
    first = agent_factory("solo1")
    probe.wait_for("nodes/solo1/status", _online)
    first.stop()
    probe.wait_for("nodes/solo1/status", lambda m: m.json()["status"] == "offline")
    mark = probe.mark()
    second = agent_factory("solo1")
    probe.wait_for("nodes/solo1/status", _online, since=mark)
    _wait_until(
        lambda: any(
            r.name == "devfleet.agent" and ("previous run" in r.getMessage() or "status" in r.getMessage())
            for r in caplog.records
        ),
        10,
        "the agent to notice the previous run's status",
    )
    assert getattr(second.agent, "name_clash", None) is None
    # A restart is expected: nothing at WARNING or above about the node's own status.
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "devfleet.agent"]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.mark.parametrize("junk", [b"1", b"[1]", b'"x"', b"true", b"{}", b"null", b"\xff"])
def test_junk_on_own_retained_status_is_repaired(agent_factory, probe, junk):
    agent = agent_factory("junkst1")
    probe.wait_for("nodes/junkst1/status", _online)
    mark = probe.mark()
    probe.publish("nodes/junkst1/status", junk, retain=True)
    probe.wait_for("nodes/junkst1/status", _online, since=mark)
    assert probe.retained("nodes/junkst1/status")["nodes/junkst1/status"].json()["status"] == "online"
    assert agent.error is None


def test_judge_own_status_units():
    from devfleet_agent.payloads import judge_own_status

    me = {"instance": "me", "started_at": 100.0}
    online = {"status": "online", "instance": "other", "ts": 150.0}
    assert judge_own_status(online, retained=False, **me).action == "clash"
    assert judge_own_status(online, retained=True, **me).action == "clash"  # born after we started
    assert judge_own_status({**online, "ts": 50.0}, retained=True, **me).action == "previous"
    assert judge_own_status({**online, "instance": "me"}, retained=False, **me).action == "ok"
    lost = {"status": "lost", "instance": "other", "ts": 150.0}
    assert judge_own_status(lost, retained=True, **me).action == "clash"  # its will after a takeover
    assert judge_own_status({**lost, "ts": 50.0}, retained=True, **me).action == "previous"
    assert judge_own_status({"status": "online"}, retained=False, **me).action == "ok"  # pre-instance agents
    for junk in (1, [1], "x", True, None, {}):
        assert judge_own_status(junk, retained=False, **me).action == "rebirth"
        assert judge_own_status(junk, retained=True, **me).action == "previous"
    assert judge_own_status({"status": "offline"}, retained=True, **me).status == "offline"


def test_descriptions_carry_the_instance(agent_factory, probe):
    agent = agent_factory("inst1")
    probe.wait_for("nodes/inst1/status", _online)
    retained = probe.retained("nodes/inst1/+")
    for leaf in contract.NODE_DESCRIPTIONS:
        assert retained[f"nodes/inst1/{leaf}"].json()["instance"] == agent.agent.descriptions.instance


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    payload=_json
    | st.fixed_dictionaries(
        {"status": st.sampled_from(["online", "offline", "lost", 3]), "instance": _json, "ts": _json},
        optional={"session": _json},
    ),
    retained=st.booleans(),
)
def test_judging_any_payload_never_raises_and_what_goes_back_out_is_small(payload, retained):
    from devfleet_agent.node_core import clash_fields
    from devfleet_agent.payloads import judge_own_status

    verdict = judge_own_status(payload, retained=retained, instance="me", started_at=100.0)
    assert verdict.action in {"ok", "previous", "rebirth", "clash"}
    if verdict.action == "clash":
        fields = clash_fields(verdict.other)
        assert contract.decode(contract.encode(fields)) == fields
        assert fields["instance"] is None or len(fields["instance"]) <= 64


def test_clash_back_off_doubles_to_its_cap_and_is_forgotten(tmp_path):
    from devfleet_agent.agent import Agent
    from devfleet_agent.node_core import CLASH_BACKOFF, CLASH_FORGET
    from devfleet_agent.settings import Settings

    agent = Agent(Settings(name="unit1", data_dir=str(tmp_path)))
    agent.mqtt.taken_over = 1  # an MQTT 5 broker said "Session taken over"
    agent.core.clash_on_connect()
    assert agent.name_clash is not None and agent.mqtt.reconnect_floor == CLASH_BACKOFF[0]
    floors = []
    for _ in range(8):  # each time it took the session back
        agent.core.clash_on_connect()
        floors.append(agent.mqtt.reconnect_floor)
    assert floors[0] == 2 * CLASH_BACKOFF[0] and floors[-1] == CLASH_BACKOFF[1]
    agent.core.clash_seen_at -= CLASH_FORGET + 1
    agent.core.clash_on_connect()
    assert agent.name_clash is None and agent.mqtt.reconnect_floor == 0.0
