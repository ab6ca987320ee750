"""Commands and receipts, config versions, signing, expiry and at-most-once, on a real broker."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from devfleet_base import contract

_ids = itertools.count()


def _online(msg):
    return msg.json()["status"] == "online"


def send(probe, node, verb, args=None, *, inbox=None, **kw):
    """Publish a command; return (id, inbox topic)."""
    inbox = inbox or f"replies/t{next(_ids)}"
    env = contract.Command.envelope(args or {}, reply_to=inbox, **kw)
    probe.subscribe(inbox)
    probe.publish(contract.node_command_topic(node, verb), env)
    return env["id"], inbox


def final(probe, inbox, cmd_id, timeout=10):
    return probe.wait_for(
        inbox, lambda m: m.json()["id"] == cmd_id and m.json()["status"] != "accepted", timeout=timeout
    ).json()


@pytest.fixture
def node(agent_factory, probe, request):
    name = f"c{abs(hash(request.node.name)) % 10**8}"
    agent = agent_factory(name)
    probe.wait_for(f"nodes/{name}/status", _online)
    agent.name = name
    return agent


def test_ping_gets_accepted_then_ok(node, probe):
    cmd_id, inbox = send(probe, node.name, "ping")
    receipts = [
        probe.wait_for(inbox, lambda m, s=s: m.json()["status"] == s).json() for s in ("accepted", "ok")
    ]
    assert receipts[0]["id"] == receipts[1]["id"] == cmd_id
    assert receipts[1]["result"]["pong"] is True
    assert receipts[1]["node"] == node.name


def test_unknown_command_and_junk_get_error_receipts(node, probe):
    cmd_id, inbox = send(probe, node.name, "frobnicate")
    r = final(probe, inbox, cmd_id)
    assert r["status"] == "error" and r["code"] == "unknown_command"
    probe.subscribe(f"nodes/{node.name}/receipts")
    probe.publish(contract.node_command_topic(node.name, "ping"), b"{not json")
    r = probe.wait_for(f"nodes/{node.name}/receipts", lambda m: m.json()["code"] == "bad_json").json()
    assert r["status"] == "error" and r["id"] == "unknown"
    probe.publish(contract.node_command_topic(node.name, "ping"), {"id": "x1", "args": "nope"})
    r = probe.wait_for(f"nodes/{node.name}/receipts", lambda m: m.json()["id"] == "x1").json()
    assert r["code"] == "invalid" and "args" in r["message"]
    probe.publish(contract.node_command_topic(node.name, "ping"), b"x" * (contract.MAX_PAYLOAD_BYTES + 1))
    r = probe.wait_for(f"nodes/{node.name}/receipts", lambda m: m.json()["code"] == "too_large").json()
    assert r["status"] == "error"


def test_expired_command_is_refused_not_run(node, probe):
    cmd_id, inbox = send(probe, node.name, "configure", {"set": {"description": "late"}}, ttl=-1)
    r = final(probe, inbox, cmd_id)
    assert r["code"] == "expired"
    cfg = probe.retained(f"nodes/{node.name}/cfg")[f"nodes/{node.name}/cfg"].json()
    assert cfg["config"]["description"] == ""


def test_redelivered_command_runs_once(node, probe):
    env = contract.Command.envelope({"set": {"description": "once"}}, reply_to="replies/dup1")
    probe.subscribe("replies/dup1")
    topic = contract.node_command_topic(node.name, "configure")
    probe.publish(topic, env)
    first = final(probe, "replies/dup1", env["id"])
    mark = probe.mark()
    probe.publish(topic, env)  # as a QoS 1 redelivery would
    again = probe.wait_for("replies/dup1", lambda m: m.json()["status"] == "ok", since=mark).json()
    assert again["result"] == first["result"] == {"config_version": 1}
    accepted = [m for m in probe.messages("replies/dup1") if m.json()["status"] == "accepted"]
    assert len(accepted) == 1


def test_config_set_conflict_and_rollback(node, probe):
    cmd_id, inbox = send(
        probe, node.name, "configure", {"set": {"telemetry.interval": 5}, "expect_version": 0}
    )
    assert final(probe, inbox, cmd_id)["result"] == {"config_version": 1}
    cmd_id, inbox = send(
        probe, node.name, "configure", {"set": {"telemetry.interval": 7}, "expect_version": 0}
    )
    r = final(probe, inbox, cmd_id)
    assert r["status"] == "error" and r["code"] == "conflict" and "version 1" in r["message"]
    cmd_id, inbox = send(probe, node.name, "configure", {"set": {"telemetry.interval": 0.01}})
    r = final(probe, inbox, cmd_id)
    assert r["code"] == "invalid" and "telemetry.interval" in r["message"]
    cmd_id, inbox = send(probe, node.name, "configure", {"set": {"nonsense": 1}})
    assert final(probe, inbox, cmd_id)["code"] == "invalid"
    cmd_id, inbox = send(probe, node.name, "configure", {"rollback_to": 0})
    assert final(probe, inbox, cmd_id)["code"] == "not_found"
    cmd_id, inbox = send(probe, node.name, "configure", {"set": {"description": "two"}})
    assert final(probe, inbox, cmd_id)["result"] == {"config_version": 2}
    cmd_id, inbox = send(probe, node.name, "configure", {"rollback_to": 1})
    assert final(probe, inbox, cmd_id)["result"] == {"config_version": 3}
    cfg = probe.wait_for(f"nodes/{node.name}/cfg", lambda m: m.json()["config_version"] == 3).json()
    assert cfg["config"]["description"] == "" and cfg["config"]["telemetry"]["interval"] == 5.0
    assert cfg["kept_versions"] == [1, 2, 3]


def test_config_survives_restart_and_truncation(agent_factory, probe, tmp_path):
    agent = agent_factory("persist1")
    probe.subscribe("nodes/persist1/cfg")
    probe.wait_for("nodes/persist1/status", _online)
    for i, desc in enumerate(("first", "second"), start=1):
        cmd_id, inbox = send(probe, "persist1", "configure", {"set": {"description": desc}})
        assert final(probe, inbox, cmd_id)["result"] == {"config_version": i}
    agent.stop()
    # A power cut truncated the newest version on disk.
    newest = tmp_path / "persist1" / "config" / "v2.json"
    newest.write_bytes(newest.read_bytes()[:20])
    mark = probe.mark()
    agent_factory("persist1")
    cfg = probe.wait_for("nodes/persist1/cfg", since=mark).json()
    assert cfg["config_version"] == 1 and cfg["config"]["description"] == "first"
    assert "v2" in cfg["recovered_from"]


def test_desired_config_applies_once_and_reports_errors(node, probe):
    desired = contract.node_topic(node.name, "cfg/desired")
    env = contract.Command.envelope({"set": {"description": "wanted"}}, ttl=None)
    probe.publish(desired, env, retain=True)
    cfg = probe.wait_for(
        f"nodes/{node.name}/cfg", lambda m: m.json()["config"]["description"] == "wanted"
    ).json()
    assert cfg["applied_id"] == env["id"]
    bad = contract.Command.envelope({"set": {"heartbeat.interval": -3}}, ttl=None)
    probe.publish(desired, bad, retain=True)
    cfg = probe.wait_for(f"nodes/{node.name}/cfg", lambda m: "desired_error" in m.json()).json()
    assert cfg["desired_error"]["code"] == "invalid"
    probe.publish(desired, None, retain=True)


def test_telemetry_follows_config(node, probe):
    cmd_id, inbox = send(
        probe, node.name, "configure", {"set": {"telemetry.interval": 1, "telemetry.metrics": ["cpu"]}}
    )
    final(probe, inbox, cmd_id)
    mark = probe.mark()
    msg = probe.wait_for(f"nodes/{node.name}/telemetry/+", since=mark, timeout=5)
    assert msg.topic == f"nodes/{node.name}/telemetry/cpu"
    assert 0 <= msg.json()["value"] <= 100 and msg.json()["unit"] == "%"


def test_logs_are_shipped_in_batches(node, probe):
    cmd_id, inbox = send(probe, node.name, "configure", {"set": {"logs.flush_interval": 0.2}})
    final(probe, inbox, cmd_id)
    batch = probe.wait_for(
        f"nodes/{node.name}/logs", lambda m: any(cmd_id in r["msg"] for r in m.json()["records"])
    ).json()
    assert batch["node"] == node.name and batch["dropped"] == 0
    assert {"ts", "level", "logger", "msg", "seq"} <= set(batch["records"][0])


def test_group_and_fleet_commands(node, probe):
    cmd_id, inbox = send(probe, node.name, "configure", {"set": {"groups": ["lobby"]}})
    final(probe, inbox, cmd_id)
    for topic in (contract.group_command_topic("lobby", "ping"), contract.fleet_command_topic("ping")):
        env = contract.Command.envelope(reply_to="replies/grp1")
        probe.subscribe("replies/grp1")
        probe.publish(topic, env)
        r = probe.wait_for(
            "replies/grp1",
            lambda m, i=env["id"]: (
                m.json()["id"] == i and m.json()["node"] == node.name and m.json()["status"] == "ok"
            ),
        )
        assert r.json()["result"]["pong"]


def test_signed_commands(agent_factory, probe, operator, provision):
    agent_factory("signed1", signing_key_file=provision("signed1"))
    probe.wait_for("nodes/signed1/status", _online)
    topic = contract.node_command_topic("signed1", "configure")
    probe.subscribe("replies/sig1")
    unsigned = contract.Command.envelope({"set": {"description": "x"}}, reply_to="replies/sig1")
    probe.publish(topic, unsigned)
    assert final(probe, "replies/sig1", unsigned["id"])["code"] == "bad_signature"
    signed = operator.sign(
        topic, contract.Command.envelope({"set": {"description": "ok"}}, reply_to="replies/sig1")
    )
    probe.publish(topic, signed)
    assert final(probe, "replies/sig1", signed["id"])["status"] == "ok"
    tampered = json.loads(json.dumps(signed))
    tampered["id"] = "tampered"
    tampered["args"]["set"]["description"] = "evil"
    probe.publish(topic, tampered)
    assert final(probe, "replies/sig1", "tampered")["code"] == "bad_signature"
    mark = probe.mark()
    probe.publish(topic, signed)  # the same id: at-most-once answers with the old receipt
    assert probe.wait_for("replies/sig1", lambda m: m.json()["id"] == signed["id"], since=mark)
    # Read-only commands need no signature.
    cmd_id, inbox = send(probe, "signed1", "ping")
    assert final(probe, inbox, cmd_id)["status"] == "ok"


def test_mqtt5_response_topic_and_correlation(node, probe):
    probe.subscribe("replies/v5resp")
    env = contract.Command.envelope()
    probe.publish(
        contract.node_command_topic(node.name, "ping"),
        env,
        properties={"ResponseTopic": "replies/v5resp", "CorrelationData": b"corr-1"},
    )
    msg = probe.wait_for("replies/v5resp", lambda m: m.json()["status"] == "ok")
    assert msg.properties.get("CorrelationData") == b"corr-1"


def test_hostile_response_topic_is_ignored(node, probe):
    probe.subscribe(f"nodes/{node.name}/receipts")
    env = contract.Command.envelope()
    probe.publish(
        contract.node_command_topic(node.name, "ping"),
        env,
        properties={"ResponseTopic": "nodes/other/cmd/restart"},
    )
    assert probe.wait_for(f"nodes/{node.name}/receipts", lambda m: m.json()["id"] == env["id"])


def test_clock_in_receipts_is_sane(node, probe):
    cmd_id, inbox = send(probe, node.name, "ping")
    r = final(probe, inbox, cmd_id)
    assert abs(r["ts"] - time.time()) < 60
