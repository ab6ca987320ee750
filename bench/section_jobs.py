"""A fleet job over simulated nodes (issue 16): time per stage next to a raw
fleet-wide command in the same run, and the console's CPU while the job runs.

The nodes are simulated in this process on a fresh mosquitto; the console runs in
a subprocess (this file with ``--console``) so its CPU is its own: it first
broadcasts ``upgrade ledstrip==1.1`` to the whole fleet in one message (the
floor: what the same change costs with no stages, gates or retained progress),
then runs a job ``upgrade ledstrip==1.2`` with a canary of 1 % and batches of
25 %, a zero soak (the gate's mechanism, not a wait) and every per-node record
retained.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from typing import Any

TITLE = "Fleet jobs: staged rollout vs one fleet-wide command"

_FULL = 1_000
_QUICK = 100


async def _console(url: str, nodes: int) -> dict[str, Any]:
    from devfleet_command.aio import AsyncFleet
    from devfleet_command.jobs import Gate, JobRunner, JobState, Operation, new_job, resolve_target

    async with AsyncFleet(url, connect_timeout=60) as fleet:
        await fleet.wait_for(lambda m: sum(1 for n in m if n.online) >= nodes, 60)
        await fleet.confirm_liveness()  # a heartbeat from each node first: not part of the floor
        t0 = time.monotonic()
        bc = await fleet.broadcast("upgrade", {"spec": "ledstrip==1.1"}, timeout=60)
        await bc.wait()
        raw = time.monotonic() - t0
        names = resolve_target(fleet.model, everything=True)
        spec = new_job(
            fleet,
            Operation("upgrade", {"spec": "ledstrip==1.2"}, timeout=60),
            names,
            canary="1%",
            batch="25%",
            gate=Gate(soak=0.0),
            expires_in=300,
        )
        marks: list[float] = []

        def on_change(state: JobState) -> None:
            while len(marks) <= state.stage:
                marks.append(time.monotonic())

        cpu0, t1 = os.times(), time.monotonic()
        state = await JobRunner(fleet, JobState.fresh(spec), on_change=on_change).run()
        cpu1, t2 = os.times(), time.monotonic()
        marks.append(t2)
        stages = [b - a for a, b in itertools.pairwise(marks)]
        return {
            "nodes": nodes,
            "raw_seconds": raw,
            "raw_ok": len(bc.succeeded),
            "job_state": state.state,
            "job_done": state.tally()["done"],
            "job_seconds": t2 - t1,
            "stage_sizes": [len(s) for s in spec.stages],
            "stage_seconds": stages,
            "console_cpu_seconds": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        }


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    from devfleet_agent.sim import FleetOptions, SimFleet
    from devfleet_base.testing.broker import MosquittoBroker

    nodes = _QUICK if quick else _FULL
    with MosquittoBroker() as broker:
        options = FleetOptions(
            host=broker.host,
            port=broker.port,
            nodes=nodes,
            prefix="bjob",
            heartbeat_interval=5.0,
            telemetry_interval=60.0,
            components=(("ledstrip", "1.0"),),
            keepalive=60,
        )
        async with SimFleet(options) as sim:
            await sim.wait_connected(120)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--console",
                broker.url,
                str(nodes),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the job console failed: {err.decode()[-600:]}")
    got = json.loads(out)
    raw, job = got["raw_seconds"], got["job_seconds"]
    log(f"  raw fleet-wide upgrade to {nodes} nodes: {raw:.2f} s; job ({got['job_state']}): {job:.2f} s")
    log(f"  stages {got['stage_sizes']}: " + ", ".join(f"{s:.2f} s" for s in got["stage_seconds"]))
    rows = [
        row(f"fleet-wide upgrade, one broadcast, {nodes} nodes (floor)", raw, "s", None),
        row(
            f"job over {nodes} nodes, {len(got['stage_sizes'])} stages, soak 0",
            job,
            "s",
            raw,
            target="< 5x floor",
        ),
    ]
    for i, (size, seconds) in enumerate(zip(got["stage_sizes"], got["stage_seconds"], strict=False)):
        name = "canary" if i == 0 else f"batch {i}"
        floor = raw * size / nodes  # the broadcast's time for as many nodes
        rows.append(row(f"job {name}: {size} nodes", seconds, "s", floor))
    cpu = got["console_cpu_seconds"]
    rows.append(
        row(
            f"console CPU during the job ({nodes} nodes)",
            cpu,
            "s CPU",
            None,
            target=f"{100 * cpu / job:.0f} % of one core",
        )
    )
    return {"rows": rows, "details": got}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--console", nargs=2, metavar=("URL", "NODES"), required=True)
    a = parser.parse_args()
    print(json.dumps(asyncio.run(_console(a.console[0], int(a.console[1])))))
