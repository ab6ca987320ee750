"""Two console operations listening on one topic at once (issue 19): a spawn and a
stop on one node both wait on ``nodes/{node}/receipts``. With plain
subscribe/unsubscribe the first to finish unsubscribed the other, whose receipt
then never came (a timeout for an operation that worked)."""

from __future__ import annotations

import asyncio
from typing import Any

from devfleet_command.aio import AsyncFleet

QUICK = """
async def process(agent):
    pass
"""

# A setup that takes a while, so the spawn's receipt comes well after the stop's.
SLOW_START = """
import asyncio

async def setup(agent):
    await asyncio.sleep(2.0)

async def process(agent):
    pass
"""


async def test_a_spawn_and_a_stop_on_one_node_at_once_both_succeed(mosquitto: Any, agents: Any) -> None:
    agents.start("share-a", "--allow-code")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(lambda m: (n := m.get("share-a")) is not None and n.online, 20)
        await fleet.spawn("share-a", {"name": "quick", "code": QUICK}, timeout=20)
        receipts = "nodes/share-a/receipts"
        assert fleet.mqtt.holders(receipts) == 0
        spawn = asyncio.create_task(
            fleet.spawn("share-a", {"name": "slow", "code": SLOW_START}, retain=False, timeout=20)
        )
        async with asyncio.timeout(10):  # the spawn is published and listening
            while fleet.mqtt.holders(receipts) != 1:
                await asyncio.sleep(0.01)
        # The stop is answered (and lets go of the receipts) while the spawn still
        # waits for its actor's setup.
        stopped = await fleet.stop_actor("share-a", "quick", timeout=20)
        assert stopped["stopped"] is True
        spawned = await spawn
        assert spawned["name"] == "slow" and spawned["state"] == "running"
        assert fleet.mqtt.holders(receipts) == 0
