"""The attacks issue 13 measured against a signed fleet, each on a real broker with real agents.

Every test here failed on main before signing covered the key id and expiry, before
each node had its own identity and before nodes signed what they publish.
"""

from __future__ import annotations

import json
import math
import time

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_base import contract
from devfleet_base.signing import Identity

COUNTER = "async def process(agent):\n    await agent.publish(f'test/{agent.node}/alive', {})\n"


def _online(msg):
    return msg.json()["status"] == "online"


def _new_kid(signed: dict) -> dict:
    """The measured bypass: the same captured message under another key id."""
    forged = json.loads(json.dumps(signed))
    forged["_sig"]["kid"] = "console-b"
    return forged


def _receipt(probe, topic, cmd_id, since=0):
    return probe.wait_for(
        topic, lambda m: m.json()["id"] == cmd_id and m.json()["status"] != "accepted", since=since
    ).json()


def test_changed_kid_replay_of_configure_is_refused(mqtt_broker, probe, operator, provision, tmp_path):
    """Measured on main: after a restart (at-most-once memory gone) a captured configure
    under a new kid ran again and rolled the config back."""
    settings = settings_for(
        mqtt_broker, "atk-cfg", tmp_path / "atk-cfg", signing_key_file=provision("atk-cfg")
    )
    agent = AgentThread(settings).start()
    probe.wait_for("nodes/atk-cfg/status", _online)
    topic = contract.node_command_topic("atk-cfg", "configure")
    probe.subscribe("replies/atk")
    old = operator.sign(
        topic, contract.Command.envelope({"set": {"description": "old"}}, reply_to="replies/atk")
    )
    new = operator.sign(
        topic, contract.Command.envelope({"set": {"description": "new"}}, reply_to="replies/atk")
    )
    firsts = []
    for msg in (old, new):
        probe.publish(topic, msg)
        firsts.append(_receipt(probe, "replies/atk", msg["id"]))
        assert firsts[-1]["status"] == "ok"
    agent.stop()
    mark = probe.mark()
    agent = AgentThread(settings).start()
    try:
        probe.wait_for("nodes/atk-cfg/status", _online, since=mark)
        mark = probe.mark()
        probe.publish(topic, _new_kid(old))
        assert _receipt(probe, "replies/atk", old["id"], since=mark)["code"] == "bad_signature"
        mark = probe.mark()
        probe.publish(topic, old)  # as captured: a redelivery gets the old receipt, no second run
        again = _receipt(probe, "replies/atk", old["id"], since=mark)
        assert again["status"] == "ok" and again["ts"] == firsts[0]["ts"]
        mark = probe.mark()
        ping = contract.Command.envelope(reply_to="replies/atk")
        probe.publish(contract.node_command_topic("atk-cfg", "config_get"), ping)
        assert _receipt(probe, "replies/atk", ping["id"])["result"]["config"]["description"] == "new"
    finally:
        agent.stop()


def test_changed_kid_replay_of_spawn_is_refused(agent_factory, probe, operator, provision):
    agent_factory("atk-sp", signing_key_file=provision("atk-sp"), allow_code=True)
    probe.wait_for("nodes/atk-sp/status", _online)
    probe.subscribe("nodes/atk-sp/receipts")
    topic = "nodes/atk-sp/spawn"
    spawn = operator.sign(topic, {"name": "victim", "code": COUNTER, "poll_interval": 1, "_id": "sp1"})
    probe.publish(topic, spawn)
    assert _receipt(probe, "nodes/atk-sp/receipts", "sp1")["status"] == "ok"
    stop = operator.sign("nodes/atk-sp/stop", {"name": "victim", "_id": "st1"})
    probe.publish("nodes/atk-sp/stop", stop)
    assert _receipt(probe, "nodes/atk-sp/receipts", "st1")["status"] == "ok"
    mark = probe.mark()
    probe.publish(topic, _new_kid(spawn))
    assert _receipt(probe, "nodes/atk-sp/receipts", "sp1", since=mark)["code"] == "bad_signature"
    probe.wait_for("nodes/atk-sp/state", lambda m: m.json().get("actors") == {}, since=mark)


def test_stop_all_replay_is_refused_after_a_restart(mqtt_broker, probe, operator, provision, tmp_path):
    """The replay guard is per node and survives restarts: a captured stop_all (as is, or
    under a new key id) does not stop the node again."""
    settings = settings_for(mqtt_broker, "atk-sa", tmp_path / "atk-sa", signing_key_file=provision("atk-sa"))
    first = AgentThread(settings).start()
    probe.wait_for("nodes/atk-sa/status", _online)
    probe.subscribe("nodes/atk-sa/receipts")
    stop_all = operator.sign("nodes/atk-sa/stop_all", {"_id": "sa1"})
    probe.publish("nodes/atk-sa/stop_all", stop_all)
    assert _receipt(probe, "nodes/atk-sa/receipts", "sa1")["status"] == "ok"
    probe.wait_for("nodes/atk-sa/status", lambda m: m.json()["status"] == "offline")
    first.stop()
    mark = probe.mark()
    again = AgentThread(settings).start()
    try:
        probe.wait_for("nodes/atk-sa/status", _online, since=mark)
        for replay in (stop_all, _new_kid(stop_all)):
            mark = probe.mark()
            probe.publish("nodes/atk-sa/stop_all", replay)
            code = _receipt(probe, "nodes/atk-sa/receipts", "sa1", since=mark)["code"]
            assert code in ("replay", "bad_signature")
        ping = contract.Command.envelope(reply_to="replies/atk-sa")
        probe.subscribe("replies/atk-sa")
        probe.publish(contract.node_command_topic("atk-sa", "ping"), ping)
        assert _receipt(probe, "replies/atk-sa", ping["id"])["status"] == "ok"
    finally:
        again.stop()


def test_node_a_key_is_not_accepted_by_node_b(agent_factory, probe, operator, provision, tmp_path):
    agent_factory("atk-b", signing_key_file=provision("atk-b"))
    probe.wait_for("nodes/atk-b/status", _online)
    node_a = Identity.load(provision("atk-a"))  # what an attacker on node A holds
    topic = contract.node_command_topic("atk-b", "configure")
    probe.subscribe("replies/atk-ab")
    forged = node_a.sign(
        topic, contract.Command.envelope({"set": {"description": "pwned"}}, reply_to="replies/atk-ab")
    )
    probe.publish(topic, forged)
    r = _receipt(probe, "replies/atk-ab", forged["id"])
    assert r["code"] == "bad_signature" and "operators" in r["message"]


def test_forged_heartbeat_does_not_complete_a_migration(agent_factory, probe, operator, provision):
    """Issue 13: a forged agents/{id}/heartbeat completed a migration, so the source stopped
    the actor and it ran nowhere."""
    agent_factory("atk-src", signing_key_file=provision("atk-src"), allow_code=True)
    probe.wait_for("nodes/atk-src/status", _online)
    aid = contract.actor_id("mover")
    probe.subscribe(f"agents/{aid}/heartbeat")
    handoff = contract.handoff_topic("atk-src", "atk-gone")
    probe.subscribe(handoff)  # the target never comes: an attacker reads the handoff
    probe.publish(
        "nodes/atk-src/spawn", operator.sign("nodes/atk-src/spawn", {"name": "mover", "code": COUNTER})
    )
    probe.wait_for(f"agents/{aid}/heartbeat", lambda m: m.json()["node"] == "atk-src")
    probe.subscribe("nodes/atk-src/migrate_result")
    topic = "nodes/atk-src/migrate"
    probe.publish(topic, operator.sign(topic, {"name": "mover", "target_node": "atk-gone", "timeout": 3}))
    spawn = probe.wait_for(handoff, lambda m: bool(m.payload)).json()
    beat = {
        "actor_id": aid,
        "name": "mover",
        "node": "atk-gone",
        "state": "running",
        "migration": spawn["_migration"]["id"],
    }
    attacker = Identity.load(provision("atk-evil"))  # a provisioned node, but not the target
    probe.publish(f"agents/{aid}/heartbeat", beat)
    probe.publish(f"agents/{aid}/heartbeat", attacker.sign(f"agents/{aid}/heartbeat", beat))
    result = probe.wait_for("nodes/atk-src/migrate_result", timeout=10).json()
    assert result["success"] is False
    mark = probe.mark()
    assert probe.wait_for(
        f"agents/{aid}/heartbeat", lambda m: m.json()["node"] == "atk-src", since=mark, timeout=15
    )


def test_signed_desired_refusal_is_reported_in_cfg(agent_factory, probe, provision):
    agent_factory("atk-des", signing_key_file=provision("atk-des"))
    probe.wait_for("nodes/atk-des/status", _online)
    unsigned = contract.Command.envelope({"set": {"description": "x"}}, ttl=None)
    probe.publish("nodes/atk-des/cfg/desired", unsigned, retain=True)
    cfg = probe.wait_for("nodes/atk-des/cfg", lambda m: "desired_error" in m.json()).json()
    assert cfg["desired_error"]["id"] == unsigned["id"] and cfg["desired_error"]["code"] == "bad_signature"
    probe.publish("nodes/atk-des/cfg/desired", b"", retain=True)


def test_junk_status_writes_do_not_become_a_flood_of_births(agent_factory, probe):
    """Issue 13 measured 922 rebirths from 1,050 junk writes to a node's own status."""
    agent = agent_factory("atk-rb")
    probe.wait_for("nodes/atk-rb/status", _online)
    agent.agent.core.rebirth_interval = 1.0
    probe.subscribe("nodes/atk-rb/meta")
    start = probe.mark()
    began = time.monotonic()
    for i in range(1050):
        probe.publish("nodes/atk-rb/status", {"junk": i}, retain=True)
    took = time.monotonic() - began
    junk_done = probe.mark()
    # The node ends up born again (its status online), after one birth at once and then
    # at most one per rebirth_interval while the junk kept coming, not hundreds.
    probe.wait_for(
        "nodes/atk-rb/status", lambda m: m.json().get("status") == "online", since=junk_done, timeout=15
    )
    births = probe.messages("nodes/atk-rb/meta", since=start)
    assert 1 <= len(births) <= 2 + math.ceil(took / agent.agent.core.rebirth_interval), (len(births), took)


def test_a_node_cannot_push_code_to_another_without_the_operators_word(
    agent_factory, probe, operator, provision
):
    """A spawn signed by a (provisioned, compromised) node runs only as a migration the
    operator asked for, with the code the operator signed."""
    agent_factory("atk-victim", signing_key_file=provision("atk-victim"), allow_code=True)
    probe.wait_for("nodes/atk-victim/status", _online)
    probe.subscribe("nodes/atk-victim/receipts")
    rogue = Identity.load(provision("atk-rogue"))
    topic = "nodes/atk-victim/spawn"
    origin_topic = "nodes/atk-rogue/spawn"
    origin = operator.sign(origin_topic, {"name": "moved", "code": COUNTER})
    warrant_topic = "nodes/atk-rogue/migrate"
    warrant = operator.sign(warrant_topic, {"name": "moved", "target_node": "atk-victim", "timeout": 30})
    evil = "async def process(agent):\n    import os\n"

    def attempt(rid, code, migration):
        body = {
            "name": "moved",
            "code": code,
            "_id": rid,
            "_migration": {"id": rid, "from_node": "atk-rogue", **migration},
        }
        probe.publish(topic, rogue.sign(topic, body))
        return _receipt(probe, "nodes/atk-victim/receipts", rid)

    assert attempt("m1", COUNTER, {})["code"] == "bad_signature"  # no operator word at all
    both = {
        "warrant": {"topic": warrant_topic, "payload": warrant},
        "origin": {"topic": origin_topic, "payload": origin},
    }
    assert "not what an operator signed" in attempt("m2", evil, both)["message"]
    elsewhere = {**both, "warrant": {"topic": "nodes/atk-other/migrate", "payload": warrant}}
    assert attempt("m3", COUNTER, elsewhere)["code"] == "bad_signature"
    assert attempt("m4", COUNTER, both)["status"] == "ok"  # the migration the operator asked for
    assert attempt("m5", COUNTER, both)["code"] == "replay"  # the warrant is spent
    # On a handoff topic, the topic's source must be the signer.
    other = contract.handoff_topic("atk-other", "atk-victim")
    body = {
        "name": "moved",
        "code": COUNTER,
        "_id": "m6",
        "_migration": {"id": "m6", "from_node": "atk-other", **both},
    }
    probe.publish(other, rogue.sign(other, body))
    refused = _receipt(probe, "nodes/atk-victim/receipts", "m6")
    assert refused["code"] == "bad_signature" and "signed by 'atk-rogue'" in refused["message"]
