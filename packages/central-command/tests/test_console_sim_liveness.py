"""A console started after the fleet dates every node by its retained heartbeat: the
simulator publishes its nodes' first heartbeat on connecting, as the agent does, so a
fleet-wide command does not first wait a whole heartbeat interval for proof of life."""

from __future__ import annotations

from typing import Any

import pytest

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_command.aio import AsyncFleet

pytestmark = pytest.mark.timeout(60)


async def test_a_later_console_has_no_node_to_confirm_with_hour_long_heartbeats(mqtt_broker: Any) -> None:
    opts = FleetOptions(
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        nodes=20,
        prefix="hb",
        heartbeat_interval=3600.0,
        telemetry_interval=3600.0,
    )
    async with SimFleet(opts) as sim:
        await sim.wait_connected(30)
        fleet = AsyncFleet(f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}", connect_timeout=30)
        await fleet.start()
        try:
            # Only retained copies reach this console: each node's first heartbeat must be among them.
            await fleet.wait_for(
                lambda m: sum(1 for n in m if n.name.startswith("hb-") and n.heartbeat_at is not None) == 20,
                10,
            )
            assert [n.name for n in fleet.model.unconfirmed() if n.name.startswith("hb-")] == []
            bc = await fleet.broadcast("ping", timeout=20)  # the broker is shared: other tests' nodes too
            await bc.wait()
            assert sum(1 for name in bc.succeeded if name.startswith("hb-")) == 20
        finally:
            await fleet.close()
