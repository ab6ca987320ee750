"""A devfleet node obeys the verbs a Wactorz main sends, as it sends them (issue 21).

The messages are published exactly as wactorz 0.7.2's main publishes them
(``wactorz/agents/main/nodes.py``): a retained ``desired_state``, ``restart_agent``,
``stop`` with ``delete`` / ``keep_topics``, and the bare-string stop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interop_kit import COUNTER, poll, wait_actor, wait_online

from devfleet_base import contract
from devfleet_command.sync import Fleet


def test_desired_state_restart_agent_and_stop_forms(peers: Any, probe_factory: Any) -> None:
    data = peers.root / "df-main"
    peers.devfleet("df-main", "--allow-code")
    url = peers.broker.url
    wait_online(url, "df-main")
    probe = probe_factory(peers.broker)
    probe.subscribe("nodes/df-main/receipts")  # before anything is sent: receipts are not retained
    config = {"name": "kept", "code": COUNTER, "poll_interval": 0.1, "node": "df-main"}
    other = {"name": "other", "code": COUNTER, "poll_interval": 0.1, "node": "df-main"}
    probe.publish("nodes/df-main/desired_state", {"agents": [config, other]}, retain=True)
    wait_actor(url, "df-main", "kept")
    wait_actor(url, "df-main", "other")
    with Fleet.connect(url) as fleet:
        poll(lambda: fleet.task("kept", {})["n"] >= 3)
        before = fleet.task("kept", {})["n"]
        mark = probe.mark()
        probe.publish("nodes/df-main/restart_agent", {"name": "kept"})
        probe.wait_for(
            "nodes/df-main/receipts",
            lambda m: m.json()["cmd"] == "restart_agent" and m.json()["status"] == "ok",
            since=mark,
            timeout=20,
        )
        assert fleet.task("kept", {})["n"] >= before  # its state was read back
        # The bare-string stop (Wactorz's legacy form) stops it, state kept.
        probe.publish("nodes/df-main/stop", "other")
    wait_actor(url, "df-main", "other", present=False)
    state_files = sorted(p.name for p in Path(data).rglob("*kept*"))
    assert state_files, "the actor's state file should exist before the delete"
    # stop with delete: the state file and the retained actor topics go.
    actor = contract.actor_id("kept")
    probe.publish(f"agents/{actor}/resume", {"left": "behind"}, retain=True)
    mark = probe.mark()
    probe.publish("nodes/df-main/stop", json.dumps({"name": "kept", "delete": True}))
    receipt = probe.wait_for(
        "nodes/df-main/receipts", lambda m: m.json()["cmd"] == "stop", since=mark, timeout=20
    ).json()
    assert receipt["status"] == "ok" and receipt["result"]["deleted"] is True
    assert not [p for p in Path(data).rglob("*kept*") if p.is_file()]
    assert f"agents/{actor}/resume" not in probe.retained(f"agents/{actor}/#")


def test_desired_state_starts_missing_actors_on_reconnect(peers: Any, probe_factory: Any) -> None:
    agent = peers.devfleet("df-re", "--allow-code")
    url = peers.broker.url
    wait_online(url, "df-re")
    probe = probe_factory(peers.broker)
    probe.publish(
        "nodes/df-re/desired_state",
        {"agents": [{"name": "back", "code": COUNTER, "poll_interval": 0.5}]},
        retain=True,
    )
    wait_actor(url, "df-re", "back")
    agent.__exit__()
    peers.agents.procs.remove(agent)
    peers.devfleet("df-re", "--allow-code")  # a fresh process: the retained list starts it again
    wait_actor(url, "df-re", "back")
