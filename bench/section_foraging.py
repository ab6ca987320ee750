"""The foraging example under load: 10 robot nodes with 10 Hz control loops, and the swarm's yield.

- A real run (:mod:`devfleet_foraging.runner`, headless, no kill): 10 robot
  agents (ros + foraging + ledstrip each), the arena ticking at 10 Hz behind one
  rosbridge endpoint per robot. Measured: tick-to-``cmd_vel`` latency (from the
  arena publishing a robot's ``/odom`` to that robot's ``cmd_vel`` arriving,
  through rosbridge, the ros component and the foraging component), ticks a
  robot did not answer before the next one, and each robot agent's CPU and RSS
  over the foraging window.
- Items per minute for 2, 4, 6 and 10 robots with the same seed, from the
  in-process swarm (:func:`devfleet_foraging.sim.simulate`: the same controller
  and arena without the network, so the figure is exact for the seed): more
  robots collect more until they get in each other's way (interference).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import proc_stat

TITLE = "Foraging: 10 Hz control loops on robot nodes, items per minute against swarm size"

SEED = 1


async def _nodes(robots: int, duration: float, log: Any) -> dict[str, Any]:
    from devfleet_foraging.runner import Run, RunOptions

    from devfleet_base.testing.broker import MosquittoBroker

    with tempfile.TemporaryDirectory(prefix="bench-foraging-") as tmp, MosquittoBroker() as broker:
        options = RunOptions(
            robots=robots, duration=duration, seed=SEED, headless=True, out=Path(tmp), kill=False
        )
        run = Run(options, broker.url, broker.host, broker.port, say=lambda line: None)
        main = asyncio.create_task(run.main(None))
        await asyncio.wait(
            {main, asyncio.create_task(run.started.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if main.done():
            main.result()  # raises what went wrong
        pids = [agent.pid for agent in run.agents]
        before = {pid: proc_stat(pid)[0] for pid in pids}
        t0 = time.perf_counter()
        links = run.bridge.links
        counts = {name: (len(link.latencies), link.skipped) for name, link in links.items()}
        await run.ended.wait()
        window = time.perf_counter() - t0
        cpu = {pid: (proc_stat(pid)[0] - before[pid]) / window * 100 for pid in pids}
        rss = {pid: proc_stat(pid)[1] for pid in pids}
        latencies = [x for name, link in links.items() for x in link.latencies[counts[name][0] :]]
        skipped = sum(link.skipped - counts[name][1] for name, link in links.items())
        result = await main
        log(f"foraging: {robots} nodes, {len(latencies)} ticks answered, {skipped} skipped")
        return {
            "robots": robots,
            "window_s": round(window, 2),
            "latencies": latencies,
            "skipped": skipped,
            "late_ticks": run.bridge.late_ticks,
            "cpu_percent": sorted(cpu.values()),
            "rss": sorted(rss.values()),
            "items": result.summary["items"],
            "items_per_minute": result.summary["items_per_minute"],
        }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    from devfleet_foraging.sim import simulate

    robots, duration = (2, 4.0) if quick else (10, 60.0)
    nodes = await _nodes(robots, duration, log)
    lat = nodes["latencies"]
    rows = [
        row(f"tick -> cmd_vel p50, {robots} robot nodes at 10 Hz", _pct(lat, 0.5) * 1000, "ms", None),
        row(
            f"tick -> cmd_vel p99, {robots} robot nodes at 10 Hz",
            _pct(lat, 0.99) * 1000,
            "ms",
            None,
            target="<= 50 ms",
        ),
        row(
            f"skipped ticks, {robots} robot nodes, {len(lat)} ticks",
            nodes["skipped"],
            "ticks",
            None,
            target="0",
        ),
        row(
            "CPU per robot node (ros + foraging + ledstrip), median",
            _pct(nodes["cpu_percent"], 0.5),
            "% of a core",
            None,
        ),
        row("RSS per robot node, median", _pct(nodes["rss"], 0.5) / 2**20, "MiB", None),
        row(
            f"items/min, {robots} robot nodes (real run, seed {SEED})",
            nodes["items_per_minute"],
            "items/min",
            None,
            lower_is_better=False,
        ),
    ]
    seconds = 60.0 if quick else 600.0
    swarm = {}
    for n in (2, 4, 6, 10):
        s = simulate(n, seconds, SEED)
        swarm[n] = {k: v for k, v in s.items() if k != "arena"}
        rows.append(
            row(
                f"items/min, {n} robots (in-process swarm, seed {SEED}, {seconds / 60:g} simulated min)",
                s["items_per_minute"],
                "items/min",
                None,
                lower_is_better=False,
            )
        )
    details = {k: v for k, v in nodes.items() if k != "latencies"}
    details["latency_ms"] = {
        "p50": _pct(lat, 0.5) * 1000,
        "p99": _pct(lat, 0.99) * 1000,
        "max": max(lat, default=0) * 1000,
    }
    details["swarm"] = swarm
    return {"rows": rows, "details": details}
