"""Issue 17.13: `devfleet ls` lists a 300-node fleet on a stock mosquitto.

mosquitto's default ``max_queued_messages 1000`` drops QoS 1 messages to a
subscriber that is behind: 300 nodes are 1,200 retained descriptions, and a
console that subscribed to them at QoS 1 got ~1,020 and lost its sync marker.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_base.testing.broker import MosquittoBroker

N = 300


@pytest.fixture
def stock_broker() -> Any:
    with MosquittoBroker(max_queued_messages=None) as broker:  # mosquitto's defaults
        text = broker.config_path.read_text()
        assert "max_queued_messages" not in text
        yield broker


async def test_ls_lists_300_nodes_on_a_default_mosquitto(stock_broker: Any) -> None:
    options = FleetOptions(
        host=stock_broker.host, port=stock_broker.port, nodes=N, prefix="big", keepalive=30
    )
    async with SimFleet(options) as sim:
        await sim.wait_connected(60)
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("devfleet")),
            "--broker",
            stock_broker.url,
            "--timeout",
            "30",
            "ls",
            "--json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    nodes = json.loads(out)
    assert len(nodes) == N
    assert {n["status"] for n in nodes} == {"online"}
    assert all(n["config_version"] == 0 for n in nodes)  # each node's cfg arrived too
