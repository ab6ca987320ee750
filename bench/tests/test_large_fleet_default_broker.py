"""Issue 17.13: `devfleet ls` lists a 300-node fleet on a stock mosquitto.

mosquitto's default ``max_queued_messages 1000`` drops QoS 1 messages to a
subscriber that is behind: 300 nodes are 1,200 retained descriptions, and a
console that subscribed to them at QoS 1 got ~1,020 and lost its sync marker.
The benchmark section ``stock_broker`` measures larger fleets the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from section_stock_broker import devfleet_ls

N = 300


async def test_ls_lists_300_nodes_on_a_default_mosquitto() -> None:
    got = await devfleet_ls(N, max_queued=None)  # None: mosquitto's default config
    assert got["exit"] == 0, got["stderr"]
    assert got["listed"] == N
    assert {n["status"] for n in got["rows"]} == {"online"}
    assert all(n["config_version"] == 0 for n in got["rows"])  # each node's cfg arrived too
