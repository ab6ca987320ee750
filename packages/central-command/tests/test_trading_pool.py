"""A worker pool under load with a member killed: every job done exactly once.

1,000 jobs over 5 real agents (subprocesses) whose actors joined pool ``crunch``
through ``$share/crunch/pools/crunch/jobs/+``; one agent is killed with kill -9
after half the jobs are done. The dispatcher redoes what the dead member held
(no done within ``ack_timeout``), counts each job's first done once, and reports
how the jobs spread over the members.
"""

from __future__ import annotations

import threading
from typing import Any

from devfleet_base.testing import MqttProbe
from devfleet_command.sync import Fleet

WORKER = """
import asyncio

async def run(agent, job):
    if agent.node == 'pw-0':
        await asyncio.sleep(0.01)  # the victim is slow: it always holds jobs when it dies
    return {'double': job['inputs'] * 2, 'node': agent.node}
"""
JOBS = 1000
MEMBERS = [f"pw-{i}" for i in range(5)]


def test_1000_jobs_over_5_members_one_killed_half_way(mosquitto: Any, agents: Any) -> None:
    procs = {name: agents.start(name, "--allow-code") for name in MEMBERS}
    victim = MEMBERS[0]
    with Fleet.connect(mosquitto.url) as fleet:
        fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in MEMBERS), timeout=30)
        for name in MEMBERS:
            fleet.spawn(name, {"name": "cruncher", "code": WORKER, "poll_interval": None, "pool": "crunch"})
        fleet.wait_for(
            lambda m: all(
                "crunch" in (m.get(n).state or {}).get("trading", {}).get("pools", []) for n in MEMBERS
            ),
            timeout=20,
        )
        killed_after: list[int] = []

        def kill_half_way() -> None:
            seen: set[str] = set()
            with MqttProbe.connect_to(mosquitto) as watch:

                def half(msg: Any) -> bool:
                    seen.add(msg.topic)
                    return len(seen) >= JOBS // 2

                watch.wait_for("pools/crunch/done/+", half, timeout=60)
                procs[victim].kill()
                killed_after.append(len(seen))

        killer = threading.Thread(target=kill_half_way)
        killer.start()
        report = fleet.pool_run("crunch", list(range(JOBS)), ack_timeout=2.0, window=100, timeout=120)
        killer.join()

    print(
        f"\npool spread over {len(MEMBERS)} members ({victim} killed after {killed_after} done): {report['spread']}"
    )
    print(f"redone {report['redone']}, late duplicates {report['duplicates']}, {report['seconds']} s")
    assert report["done"] == JOBS
    assert report["results"] == [
        {"double": i * 2, "node": r["node"]} for i, r in enumerate(report["results"])
    ]
    assert sum(report["spread"].values()) == JOBS  # each job counted once
    assert report["errors"] == 0
    assert report["redone"] >= 1  # what the victim held was done again elsewhere
    assert set(report["spread"]) == set(MEMBERS)  # everyone took a share, the victim before it died
