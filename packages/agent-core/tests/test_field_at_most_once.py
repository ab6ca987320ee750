"""At-most-once for real (issue 17: 7 retained commands, 8 command ids across restarts), real broker."""

from __future__ import annotations

import pytest

from devfleet_base import contract


def _online(msg):
    return msg.json()["status"] == "online"


def _final(probe, inbox, cmd_id, *, since=0):
    return probe.wait_for(
        inbox, lambda m: m.json()["id"] == cmd_id and m.json()["status"] != "accepted", since=since
    ).json()


@pytest.mark.parametrize("verb", ["restart", "ping", "configure"])
def test_a_retained_command_is_refused_and_cleared_not_replayed(agent_factory, probe, verb):
    node = f"ret-{verb}"
    topic = contract.node_command_topic(node, verb)
    inbox = f"replies/{node}"
    probe.subscribe(inbox)
    args = {"set": {"description": "from a retained command"}} if verb == "configure" else {}
    # What the README's `mosquitto_pub -r` habit does to a command topic.
    probe.publish(topic, contract.Command.envelope(args, id="r-1", reply_to=inbox), retain=True)
    agent = agent_factory(node)
    receipt = _final(probe, inbox, "r-1")
    assert receipt["status"] == "error" and receipt["code"] == "invalid"
    assert "retained" in receipt["message"]
    assert probe.retained(topic) == {}  # cleared: it cannot come back on the next reconnect
    assert agent.exit_code is None and agent.agent.store.version == 0  # not run
    assert not [m for m in probe.messages(inbox) if m.json()["status"] in ("accepted", "ok")]


@pytest.mark.parametrize("leaf", ["stop_all", "stop", "restart", "restart_agent"])
def test_retained_wactorz_control_messages_are_cleared_not_obeyed(agent_factory, probe, leaf):
    node = f"ret-wz-{leaf.replace('_', '')}"
    topic = contract.node_topic(node, leaf)
    probe.subscribe(topic)
    probe.publish(topic, {"name": "x"}, retain=True)
    agent = agent_factory(node)
    probe.wait_for(f"nodes/{node}/status", _online)
    probe.wait_for(topic, lambda m: m.payload == b"")  # the node's clear
    assert probe.retained(topic) == {}
    assert agent.exit_code is None  # a retained stop_all would stop the node at every connect


def test_a_retained_command_delivered_live_runs_once_and_is_cleared(agent_factory, probe):
    inbox = "replies/ret-live"
    probe.subscribe(inbox)
    first = agent_factory("ret-live")
    probe.wait_for("nodes/ret-live/status", _online)
    topic = contract.node_command_topic("ret-live", "configure")
    probe.subscribe(topic)
    env = contract.Command.envelope({"set": {"description": "once"}}, id="live-1", reply_to=inbox)
    probe.publish(topic, env, retain=True)  # delivered live: retain flag 0, it runs
    assert _final(probe, inbox, "live-1")["result"] == {"config_version": 1}
    # The broker hands the retained copy over again at the next subscribe (a config
    # change re-subscribes; so does every reconnect): refused there and cleared.
    probe.wait_for(topic, lambda m: m.payload == b"")
    first.stop()
    mark = probe.mark()
    agent_factory("ret-live")
    probe.wait_for("nodes/ret-live/status", _online, since=mark)
    assert probe.retained(topic) == {}
    oks = [m for m in probe.messages(inbox) if m.json()["status"] == "ok"]
    assert len(oks) == 1
    cfg = probe.retained("nodes/ret-live/cfg")["nodes/ret-live/cfg"].json()
    assert cfg["config_version"] == 1


def test_command_ids_survive_kill_9(process_factory, probe):
    inbox = "replies/job7"
    probe.subscribe(inbox)
    probe.subscribe("nodes/amo1/cfg")
    topic = contract.node_command_topic("amo1", "configure")
    job7 = contract.Command.envelope({"set": {"description": "A"}}, id="job-7", reply_to=inbox, ttl=None)
    proc = process_factory("amo1")
    probe.wait_for("nodes/amo1/status", _online, timeout=15)
    probe.publish(topic, job7)
    assert _final(probe, inbox, "job-7")["result"] == {"config_version": 1}
    proc.kill()
    mark = probe.mark()
    process_factory("amo1")
    probe.wait_for("nodes/amo1/status", _online, since=mark, timeout=15)
    other = contract.Command.envelope({"set": {"description": "B"}}, id="other-1", reply_to=inbox)
    probe.publish(topic, other)
    assert _final(probe, inbox, "other-1")["result"] == {"config_version": 2}
    mark = probe.mark()
    probe.publish(topic, job7)  # the same id again, after the restart
    again = _final(probe, inbox, "job-7", since=mark)
    assert again["result"] == {"config_version": 1}  # its first final receipt, sent again
    cfg = probe.retained("nodes/amo1/cfg")["nodes/amo1/cfg"].json()
    assert cfg["config_version"] == 2 and cfg["config"]["description"] == "B"


def test_command_memory_is_bounded_and_pruned_by_expiry(tmp_path):
    from devfleet_agent.command_ids import CommandMemory

    now = [1000.0]
    path = tmp_path / "commands.json"
    memory = CommandMemory(path, limit=3, keep_for=100.0, skew=10.0, clock=lambda: now[0])
    memory.remember("a", None, expires_at=1005.0)
    memory.remember("b", {"id": "b", "status": "ok", "result": "x" * 10_000}, expires_at=None)
    for cmd_id in ("c", "d"):
        memory.remember(cmd_id, {"id": cmd_id, "status": "ok"}, expires_at=None)
    assert "a" not in memory and len(memory) == 3  # the oldest went first
    assert "result" not in memory.final("b")  # a big result is not kept
    reloaded = CommandMemory(path, limit=3, keep_for=100.0, skew=10.0, clock=lambda: now[0])
    reloaded.load()
    assert "c" in reloaded and reloaded.final("d") == {"id": "d", "status": "ok"}
    now[0] += 200.0
    assert "c" not in reloaded  # expired
    path.write_text("{broken")
    damaged = CommandMemory(path)
    damaged.load()
    assert len(damaged) == 0
