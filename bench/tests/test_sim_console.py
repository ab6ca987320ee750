"""The fleet simulator against a real console: discovery, broadcast, crash, config conflict."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_command.aio import AsyncFleet
from devfleet_command.errors import ConfigConflict

N = 50


def _ours(model: Any) -> list[Any]:
    return [n for n in model if n.name.startswith("t-")]


async def test_fifty_simulated_nodes_in_a_console(fresh_broker: Any) -> None:
    options = FleetOptions(host=fresh_broker.host, port=fresh_broker.port, nodes=N, prefix="t", keepalive=5)
    async with SimFleet(options) as sim:
        await sim.wait_connected(30)
        async with AsyncFleet.connect(fresh_broker.url) as fleet:
            await fleet.wait_for(lambda m: sum(n.online for n in _ours(m)) == N, timeout=30)
            view = fleet.node("t-00007")
            assert view.meta is not None and view.meta["simulated"] is True
            assert view.config_version == 0 and view.session == 1

            # A fleet-wide ping: every node answers with receipts.
            bc = await fleet.broadcast("ping", timeout=20)
            await bc.wait()
            assert bc.ok and len(bc.succeeded) == N, bc.to_dict()
            assert all(o.receipt and o.receipt["result"]["pong"] for o in bc.outcomes.values())

            # A crashed node shows lost (its will), then comes back with the next session.
            sim.crash("t-00003")
            await fleet.wait_for(lambda m: m.get("t-00003").health == "lost", timeout=15)  # type: ignore[union-attr]
            sim.restart("t-00003")
            await fleet.wait_for(
                lambda m: m.get("t-00003").health == "online" and m.get("t-00003").session == 2,  # type: ignore[union-attr]
                timeout=15,
            )

            # Config with versions: a stale expect_version is refused, a fresh one applies.
            version = await fleet.config_set("t-00011", {"telemetry.interval": 5}, expect_version=0)
            assert version == 1
            with pytest.raises(ConfigConflict):
                await fleet.config_set("t-00011", {"telemetry.interval": 6}, expect_version=0)
            await fleet.wait_for(lambda m: m.get("t-00011").config_version == 1, timeout=10)  # type: ignore[union-attr]
            assert fleet.node("t-00011").config["telemetry"]["interval"] == 5  # type: ignore[index]


async def test_slow_and_silent_nodes(fresh_broker: Any) -> None:
    options = FleetOptions(
        host=fresh_broker.host,
        port=fresh_broker.port,
        nodes=20,
        prefix="t",
        slow_replies=0.3,
        reply_delay=1.0,
        silent=0.2,
        seed=7,
    )
    async with SimFleet(options) as sim:
        await sim.wait_connected(30)
        silent = {n.name for n in sim if n.behaviour.silent}
        slow = {n.name for n in sim if n.behaviour.reply_delay > 0}
        assert silent and slow
        async with AsyncFleet.connect(fresh_broker.url) as fleet:
            await fleet.wait_for(lambda m: sum(n.online for n in _ours(m)) == 20, timeout=30)
            bc = await fleet.broadcast("ping", timeout=4)
            await bc.wait()
            assert set(bc.timed_out) == silent
            assert set(bc.succeeded) == {n.name for n in sim} - silent


async def test_heartbeat_telemetry_and_logs(fresh_broker: Any) -> None:
    options = FleetOptions(
        host=fresh_broker.host,
        port=fresh_broker.port,
        nodes=5,
        prefix="t",
        heartbeat_interval=1,
        telemetry_interval=1,
    )
    async with SimFleet(options) as sim:
        await sim.wait_connected(30)
        async with AsyncFleet.connect(fresh_broker.url) as fleet:
            await fleet.wait_for(
                lambda m: (
                    all(n.heartbeat and set(n.telemetry) == {"cpu", "memory", "disk"} for n in _ours(m))
                    and len(_ours(m)) == 5
                ),
                timeout=15,
            )
            records = fleet.logs("t-00001")
            await fleet.config_set("t-00001", {"description": "x"})
            first = await asyncio.wait_for(records.__anext__(), 10)
            assert "config version 1 applied" in first.msg
