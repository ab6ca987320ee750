"""Wactorz remote node across agents: send_to, by-name tasks, migration, signing, junk (real broker)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_base import contract

ECHO = (
    "async def handle_task(agent, payload):\n"
    "    if payload == 'scalar':\n"
    "        return 42\n"
    "    return {'echo': payload, 'node': agent.node}\n"
)

ASKER = (
    "async def setup(agent):\n"
    "    reply = await agent.send_to('echo', {'q': 1}, timeout=10)\n"
    "    await agent.publish(f'test/{agent.node}/asker', reply)\n"
    "    try:\n"
    "        await agent.send_to('nobody-home', {}, timeout=0.5)\n"
    "    except TimeoutError as exc:\n"
    "        await agent.publish(f'test/{agent.node}/asker-timeout', {'error': str(exc)})\n"
    "async def process(agent):\n"
    "    pass\n"
)

COUNTER = (
    "async def setup(agent):\n"
    "    agent.state['n'] = agent.recall('n', 0)\n"
    "async def process(agent):\n"
    "    agent.state['n'] += 1\n"
    "    agent.persist('n', agent.state['n'])\n"
    "    await agent.publish(f'test/counter/{agent.node}', {'n': agent.state['n']})\n"
    "async def handle_task(agent, payload):\n"
    "    return {'n': agent.recall('n', 0), 'node': agent.node, 'extra': agent.recall('extra')}\n"
)


def _online(msg):
    return msg.json()["status"] == "online"


def start(agent_factory, probe, name, **overrides):
    agent = agent_factory(name, allow_code=True, **overrides)
    probe.wait_for(f"nodes/{name}/status", _online)
    return agent


def spawn(probe, node, name, code, **extra):
    probe.subscribe(f"agents/{contract.actor_id(name)}/#")
    probe.publish(f"nodes/{node}/spawn", {"name": name, "code": code, "poll_interval": 0.1, **extra})


def running_on(probe, name, node, since=0, timeout=10):
    return probe.wait_for(
        contract.agent_topic(contract.actor_id(name), "heartbeat"),
        lambda m: m.json()["node"] == node and m.json()["state"] == "running",
        timeout=timeout,
        since=since,
    ).json()


def test_send_to_between_actors_on_two_agents(agent_factory, probe):
    start(agent_factory, probe, "st-a")
    start(agent_factory, probe, "st-b")
    spawn(probe, "st-b", "echo", ECHO, poll_interval=None)
    running_on(probe, "echo", "st-b")
    probe.subscribe("test/st-a/#")
    spawn(probe, "st-a", "asker", ASKER)
    reply = probe.wait_for("test/st-a/asker").json()
    assert reply == {"echo": {"q": 1}, "node": "st-b"}
    timeout = probe.wait_for("test/st-a/asker-timeout").json()
    assert "nobody-home" in timeout["error"] and "no reply" in timeout["error"]


def test_by_name_task_from_the_probe(agent_factory, probe):
    start(agent_factory, probe, "bn-1")
    spawn(probe, "bn-1", "echo2", ECHO.replace("'echo'", "'echo2'"), poll_interval=None)
    spawn(probe, "bn-1", "mute", "async def process(agent):\n    pass\n")
    running_on(probe, "echo2", "bn-1")
    running_on(probe, "mute", "bn-1")
    probe.subscribe("nodes/probe-x/reply/+")
    task = contract.by_name_task_topic("echo2")
    probe.publish(task, {"_remote_task": True, "_reply_topic": "nodes/probe-x/reply/r1", "payload": [1, 2]})
    assert probe.wait_for("nodes/probe-x/reply/r1").json() == {"echo2": [1, 2], "node": "bn-1"}
    probe.publish(task, {"_remote_task": True, "_reply_topic": "nodes/probe-x/reply/r2", "payload": "scalar"})
    assert probe.wait_for("nodes/probe-x/reply/r2").json() == {"result": 42}
    probe.publish(
        contract.by_name_task_topic("mute"),
        {"_remote_task": True, "_reply_topic": "nodes/probe-x/reply/r3", "payload": {}},
    )
    err = probe.wait_for("nodes/probe-x/reply/r3").json()
    assert err["code"] == "unknown_command" and "does not handle tasks" in err["error"]
    # A reply topic outside the contract is never published to.
    probe.subscribe("nodes/bn-1/cmd/#")
    mark = probe.mark()
    probe.publish(task, {"_remote_task": True, "_reply_topic": "nodes/bn-1/cmd/restart", "payload": 1})
    probe.publish(task, {"_remote_task": True, "_reply_topic": "nodes/probe-x/reply/r4", "payload": 2})
    probe.wait_for("nodes/probe-x/reply/r4", since=mark)
    assert probe.messages("nodes/bn-1/cmd/#", since=mark) == []


def test_migration_carries_persisted_state(agent_factory, probe, tmp_path):
    start(agent_factory, probe, "mig-src")
    start(agent_factory, probe, "mig-dst")
    spawn(probe, "mig-src", "counter", COUNTER, description="counts")
    running_on(probe, "counter", "mig-src")
    # Let it count, so there is persisted state to carry.
    probe.subscribe("test/counter/+")
    probe.wait_for("test/counter/mig-src", lambda m: m.json()["n"] >= 3)
    probe.subscribe("nodes/mig-src/migrate_result")
    mark = probe.mark()
    probe.publish("nodes/mig-src/migrate", {"name": "counter", "target_node": "mig-dst"})
    result = probe.wait_for("nodes/mig-src/migrate_result", since=mark).json()
    assert result == {"success": True, "agent": "counter", "from_node": "mig-src", "to_node": "mig-dst"}
    carried = max(m.json()["n"] for m in probe.messages("test/counter/mig-src"))
    first = probe.wait_for("test/counter/mig-dst").json()["n"]
    assert first > 3 and first >= carried  # it went on counting from the carried state
    probe.subscribe("nodes/probe-m/reply/+")
    probe.publish(
        contract.by_name_task_topic("counter"),
        {"_remote_task": True, "_reply_topic": "nodes/probe-m/reply/after", "payload": {}},
    )
    assert probe.wait_for("nodes/probe-m/reply/after").json()["node"] == "mig-dst"
    src_state = probe.wait_for(
        "nodes/mig-src/state", lambda m: "counter" not in m.json()["actors"], since=mark
    ).json()
    assert src_state["actors"] == {}
    state_file = tmp_path / "mig-dst" / "actors" / "agentflow_counter_state.json"
    assert json.loads(state_file.read_text())["n"] >= first
    # The migrated spawn was not retained on the target.
    assert probe.retained("nodes/mig-dst/spawn") == {}


def test_migration_to_a_silent_node_fails_and_keeps_the_actor(agent_factory, probe):
    start(agent_factory, probe, "mig-lone")
    spawn(probe, "mig-lone", "stay", COUNTER)
    running_on(probe, "stay", "mig-lone")
    probe.subscribe("nodes/mig-lone/migrate_result")
    probe.subscribe("nodes/mig-lone/handoff/nobody")
    mark = probe.mark()
    probe.publish("nodes/mig-lone/migrate", {"name": "stay", "target_node": "nobody", "timeout": 1})
    result = probe.wait_for("nodes/mig-lone/migrate_result", since=mark).json()
    assert result["success"] is False and result["agent"] == "stay" and "nobody" in result["error"]
    sent = probe.wait_for("nodes/mig-lone/handoff/nobody", since=mark)
    assert not sent.retain and "replace" not in sent.json() and sent.json()["node"] == "nobody"
    probe.subscribe("nodes/mig-lone/agents")
    mark = probe.mark()
    probe.publish("nodes/mig-lone/list", {})
    listed = probe.wait_for("nodes/mig-lone/agents", since=mark).json()["agents"]
    assert [(a["name"], a["state"]) for a in listed] == [("stay", "running")]
    for bad, fragment in (
        ({"name": "ghost", "target_node": "x"}, "no actor"),
        ({"name": "stay", "target_node": "mig-lone"}, "already runs"),
        ({"name": "stay", "target_node": "bad/node"}, "target_node"),
        ({"name": "stay"}, "target_node"),
    ):
        mark = probe.mark()
        probe.publish("nodes/mig-lone/migrate", bad)
        r = probe.wait_for("nodes/mig-lone/migrate_result", since=mark).json()
        assert r["success"] is False and fragment in r["error"], (bad, r)


def test_signed_node_refuses_unsigned_tampered_and_replayed_spawns(agent_factory, probe, operator, provision):
    start(agent_factory, probe, "sig-n", signing_key_file=provision("sig-n"))
    probe.subscribe("nodes/sig-n/receipts")
    topic = "nodes/sig-n/spawn"
    signer = operator
    body = {"name": "signed", "code": "async def process(agent):\n    pass\n", "poll_interval": 1}

    probe.publish(topic, {**body, "_id": "unsigned"})
    r = probe.wait_for("nodes/sig-n/receipts", lambda m: m.json()["id"] == "unsigned").json()
    assert r["status"] == "error" and r["code"] == "bad_signature" and "_sig" in r["message"]
    signed = signer.sign(topic, {**body, "_id": "good"})
    tampered = {**signed, "code": "async def process(agent):\n    import os\n"}
    probe.publish(topic, tampered)
    r = probe.wait_for("nodes/sig-n/receipts", lambda m: m.json()["id"] == "good").json()
    assert r["code"] == "bad_signature"
    mark = probe.mark()
    probe.publish(topic, signed)
    ok = probe.wait_for("nodes/sig-n/receipts", lambda m: m.json()["id"] == "good", since=mark).json()
    assert ok["status"] == "ok"
    mark = probe.mark()
    probe.publish(topic, signed)  # captured and replayed
    again = probe.wait_for("nodes/sig-n/receipts", lambda m: m.json()["id"] == "good", since=mark).json()
    assert again["code"] == "replay"
    # stop, stop_all and migrate need signatures too; list does not.
    for leaf, payload in (
        ("stop", {"name": "signed"}),
        ("stop_all", {}),
        ("migrate", {"name": "signed", "target_node": "x"}),
    ):
        mark = probe.mark()
        probe.subscribe(f"nodes/sig-n/{'migrate_result' if leaf == 'migrate' else 'receipts'}")
        probe.publish(f"nodes/sig-n/{leaf}", payload)
        if leaf == "migrate":
            r = probe.wait_for("nodes/sig-n/migrate_result", since=mark).json()
            assert r["success"] is False and "_sig" in r["error"]
        else:
            r = probe.wait_for(
                "nodes/sig-n/receipts", lambda m, c=leaf: m.json()["cmd"] == c, since=mark
            ).json()
            assert r["code"] == "bad_signature"
    probe.subscribe("nodes/sig-n/agents")
    probe.publish("nodes/sig-n/list", {})
    assert [a["name"] for a in probe.wait_for("nodes/sig-n/agents").json()["agents"]] == ["signed"]
    mark = probe.mark()
    probe.publish("nodes/sig-n/stop", signer.sign("nodes/sig-n/stop", {"name": "signed", "_id": "stop1"}))
    assert (
        probe.wait_for("nodes/sig-n/receipts", lambda m: m.json()["id"] == "stop1", since=mark).json()[
            "status"
        ]
        == "ok"
    )


def test_signed_migration_between_signed_nodes(agent_factory, probe, operator, provision):
    start(agent_factory, probe, "sm-src", signing_key_file=provision("sm-src"))
    start(agent_factory, probe, "sm-dst", signing_key_file=provision("sm-dst"))
    body = {"name": "wanderer", "code": COUNTER, "poll_interval": 0.1}
    probe.subscribe(f"agents/{contract.actor_id('wanderer')}/#")
    probe.publish("nodes/sm-src/spawn", operator.sign("nodes/sm-src/spawn", body))
    running_on(probe, "wanderer", "sm-src")
    probe.subscribe("nodes/sm-src/migrate_result")
    topic = "nodes/sm-src/migrate"
    probe.publish(topic, operator.sign(topic, {"name": "wanderer", "target_node": "sm-dst", "timeout": 10}))
    assert probe.wait_for("nodes/sm-src/migrate_result").json()["success"] is True
    running_on(probe, "wanderer", "sm-dst")


JUNK = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["other", "x", "", "../etc", 7]), "target_node": st.text(max_size=10)},
        optional={"code": st.text(max_size=40), "replace": st.booleans(), "_state": st.integers()},
    ).map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(scope="module")
def junk_node(mqtt_broker, tmp_path_factory):
    from devfleet_agent.testing import AgentThread, settings_for

    tmp = tmp_path_factory.mktemp("junk")
    agent = AgentThread(
        settings_for(mqtt_broker, "junk-n", tmp / "d", allow_code=True, state_dir=str(tmp / "s"))
    ).start()
    yield agent
    agent.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=JUNK, leaf=st.sampled_from(["spawn", "stop", "migrate", "list", "reply/zz", "task", "handoff"])
)
def test_junk_never_crashes_the_node(junk_node, probe, payload, leaf):
    probe.wait_for("nodes/junk-n/status", _online)
    if not probe.messages(f"agents/{contract.actor_id('bystander')}/heartbeat"):
        spawn(
            probe,
            "junk-n",
            "bystander",
            "async def handle_task(agent, p):\n    return {'ok': True}\n",
            poll_interval=None,
        )
        running_on(probe, "bystander", "junk-n")
    topic = {
        "task": contract.by_name_task_topic("bystander"),
        "handoff": contract.handoff_topic("junk-src", "junk-n"),
    }.get(leaf, f"nodes/junk-n/{leaf}")
    probe.publish(topic, payload)
    # The node still answers a task addressed to the bystander.
    probe.subscribe("nodes/probe-j/reply/+")
    rid = f"j{abs(hash(payload)) % 10**9}"
    probe.publish(
        contract.by_name_task_topic("bystander"),
        {"_remote_task": True, "_reply_topic": f"nodes/probe-j/reply/{rid}", "payload": None},
    )
    assert probe.wait_for(f"nodes/probe-j/reply/{rid}").json() == {"ok": True}
    assert junk_node.agent.mqtt.connected


def test_a_handoff_must_come_from_the_node_it_names(agent_factory, probe):
    """The handoff topic names its publisher (the broker's ACL vouches for it): a handoff
    whose _migration names another source, or none, is refused and nothing runs."""
    start(agent_factory, probe, "ho-target")
    probe.subscribe("nodes/ho-target/receipts")
    for migration in ({"id": "m1", "from_node": "someone-else"}, None):
        mark = probe.mark()
        payload = {"name": "sneaky", "code": COUNTER, "_id": "h1"}
        if migration is not None:
            payload["_migration"] = migration
        probe.publish(contract.handoff_topic("ho-src", "ho-target"), payload)
        r = probe.wait_for(
            "nodes/ho-target/receipts", lambda m: m.json()["cmd"] == "spawn", since=mark
        ).json()
        assert r["status"] == "error" and r["code"] == "invalid" and "ho-src" in r["message"], r
    # A handoff addressed to another node is not ours to run.
    probe.subscribe("nodes/ho-target/agents")
    mark = probe.mark()
    probe.publish(
        "nodes/ho-src/handoff/ho-other",
        {"name": "sneaky", "code": COUNTER, "_migration": {"id": "m2", "from_node": "ho-src"}},
    )
    probe.publish("nodes/ho-target/list", {})
    listed = probe.wait_for("nodes/ho-target/agents", since=mark).json()["agents"]
    assert listed == []
