"""The agent's retained description, heartbeat, will and clean stop, over a real broker."""

from __future__ import annotations

import signal

import pytest

from devfleet_base import contract


def _online(msg):
    return msg.json()["status"] == "online"


def test_birth_publishes_meta_status_state_cfg(agent_factory, probe):
    probe.subscribe("nodes/birth1/#")
    agent_factory("birth1")
    probe.wait_for("nodes/birth1/status", _online)
    probe.wait_for("nodes/birth1/heartbeat", lambda msg: True)  # the first one follows the birth
    retained = probe.retained("nodes/birth1/+")
    assert set(retained) == {
        f"nodes/birth1/{leaf}" for leaf in ("meta", "status", "state", "cfg", "heartbeat")
    }
    meta = retained["nodes/birth1/meta"].json()
    for key in (
        "hostname",
        "os",
        "arch",
        "python",
        "agent_version",
        "protocol",
        "session",
        "version",
        "commands",
    ):
        assert key in meta, key
    assert meta["protocol"] == contract.PROTOCOL_VERSION
    assert {"ping", "rebirth", "restart", "configure"} <= set(meta["commands"])
    status = retained["nodes/birth1/status"].json()
    assert status["session"] == meta["session"] and status["version"] > meta["version"]
    cfg = retained["nodes/birth1/cfg"].json()
    assert cfg["config_version"] == 0 and cfg["config"]["heartbeat"]["interval"] == 10.0
    hb = probe.wait_for("nodes/birth1/heartbeat").json()
    assert hb["node"] == "birth1" and hb["node_id"] == contract.node_id("birth1")
    for key in ("uptime", "cpu", "memory", "disk", "broker", "agent_count", "timestamp"):
        assert key in hb, key


def test_bd_seq_increases_across_starts(agent_factory, probe):
    first = agent_factory("sess1")
    s1 = probe.wait_for("nodes/sess1/status", _online).json()["session"]
    first.stop()
    probe.wait_for("nodes/sess1/status", lambda m: m.json()["status"] == "offline")
    mark = probe.mark()
    agent_factory("sess1")
    s2 = probe.wait_for("nodes/sess1/status", _online, since=mark).json()["session"]
    assert s2 == s1 + 1


def test_sigterm_publishes_offline(process_factory, probe):
    proc = process_factory("term1")
    probe.wait_for("nodes/term1/status", _online, timeout=15)
    proc.terminate()
    assert proc.wait(5) == 0
    status = probe.wait_for("nodes/term1/status", lambda m: m.json()["status"] != "online").json()
    assert status["status"] == "offline"


def test_kill_9_fires_the_will_within_keepalive(process_factory, probe):
    proc = process_factory("kill1")  # keepalive 5 s
    online = probe.wait_for("nodes/kill1/status", _online, timeout=15).json()
    proc.kill()
    # mosquitto sends the will after 1.5 x keepalive = 7.5 s without traffic.
    lost = probe.wait_for("nodes/kill1/status", lambda m: m.json()["status"] == "lost", timeout=10).json()
    assert lost["session"] == online["session"]
    # The will tops its own connection's block of versions: it wins over that
    # connection's birth, but not over the next connection's.
    assert lost["version"] > online["version"]


def test_broker_restart_rebirth(fresh_broker, agent_factory, probe_factory):
    agent_factory("reb1", broker=fresh_broker)
    p = probe_factory(fresh_broker)
    p.wait_for("nodes/reb1/status", _online)
    fresh_broker.restart()  # persistence off: every retained message is gone
    p.wait_connected(timeout=10, after=1)
    mark = p.mark()
    p.wait_for("nodes/reb1/meta", since=mark, timeout=5 + 2)
    assert set(p.retained("nodes/reb1/+")) == {f"nodes/reb1/{x}" for x in ("meta", "status", "state", "cfg")}


def test_stale_will_is_repaired(agent_factory, probe):
    agent_factory("heal1")
    probe.wait_for("nodes/heal1/status", _online)
    mark = probe.mark()
    # Another client (or a late will) overwrites the retained status.
    probe.publish("nodes/heal1/status", {"status": "lost", "session": 0, "version": 0}, retain=True)
    probe.wait_for("nodes/heal1/status", _online, since=mark)
    assert probe.retained("nodes/heal1/status")["nodes/heal1/status"].json()["status"] == "online"


def test_restart_command_reexecutes(process_factory, probe):
    process_factory("rs1")
    first = probe.wait_for("nodes/rs1/status", _online, timeout=15).json()
    probe.subscribe("replies/rs1-test")
    probe.publish("nodes/rs1/cmd/restart", contract.Command.envelope(id="r1", reply_to="replies/rs1-test"))
    probe.wait_for("replies/rs1-test", lambda m: m.json()["status"] == "ok")
    mark = probe.mark()
    second = probe.wait_for("nodes/rs1/status", _online, since=mark, timeout=20).json()
    assert second["session"] == first["session"] + 1


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_is_clean_too(process_factory, probe, sig):
    proc = process_factory("int1")
    probe.wait_for("nodes/int1/status", _online, timeout=15)
    proc.signal(sig)
    assert proc.wait(10) == 0
    assert probe.wait_for("nodes/int1/status", lambda m: m.json()["status"] == "offline")


def test_agent_on_the_embedded_broker_falls_back_to_311(embedded_broker, agent_factory, probe_factory):
    agent = agent_factory("emb1", broker=embedded_broker)
    p = probe_factory(embedded_broker, protocol="3.1.1")
    p.wait_for("nodes/emb1/status", _online, timeout=20)
    assert agent.agent.mqtt.protocol_in_use == "3.1.1"
    p.subscribe("replies/emb1")
    p.publish("nodes/emb1/cmd/ping", contract.Command.envelope(reply_to="replies/emb1"))
    assert p.wait_for("replies/emb1", lambda m: m.json()["status"] == "ok")


def test_agent_over_tls(mqtt_broker_tls, agent_factory, probe_factory):
    agent_factory("tls1", broker=mqtt_broker_tls, tls_ca=str(mqtt_broker_tls.ca_path), tls=True)
    p = probe_factory(mqtt_broker_tls)
    assert p.wait_for("nodes/tls1/status", _online, timeout=20)


def test_agent_with_password(mqtt_broker_auth, agent_factory, probe_factory):
    from devfleet_base.testing.plugin import AUTH_USERS

    agent_factory("auth1", broker=mqtt_broker_auth, username="admin", password=AUTH_USERS["admin"])
    p = probe_factory(mqtt_broker_auth, username="reader", password=AUTH_USERS["reader"])
    assert p.wait_for("nodes/auth1/status", _online, timeout=20)


def test_final_receipt_survives_a_broker_outage(fresh_broker, agent_factory, probe_factory):
    """A command accepted before the broker went away still gets its final receipt."""
    thread = agent_factory("outbox1", broker=fresh_broker)
    p = probe_factory(fresh_broker)
    p.wait_for("nodes/outbox1/status", _online)
    release = thread.run_coro(_make_event())

    async def slow(cmd):
        await release.wait()
        return {"done": True}

    thread.run_coro(_register(thread.agent, "slow", slow))
    p.subscribe("replies/outbox1")
    env = contract.Command.envelope(reply_to="replies/outbox1", ttl=60)
    p.publish("nodes/outbox1/cmd/slow", env)
    p.wait_for("replies/outbox1", lambda m: m.json()["status"] == "accepted")
    fresh_broker.stop()
    thread.run_coro(_wait(lambda: not thread.agent.mqtt.connected))
    thread.call(release.set)
    outbox = thread.agent._unsent_receipts
    thread.run_coro(_wait(lambda: len(outbox) == 1))
    assert outbox[0][1]["status"] == "ok" and outbox[0][1]["id"] == env["id"]
    fresh_broker.start()
    # _flush_receipts pops a receipt only after the broker took it.
    thread.run_coro(_wait(lambda: thread.agent.mqtt.connected and not outbox, timeout=15), timeout=20)


async def _make_event():
    import asyncio

    return asyncio.Event()


async def _register(agent, verb, handler):
    agent.dispatcher.register(verb, handler)


async def _wait(predicate, timeout=10.0):
    import asyncio

    async def poll():
        while not predicate():
            await asyncio.sleep(0.02)  # polling agent state on its own loop, bounded by timeout

    await asyncio.wait_for(poll(), timeout)
