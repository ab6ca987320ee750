"""AsyncFleet and Fleet against a real mosquitto and real agents."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from devfleet_command.aio import AsyncFleet
from devfleet_command.errors import ConfigConflict, InvalidConfig, NodeNotFound, PurgeError
from devfleet_command.model import FleetModel, NodeAppeared, NodeLost, NodeStale
from devfleet_command.sync import Fleet


def online(*names: str) -> Any:
    def check(m: FleetModel) -> bool:
        return all((n := m.get(name)) is not None and n.online and n.cfg is not None for name in names)

    return check


def health(name: str, value: str) -> Any:
    def check(m: FleetModel) -> bool:
        n = m.get(name)
        return n is not None and n.health == value

    return check


async def test_discovers_several_agents_and_live_events(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    agents.start("n2")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        stream = fleet.events()
        await fleet.wait_for(online("n1", "n2"), timeout=20)
        agents.start("n3")
        seen: list[str] = []
        async with asyncio.timeout(20):
            async for ev in stream:
                if isinstance(ev, NodeAppeared):
                    seen.append(ev.node or "")
                if "n3" in seen:
                    break
        await fleet.wait_for(online("n1", "n2", "n3"), timeout=20)
        assert [n.name for n in fleet.nodes()] == ["n1", "n2", "n3"]
        assert fleet.node("n1").meta["commands"]  # type: ignore[index]
    # a late console sees the retained descriptions at once
    async with AsyncFleet.connect(mosquitto.url) as late:
        assert {n.name for n in late.nodes()} == {"n1", "n2", "n3"}
        assert all(n.status == "online" for n in late.nodes())
        with pytest.raises(NodeNotFound):
            late.node("nope")


async def test_command_round_trip_with_receipts(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1"), timeout=20)
        states: list[str] = []
        handle = await fleet.send("n1", "ping", timeout=10, on_state=lambda h: states.append(h.state))
        result = await handle.result()
        assert handle.state == "ok" and result["pong"] is True and result["node"] == "n1"
        assert states == ["accepted", "ok"]  # the agent's two receipts, each reported
        bad = await fleet.send("n1", "no_such_verb", timeout=10)
        await bad.wait()
        assert bad.state == "error" and bad.code == "unknown_command"
        # an expired command is refused, not run late
        late = await fleet.send("n1", "ping", timeout=10, ttl=-1)
        await late.wait()
        assert late.state == "expired"


async def test_config_set_and_version_conflict(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1"), timeout=20)
        v0 = fleet.node("n1").config_version
        assert v0 is not None
        v1 = await fleet.config_set("n1", {"telemetry.interval": 5}, expect_version=v0)
        assert v1 == v0 + 1
        got = await fleet.config_get("n1")
        assert got["config"]["telemetry"]["interval"] == 5
        await fleet.wait_for(lambda m: m.get("n1").config_version == v1, timeout=10)  # type: ignore[union-attr]
        with pytest.raises(ConfigConflict) as info:
            await fleet.config_set("n1", {"telemetry.interval": 6}, expect_version=v0)
        assert info.value.code == "conflict" and info.value.node == "n1"
        with pytest.raises(InvalidConfig):
            await fleet.config_set("n1", {"telemetry.interval": "fast"})
        with pytest.raises(InvalidConfig):
            await fleet.config_set("n1", {"no.such.key": 1})
        # desired config: drift until applied
        await fleet.config_set("n1", {"description": "lab"}, desired=True)
        await fleet.wait_for(
            lambda m: (n := m.get("n1")) is not None and (n.config or {}).get("description") == "lab",
            timeout=10,
        )
        await fleet.wait_for(lambda m: m.drift() == [], timeout=10)


async def test_broadcast_with_one_node_offline(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    agents.start("n2")
    gone = agents.start("n3")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1", "n2", "n3"), timeout=20)
        gone.kill()
        await fleet.wait_for(health("n3", "lost"), timeout=10)
        progress: list[int] = []
        started = time.monotonic()
        bc = await fleet.broadcast("ping", timeout=15, on_progress=lambda b: progress.append(len(b.pending)))
        await bc.wait()
        assert time.monotonic() - started < 10  # not hung on n3
        assert bc.succeeded == ["n1", "n2"] and bc.offline == ["n3"]
        assert bc.failed == [] and bc.timed_out == [] and bc.ok
        assert progress[-1] == 0


async def test_group_broadcast(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    agents.start("n2")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1", "n2"), timeout=20)
        await fleet.config_set("n1", {"groups": ["lab"]})
        await fleet.wait_for(lambda m: [n.name for n in m.in_group("lab")] == ["n1"], timeout=10)
        bc = await fleet.broadcast("ping", group="lab", timeout=10)
        await bc.wait()
        assert bc.succeeded == ["n1"] and "n2" not in bc.outcomes


async def test_kill_9_is_lost_via_the_will(mosquitto: Any, agents: Any) -> None:
    agent = agents.start("n1")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1"), timeout=20)
        stream = fleet.events()
        agent.kill()
        async with asyncio.timeout(15):
            async for ev in stream:
                if isinstance(ev, NodeLost) and ev.node == "n1":
                    break
        assert fleet.node("n1").health == "lost"


async def test_sigstop_goes_stale(mosquitto: Any, agents: Any) -> None:
    agent = agents.start("n1")
    async with AsyncFleet.connect(mosquitto.url, stale_check_interval=0.2) as fleet:
        await fleet.wait_for(online("n1"), timeout=20)
        await fleet.config_set("n1", {"heartbeat.interval": 1.0})
        await fleet.wait_for(lambda m: m.get("n1").heartbeat_interval == 1.0, timeout=10)  # type: ignore[union-attr]
        stream = fleet.events()
        agent.pause()
        async with asyncio.timeout(15):
            async for ev in stream:
                if isinstance(ev, NodeStale) and ev.node == "n1":
                    break
        assert fleet.node("n1").health == "stale"
        # a broadcast does not wait on a stale node either
        bc = await fleet.broadcast("ping", timeout=10)
        await bc.wait()
        assert bc.offline == ["n1"]
        agent.resume()
        await fleet.wait_for(health("n1", "online"), timeout=15)


async def test_purge_leaves_no_retained_topic(mosquitto: Any, agents: Any) -> None:
    agent = agents.start("n1")
    agents.start("n2")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1", "n2"), timeout=20)
        await fleet.config_set("n1", {"description": "x"}, desired=True)
        # a component's retained state, as a component would leave it
        from devfleet_base import contract

        await fleet.mqtt.publish(
            contract.component_topic("n1", "led", "state"), b'{"on":true}', qos=1, retain=True, wait=True
        )
        with pytest.raises(PurgeError):
            await fleet.purge("n1")  # still online
        agent.stop()
        await fleet.wait_for(health("n1", "offline"), timeout=15)
        before = await fleet.retained_topics("n1")
        assert contract.node_topic("n1", "meta") in before
        assert contract.component_topic("n1", "led", "state") in before
        cleared = await fleet.purge("n1")
        assert set(before) <= set(cleared)
        assert await fleet.retained_topics("n1") == {}
        await fleet.wait_for(lambda m: "n1" not in m, timeout=5)
        assert "n2" in fleet.model
    async with AsyncFleet.connect(mosquitto.url) as late:
        assert [n.name for n in late.nodes()] == ["n2"]


def test_sync_fleet_same_api(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    with Fleet.connect(mosquitto.url) as fleet:
        fleet.wait_for(online("n1"), timeout=20)
        assert [n.name for n in fleet.nodes()] == ["n1"]
        assert fleet.node("n1").online
        handle = fleet.send("n1", "ping").wait()
        assert handle.state == "ok" and handle.value["pong"]
        assert fleet.call("n1", "ping")["node"] == "n1"
        v = fleet.config_set("n1", {"telemetry.interval": 7})
        assert isinstance(v, int)
        bc = fleet.broadcast("ping", timeout=10)
        assert bc.succeeded == ["n1"]
        agents.start("n2")
        names = set()
        for ev in fleet.events(timeout=20):
            if isinstance(ev, NodeAppeared):
                names.add(ev.node)
                break
        assert names == {"n2"}
