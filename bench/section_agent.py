"""The agent's own figures (issue 20): command round trip, where its time goes, idle
footprint beside the Wactorz packaged runner, and import time.

Round trip: the devfleet agent and the raw floor responder run side by side the
whole time, and the measurement alternates short blocks (25) of devfleet and floor
round trips (each block's order flipped), so a burst of load from the other
engineers on this machine hits both alike (blocks of 250 let one burst land on one
side and decide its p99). Thousands of round trips per side give a p99 that holds
still between runs. A second agent with timing probes (``bench/hops.py``) gives the
per-hop table; its figures are not the headline ones (the probes cost a little).

Footprint: ``devfleet-agent`` (default config), ``wactorz-node`` (the Wactorz
packaged runner from PyPI, installed in the bench venv only: heartbeats, an MQTT
session, psutil metrics) and the bare paho + psutil floor idle side by side on one
broker over the same window; RSS and CPU of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hops
from measure import PY, Child, _timed, _until, floor, pct, proc_stat
from rawmqtt import RawClient

from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.testing.broker import MosquittoBroker
from devfleet_command.aio import AsyncFleet

TITLE = "agent: command round trip (interleaved with its floor), hop breakdown, idle footprint beside Wactorz"

HERE = Path(__file__).resolve().parent
FULL = {"rtt_blocks": 200, "rtt_block": 25, "rtt_warmup": 200, "hop_calls": 2000, "idle_window": 60.0,
        "import_repeats": 9}  # fmt: skip
QUICK = {"rtt_blocks": 2, "rtt_block": 15, "rtt_warmup": 10, "hop_calls": 30, "idle_window": 3.0,
         "import_repeats": 2}  # fmt: skip
BROKER_CONFIG = ["max_queued_messages 0", "max_inflight_messages 0"]


def _agent_args(broker: Any, name: str, data: Path) -> list[str]:
    return ["--broker", broker.host, "--port", str(broker.port), "--name", name, "--data-dir", str(data),
            "--loglevel", "WARNING"]  # fmt: skip


class _Floor:
    """The raw requester of the round-trip floor (the responder is ``floors.py echo``)."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.client = RawClient("floor-requester", lambda t, p, r: self.replies.put_nowait(p))
        self.body = b"bench/rep/floor " + contract.encode(Command.envelope({}, reply_to="replies/floor"))

    async def start(self, broker: Any) -> None:
        await self.client.connect(broker.host, broker.port)
        await self.client.subscribe([("bench/rep/floor", 1)])

    async def once(self) -> None:
        self.client.publish("bench/req/0", self.body, qos=1)
        while not (await asyncio.wait_for(self.replies.get(), 10)).startswith(b"ok"):
            pass  # the accepted, then the ok


async def round_trip(broker: Any, blocks: int, per_block: int, warmup: int) -> dict[str, Any]:
    """``blocks`` × ``per_block`` round trips each of devfleet (``AsyncFleet.call(node,
    'ping')`` to a real agent process) and the floor, alternated block by block."""
    data = Path(tempfile.mkdtemp(prefix="devfleet-bench-agent-"))
    agent = Child([PY, "-m", "devfleet_agent", *_agent_args(broker, "rtt", data)], ready=False)
    responder = floor("echo", broker)
    ours: list[float] = []
    raw: list[float] = []
    raw_floor = _Floor()
    try:
        async with AsyncFleet.connect(broker.url) as fleet:
            await fleet.wait_for(lambda m: (n := m.get("rtt")) is not None and n.online, 30)
            await raw_floor.start(broker)

            async def devfleet_once() -> None:
                await fleet.call("rtt", "ping", timeout=10)

            for _ in range(warmup):
                await devfleet_once()
                await raw_floor.once()
            # What the benchmark process built before (other sections) is not the console's
            # heap: keep the collector from walking it on every full collection.
            gc.collect()
            gc.freeze()
            for block in range(blocks):
                order = [(devfleet_once, ours), (raw_floor.once, raw)]
                for fn, out in order if block % 2 == 0 else order[::-1]:
                    for _ in range(per_block):
                        t0 = time.perf_counter()
                        await fn()
                        out.append(time.perf_counter() - t0)
            gc.unfreeze()
            nodelay = {
                "console": _own_nodelay(fleet),
                "agent": _nodelay_of(agent.proc.pid),
                "floor responder": _nodelay_of(responder.proc.pid),
            }
        raw_floor.client.close()
    finally:
        agent.proc.terminate()
        agent.close()
        responder.close()
        shutil.rmtree(data, ignore_errors=True)
    return {
        "p50": statistics.median(ours),
        "p99": pct(ours, 0.99),
        "p999": pct(ours, 0.999),
        "floor_p50": statistics.median(raw),
        "floor_p99": pct(raw, 0.99),
        "floor_p999": pct(raw, 0.999),
        "count": len(ours),
        "blocks": blocks,
        "block_p50": [statistics.median(ours[i : i + per_block]) for i in range(0, len(ours), per_block)],
        "floor_block_p50": [statistics.median(raw[i : i + per_block]) for i in range(0, len(raw), per_block)],
        "tcp_nodelay": nodelay,
    }


def _own_nodelay(fleet: AsyncFleet) -> list[bool]:
    sock = fleet.mqtt._sock
    if sock is None:
        return []
    import socket

    return [bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))]


def _nodelay_of(pid: int) -> list[bool] | str:
    try:
        return hops.nodelay(pid)
    except OSError as exc:
        return f"not readable: {exc}"


async def hop_breakdown(broker: Any, calls: int, warmup: int) -> dict[str, Any]:
    """``calls`` round trips to an agent with timing probes; the per-hop table."""
    data = Path(tempfile.mkdtemp(prefix="devfleet-bench-hops-"))
    out = data / "agent-marks.json"
    agent = Child([PY, str(HERE / "hops.py"), "agent", str(out), "--", *_agent_args(broker, "hops", data / "d")],
                  ready=False)  # fmt: skip
    probe = hops.Probe()
    spans: list[tuple[int, int]] = []
    hops.console_probe(probe)  # before connecting: paho's callbacks are bound then
    try:
        async with AsyncFleet.connect(broker.url) as fleet:
            await fleet.wait_for(lambda m: (n := m.get("hops")) is not None and n.online, 30)
            for _ in range(warmup):
                await fleet.call("hops", "ping", timeout=10)
            gc.collect()
            gc.freeze()
            try:
                for _ in range(calls):
                    t0 = hops.now()
                    await fleet.call("hops", "ping", timeout=10)
                    spans.append((t0, hops.now()))
            finally:
                gc.unfreeze()
    finally:
        probe.undo()
        agent.proc.terminate()
        agent.close()
    try:
        import json

        agent_marks = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"the probed agent left no marks: {exc}"}
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return hops.analyse(probe.dump(), agent_marks, spans)


# ---- footprint beside Wactorz ---------------------------------------------------------------------


def _wactorz_node() -> str | None:
    here = Path(PY).with_name("wactorz-node")
    return str(here) if here.exists() else shutil.which("wactorz-node")


def _start_wactorz(exe: str, broker: Any, root: Path) -> subprocess.Popen[bytes]:
    """``wactorz-node`` with a HOME of its own (its state lives under ~/wactorz), as
    tests/interop starts it."""
    home = root / "wactorz-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WACTORZ_", "MQTT_", "AGENTFLOW_"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    argv = [exe, "--node", "idle-wactorz", "--mqtt-broker", broker.host, "--mqtt-port", str(broker.port)]
    with (root / "wactorz.log").open("wb") as log:
        return subprocess.Popen([*argv, "--loglevel", "WARNING"], cwd=home, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip


async def footprint(broker: Any, window: float) -> dict[str, Any]:
    """devfleet-agent, wactorz-node and the bare paho floor idling side by side."""
    root = Path(tempfile.mkdtemp(prefix="devfleet-bench-idle-"))
    procs: dict[str, subprocess.Popen[Any] | Child] = {}
    agent = Child([PY, "-m", "devfleet_agent", *_agent_args(broker, "idle", root / "agent")], ready=False)
    procs["devfleet"] = agent
    bare = floor("agent", broker, "idle-floor")
    procs["floor"] = bare
    wactorz_bin = _wactorz_node()
    wactorz: subprocess.Popen[bytes] | None = None
    wactorz_why = ""
    if wactorz_bin is None:
        wactorz_why = "wactorz-node is not installed in this venv (the nox bench session installs it)"
    else:
        wactorz = _start_wactorz(wactorz_bin, broker, root)
    try:
        seen: set[str] = set()
        sub = RawClient("bench-idle", lambda t, p, r: seen.add(t))
        await sub.connect(broker.host, broker.port)
        await sub.subscribe([("nodes/idle/heartbeat", 0), ("nodes/idle-wactorz/heartbeat", 0)])
        await _until(lambda: "nodes/idle/heartbeat" in seen, 60, step=0.05)  # up, sampler primed
        if wactorz is not None:
            try:
                await _until(
                    lambda: "nodes/idle-wactorz/heartbeat" in seen or wactorz.poll() is not None, 60, 0.05
                )
            except TimeoutError:
                wactorz_why = "wactorz-node sent no heartbeat within 60 s"
            if wactorz.poll() is not None:
                tail = (root / "wactorz.log").read_text(errors="replace").splitlines()[-5:]
                wactorz_why = f"wactorz-node exited ({wactorz.returncode}): {' | '.join(tail)}"
        sub.close()
        await asyncio.sleep(2.0)  # let the start-up bursts settle before the window opens
        pids = {"devfleet": agent.proc.pid, "floor": bare.proc.pid}
        if wactorz is not None and not wactorz_why:
            pids["wactorz"] = wactorz.pid
        before = {k: proc_stat(p)[0] for k, p in pids.items()}
        t0 = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - t0
        after = {k: proc_stat(p) for k, p in pids.items()}
        heartbeats = sorted(seen)
    finally:
        agent.proc.terminate()
        agent.close()
        bare.proc.terminate()
        bare.close()
        if wactorz is not None and wactorz.poll() is None:
            wactorz.terminate()
            try:
                wactorz.wait(15)
            except subprocess.TimeoutExpired:
                wactorz.kill()
                wactorz.wait()
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {"window": elapsed, "heartbeat_topics": heartbeats}
    for k in pids:
        result[k] = {
            "rss": after[k][1],
            "peak_rss": after[k][2],
            "cpu_percent": 100 * (after[k][0] - before[k]) / elapsed,
        }
    if wactorz_why:
        result["wactorz_missing"] = wactorz_why
    return result


def startup(repeats: int) -> dict[str, Any]:
    return {
        "agent_import": _timed([PY, "-c", "import devfleet_agent.agent"], repeats),
        "floor_agent_import": _timed([PY, "-c", "import paho.mqtt.client, psutil"], repeats),
        "cli_import": _timed([PY, "-c", "import devfleet_agent.cli, devfleet_agent.wiring"], repeats),
    }


# ---- the section -------------------------------------------------------------------------------


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    with MosquittoBroker(extra_config=BROKER_CONFIG) as broker:
        log(f"round trip: {sizes['rtt_blocks']} × {sizes['rtt_block']} each, devfleet and floor alternated")
        rt = await round_trip(broker, sizes["rtt_blocks"], sizes["rtt_block"], sizes["rtt_warmup"])
        details["round_trip"] = rt
        rows.append(row("command round trip p50 (console → agent → ok receipt)", rt["p50"] * 1e3, "ms",
                        rt["floor_p50"] * 1e3, target="≤ 1.2×"))  # fmt: skip
        rows.append(
            row("command round trip p99", rt["p99"] * 1e3, "ms", rt["floor_p99"] * 1e3, target="≤ 1.2×")
        )
        log(f"hop breakdown over {sizes['hop_calls']} probed round trips")
        details["hops"] = await hop_breakdown(broker, sizes["hop_calls"], sizes["rtt_warmup"])
    with MosquittoBroker(extra_config=BROKER_CONFIG) as broker:
        log(f"idle footprint over {sizes['idle_window']:.0f} s: devfleet-agent, wactorz-node, bare paho")
        fp = await footprint(broker, sizes["idle_window"])
        details["footprint"] = fp
        ours, bare, peer = fp["devfleet"], fp["floor"], fp.get("wactorz")
        if peer is not None:
            rows.append(row("agent idle RSS beside the Wactorz packaged runner (`wactorz-node`, same job, same window)",
                            ours["rss"] / 2**20, "MB", peer["rss"] / 2**20, target="< 1.0×"))  # fmt: skip
            rows.append(row("agent idle CPU beside `wactorz-node`", ours["cpu_percent"], "%",
                            peer["cpu_percent"] or None, target="≤ 0.5 %"))  # fmt: skip
        else:
            log(f"no Wactorz peer: {fp.get('wactorz_missing')}; the bare paho floor stands in")
        rows.append(row("agent idle RSS (floor: bare paho + psutil, same window)", ours["rss"] / 2**20, "MB",
                        bare["rss"] / 2**20, target="≤ 40 MB"))  # fmt: skip
        if peer is None:
            rows.append(row("agent idle CPU (floor: bare paho + psutil)", ours["cpu_percent"], "%",
                            bare["cpu_percent"] or None, target="≤ 0.5 %"))  # fmt: skip
    log("agent import time")
    st = startup(sizes["import_repeats"])
    details["startup"] = st
    rows.append(row("agent import (`import devfleet_agent.agent`, fresh python)", st["agent_import"] * 1e3, "ms",
                    st["floor_agent_import"] * 1e3, target="≤ 1.5×"))  # fmt: skip
    return {"rows": rows, "details": details}


async def _main() -> None:
    """``python bench/section_agent.py [--quick]``: run the section alone, print JSON."""
    import json

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    from run import _row

    out = await run("--quick" in sys.argv, log, _row)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
