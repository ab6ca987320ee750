"""A fleet spread over a 3-node NATS cluster, next to the same fleet on one mosquitto.

Simulated nodes (``devfleet_agent.sim``, MQTT 3.1.1 on both: NATS speaks nothing else)
run in one subprocess per broker node, the fleet split evenly; the console sits on the
last node. Measured: how long until the whole fleet is up, discovery (a fresh console
from connect until every node is in its model) and a fleet-wide ping (every ``ok``
receipt in). A run that does not reach the whole fleet reports how far it got.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from devfleet_base.testing import MosquittoBroker, NatsCluster
from devfleet_command.aio import AsyncFleet
from devfleet_command.errors import ConnectError, ConsoleTimeout

TITLE = "A 3-node NATS cluster next to one mosquitto"

_FULL = 5_000
_QUICK = 20
_UP_TIMEOUT = (300.0, 60.0)  # seconds for the fleet to come up: (full, quick)


def _online(model: Any, prefix: str) -> int:
    return sum(1 for n in model if n.online and n.name.startswith(prefix + "-"))


async def measure(urls: list[str], nodes: int, prefix: str, up_timeout: float) -> dict[str, Any]:
    """Simulate ``nodes`` nodes split over ``urls``; time the fleet's coming up, a fresh
    console's discovery and a fleet-wide ping."""
    share, rest = divmod(nodes, len(urls))
    procs, first = [], 0
    for i, url in enumerate(urls):
        count = share + (1 if i < rest else 0)
        procs.append(
            await asyncio.create_subprocess_exec(  # an argument list, never a shell string
                sys.executable,
                "-m",
                "devfleet_agent.sim.cli",
                "--broker",
                url,
                "--nodes",
                str(count),
                "--first",
                str(first),
                "--prefix",
                prefix,
                "--protocol",
                "3.1.1",
                "--keepalive",
                "120",
                "--heartbeat-interval",
                "3600",
                "--telemetry-interval",
                "3600",
                "--report",
                "3600",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        first += count
    out: dict[str, Any] = {"nodes": nodes, "broker_nodes": len(urls)}
    console = urls[-1]
    try:
        t0 = time.monotonic()
        async with AsyncFleet.connect(console, protocol="3.1.1", connect_timeout=60) as watcher:
            try:
                await watcher.wait_for(lambda m: _online(m, prefix) >= nodes, up_timeout)
            except ConsoleTimeout:
                out["up"] = None
                out["reached"] = _online(watcher.model, prefix)
                return out
        out["up"] = time.monotonic() - t0
        t1 = time.monotonic()
        fleet = AsyncFleet.connect(console, protocol="3.1.1", connect_timeout=120)
        try:
            await fleet.start()
            await fleet.wait_for(lambda m: _online(m, prefix) >= nodes, 120)
        # A half-seen fleet, or a console the cluster dropped, is reported, never taken as complete.
        except (ConsoleTimeout, ConnectError) as exc:
            out["discovery"] = None
            out["reached"] = _online(fleet.model, prefix)
            out["error"] = str(exc)[:200]
            await fleet.close()
            return out
        try:
            out["discovery"] = time.monotonic() - t1
            t2 = time.monotonic()
            bc = await fleet.broadcast("ping", timeout=120)
            await bc.wait()
            out["ping"] = time.monotonic() - t2
            out["ping_ok"] = len(bc.succeeded)
        finally:
            await fleet.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
    return out


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    nodes = _QUICK if quick else _FULL
    up_timeout = _UP_TIMEOUT[1] if quick else _UP_TIMEOUT[0]
    with MosquittoBroker(max_queued_messages=1_000_000) as broker:
        log(f"  {nodes} nodes on one mosquitto")
        single = await measure([broker.url], nodes, "one", up_timeout)
    with NatsCluster(3) as cluster:
        log(f"  {nodes} nodes over 3 NATS nodes (ready in {cluster.ready_seconds:.2f} s)")
        spread = await measure(cluster.urls, nodes, "nats", up_timeout)
        spread["cluster_ready"] = cluster.ready_seconds
    rows = []
    for label, got, floor in (("one mosquitto", single, None), ("3-node NATS cluster", spread, single)):
        log(f"  {label}: {got}")
        if got.get("up") is not None and got.get("discovery") is None:
            rows.append(row(f"cluster: {nodes:,} nodes up on {label}", got["up"], "s", None))
            rows.append(
                row(
                    f"cluster: discovery of {nodes:,} nodes, {label}: seen before the console gave up",
                    got["reached"],
                    "nodes",
                    None,
                    lower_is_better=False,
                    target=f"{nodes:,}",
                )
            )
            continue
        if got.get("up") is None:
            rows.append(
                row(
                    f"cluster: {nodes:,} nodes up on {label} (reached within {up_timeout:.0f} s)",
                    got["reached"],
                    "nodes",
                    None,
                    lower_is_better=False,
                    target=f"{nodes:,}",
                )
            )
            continue
        ref = floor if floor and floor.get("up") is not None else {}
        rows.append(row(f"cluster: {nodes:,} nodes up on {label}", got["up"], "s", ref.get("up")))
        rows.append(
            row(
                f"cluster: discovery of {nodes:,} nodes, {label}", got["discovery"], "s", ref.get("discovery")
            )
        )
        rows.append(
            row(
                f"cluster: fleet-wide ping of {nodes:,} nodes, {label} ({got['ping_ok']:,} ok)",
                got["ping"],
                "s",
                ref.get("ping"),
            )
        )
    return {"rows": rows, "details": {"mosquitto": single, "nats_cluster": spread}}
