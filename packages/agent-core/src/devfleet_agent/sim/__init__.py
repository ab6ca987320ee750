"""The fleet simulator: thousands of nodes speaking the full contract from one process.

Run it as ``devfleet-sim --broker mqtt://127.0.0.1:1883 --nodes 1000`` (see
:mod:`devfleet_agent.sim.cli`), or in code::

    async with SimFleet(FleetOptions(port=1883, nodes=50)) as fleet:
        await fleet.wait_connected(30)
"""

from __future__ import annotations

from .fleet import FleetOptions, FleetStats, SimFleet, node_names
from .node import NodeBehaviour, SimNode

__all__ = ["FleetOptions", "FleetStats", "NodeBehaviour", "SimFleet", "SimNode", "node_names"]
