"""A signed fleet seen from the console: only the node itself may say how a command went.

Issue 13 measured a node with ordinary ACL rights reading ``fleet/cmd/ping`` and
publishing a forged ok receipt for another, stopped node to the broadcast's reply_to:
the broadcast reported it succeeded. Real broker, real agents (subprocesses).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from devfleet_base.signing import Identity
from devfleet_command import AsyncFleet
from devfleet_command.errors import NodeNotFound


@pytest.mark.asyncio
async def test_forged_receipts_for_another_node_are_refused(
    mosquitto: Any, agents: Any, probe_factory: Any, tmp_path: Path
) -> None:
    operator = Identity.generate("console-trust")
    keys = {n: operator.issue_node(n).save(tmp_path / f"{n}.json") for n in ("t1", "t2", "t3")}
    procs = {n: agents.start(n, "--signing-key-file", str(keys[n])) for n in keys}
    async with AsyncFleet.connect(mosquitto.url, identity=operator) as fleet:
        await fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in keys), timeout=20)
        procs["t3"].terminate()  # a clean stop: t3 says offline
        await fleet.wait_for(lambda m: not m.get("t3").online, timeout=20)

        attacker = probe_factory(mosquitto)
        attacker.subscribe("fleet/cmd/ping")
        node_t1 = Identity.load(keys["t1"])  # what an attacker on t1 holds
        bc = await fleet.broadcast("ping", timeout=10)
        cmd = (await asyncio.to_thread(attacker.wait_for, "fleet/cmd/ping")).json()
        forged = {"id": cmd["id"], "node": "t3", "cmd": "ping", "status": "ok", "result": {"pong": True}}
        attacker.publish(cmd["reply_to"], forged)
        attacker.publish(cmd["reply_to"], node_t1.sign(cmd["reply_to"], forged))
        await bc.wait()
        await fleet.wait_until_synced()  # our marker comes back after the forged receipts
        assert bc.succeeded == ["t1", "t2"]
        assert bc.offline == ["t3"]
        assert fleet.refused_receipts == 2


@pytest.mark.asyncio
async def test_a_console_without_the_operator_key_believes_no_node(
    mosquitto: Any, agents: Any, probe_factory: Any, tmp_path: Path
) -> None:
    operator = Identity.generate("console-real")
    agents.start("t4", "--signing-key-file", str(operator.issue_node("t4").save(tmp_path / "t4.json")))
    watcher = probe_factory(mosquitto)
    await asyncio.to_thread(watcher.wait_for, "nodes/t4/cfg", None, 20)  # the last of the birth
    stranger = Identity.generate("console-stranger")
    async with AsyncFleet.connect(mosquitto.url, identity=stranger) as fleet:
        # t4's birth is retained on the broker, but certified by an operator we do not
        # trust: the node is unknown here, so nothing is even sent to it.
        assert "t4" not in fleet.model and fleet.refused_descriptions >= 4
        with pytest.raises(NodeNotFound):
            await fleet.send("t4", "ping", timeout=5)


@pytest.mark.asyncio
async def test_forged_descriptions_are_not_believed(
    mosquitto: Any, agents: Any, probe_factory: Any, tmp_path: Path
) -> None:
    operator = Identity.generate("console-desc")
    key = operator.issue_node("t5").save(tmp_path / "t5.json")
    agents.start("t5", "--signing-key-file", str(key))
    async with AsyncFleet.connect(mosquitto.url, identity=operator) as fleet:
        await fleet.wait_for(lambda m: "t5" in m and m.get("t5").online, timeout=20)
        attacker = probe_factory(mosquitto)
        forged = {"node": "t5", "session": 10**9, "version": 10**9, "status": "offline"}
        attacker.publish(
            "nodes/t5/status",
            Identity.load(key).sign("nodes/t5/status", forged, ttl=None) | {"status": "lost"},
        )
        attacker.publish("nodes/ghost/meta", {"node": "ghost", "session": 1, "version": 1})
        # Heartbeats keep a node from going stale: only the node may send them.
        attacker.publish("nodes/t5/heartbeat", {"node": "t5", "uptime": 999999.0, "timestamp": 1.0})
        aid = "00000000-0000-0000-0000-000000000001"
        attacker.publish(
            f"agents/{aid}/heartbeat", {"actor_id": aid, "name": "fake", "node": "t5", "state": "running"}
        )
        await fleet.wait_until_synced()
        assert fleet.node("t5").online and "ghost" not in fleet.model
        assert (fleet.node("t5").heartbeat or {}).get("uptime") != 999999.0
        assert "fake" not in str(fleet.node("t5").actors)
        assert fleet.refused_descriptions >= 4
