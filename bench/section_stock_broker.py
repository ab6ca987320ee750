"""`devfleet ls` on a stock mosquitto (default ``max_queued_messages 1000``): how many
nodes a one-shot listing gets, and how long it takes (issue 17.13).

Each size gets a fresh default-config mosquitto and a simulated fleet in this
process; ``devfleet ls --json`` runs as a subprocess, exactly as an operator runs it.
The last size also runs with ``max_queued_messages 100000`` (docs/agent.md).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_base.testing.broker import MosquittoBroker

TITLE = "Listing a fleet on a stock mosquitto"

_FULL = (300, 1_000, 3_000, 5_000)
_QUICK = (50, 300)


async def devfleet_ls(nodes: int, max_queued: int | None) -> dict[str, Any]:
    """Simulate ``nodes`` nodes on a fresh mosquitto (``max_queued`` None: its default),
    run ``devfleet ls --json``; return exit code, the rows, the time and stderr's tail."""
    with MosquittoBroker(max_queued_messages=max_queued) as broker:
        options = FleetOptions(host=broker.host, port=broker.port, nodes=nodes, prefix="stock", keepalive=120)
        async with SimFleet(options) as sim:
            await sim.wait_connected(180)
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("devfleet")),
                "--broker",
                broker.url,
                "--timeout",
                "30",
                "ls",
                "--json",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await proc.communicate()
            seconds = time.monotonic() - t0
    rows = json.loads(out) if proc.returncode == 0 else []
    return {
        "nodes": nodes,
        "exit": proc.returncode,
        "listed": len(rows),
        "rows": rows,
        "seconds": seconds,
        "stderr": err.decode()[-300:],
    }


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    rows, details = [], []
    sizes = _QUICK if quick else _FULL
    runs = [(n, None) for n in sizes] + [(sizes[-1] * 2, 100_000)]
    for nodes, max_queued in runs:
        got = await devfleet_ls(nodes, max_queued)
        del got["rows"]
        got["max_queued_messages"] = max_queued or "default (1000)"
        details.append(got)
        setting = "" if max_queued is None else f", max_queued_messages {max_queued}"
        log(
            f"  ls, {nodes} nodes{setting}: exit {got['exit']}, {got['listed']} listed in {got['seconds']:.1f} s"
        )
        rows.append(
            row(
                f"devfleet ls, {nodes} nodes, stock mosquitto{setting}",
                got["listed"],
                "nodes",
                None,
                lower_is_better=False,
                target=f"{nodes}",
            )
        )
    return {"rows": rows, "details": {"runs": details}}
