"""The measurements: each devfleet figure and its raw-paho floor, on the same broker.

Every function returns plain dicts; :mod:`run` assembles them. Loops are
bounded in count and time; waits are on events with timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rawmqtt import RawClient

from devfleet_agent.config_store import MemoryConfigStore
from devfleet_agent.describe import host_facts
from devfleet_agent.payloads import Descriptions, heartbeat_payload, telemetry_payload
from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_command.aio import AsyncFleet
from devfleet_command.model import FleetModel

HERE = Path(__file__).resolve().parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- helpers ---------------------------------------------------------------------------


class Child:
    """A subprocess that prints ``ready`` when it is; killed on exit."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, ready: bool = True) -> None:
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        if ready:
            self.expect("ready", 120)

    def expect(self, word: str, timeout: float) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.proc.args} exited before saying {word!r}")
            if line.strip() == word:
                return
        raise TimeoutError(f"{self.proc.args} did not say {word!r} in {timeout} s")

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def floor(kind: str, broker: Any, *args: str) -> Child:
    return Child([PY, str(HERE / "floors.py"), kind, broker.host, str(broker.port), *args])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def proc_stat(pid: int) -> tuple[float, int, int]:
    """CPU seconds (user+system), RSS bytes and peak RSS bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    rss = int(status["VmRSS"].split()[0]) * 1024
    hwm = int(status["VmHWM"].split()[0]) * 1024
    return cpu, rss, hwm


def own_rss() -> int:
    return proc_stat(os.getpid())[1]


def descriptions_for(names: list[str]) -> Iterator[tuple[str, bytes]]:
    """The retained birth of each node, built by the agent's own payload code."""
    facts = host_facts()
    store = MemoryConfigStore()
    for name in names:
        d = Descriptions(name, bd_seq=1)
        d.will()
        meta = d.meta(
            facts, commands={"ping": "Answer."}, config=store.config, signed_commands=False, started_at=1.0
        )
        yield contract.node_topic(name, "meta"), contract.encode(meta)
        yield contract.node_topic(name, "status"), contract.encode(d.status("online"))
        state = d.envelope()
        state.update(components={}, actors={})
        yield contract.node_topic(name, "state"), contract.encode(state)
        yield contract.node_topic(name, "cfg"), contract.encode(d.cfg(store))


def live_for(names: list[str]) -> Iterator[tuple[str, bytes]]:
    """A heartbeat and one sample of each metric per node."""
    for name in names:
        beat = heartbeat_payload(
            name,
            bd_seq=1,
            uptime=12.0,
            broker="127.0.0.1:1883",
            commands={"received": 0, "ok": 0, "error": 0, "duplicate": 0},
            logs={"pending": 0, "shipped": 0, "dropped": 0},
            metrics={"cpu": 3.5, "memory": 41.2, "disk": 42.0},
            agent_usage={"rss_mb": 30.1, "cpu": 0.1},
        )
        yield contract.node_topic(name, "heartbeat"), contract.encode(beat)
        for metric, value in (("cpu", 3.5), ("memory", 41.2), ("disk", 42.0)):
            yield (
                contract.node_telemetry_topic(name, metric),
                contract.encode(telemetry_payload(value, time.time())),
            )


async def _until(predicate: Any, timeout: float, step: float = 0.002) -> float:
    """Poll ``predicate`` (cheap) until true; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)
    return time.monotonic()


# ---- discovery ------------------------------------------------------------------------------


async def preload(broker: Any, names: list[str]) -> int:
    """Publish the retained births of ``names`` with a fast raw publisher; wait until the
    broker has them all (a final QoS 1 ack comes after every earlier message)."""
    pub = await RawClient("bench-preload").connect(broker.host, broker.port)
    count = 0
    for topic, payload in descriptions_for(names):
        pub.publish(topic, payload, qos=0, retain=True)
        count += 1
        if count % 500 == 0:
            await asyncio.sleep(0)
    await pub.publish_acked("bench/preloaded", b"")
    pub.close()
    return count


async def discovery(broker: Any, total: int, messages: int, repeats: int) -> dict[str, Any]:
    """Time until a fresh console's model holds ``total`` nodes, each with a status,
    versus a raw subscriber receiving the same ``messages`` retained messages."""
    ours, raw = [], []
    for _ in range(repeats):
        gc.collect()
        t0 = time.monotonic()
        fleet = AsyncFleet(broker.url, connect_timeout=120)
        await fleet.start()
        t1 = await _until(lambda f=fleet: len(f.model) >= total and all(n.status for n in f.model), 120)
        ours.append(t1 - t0)
        await fleet.close()

        del fleet
        gc.collect()  # the console's model is garbage now: collect it outside the floor's time
        got = [0]

        def count(topic: str, payload: bytes, retain: bool, got: list[int] = got) -> None:
            got[0] += 1

        t0 = time.monotonic()
        sub = RawClient(f"floor-disc-{contract.new_id()[:8]}", count)
        await sub.connect(broker.host, broker.port)
        sub.client.subscribe(contract.subscriptions_for_console())
        t1 = await _until(lambda got=got: got[0] >= messages, 120)
        raw.append(t1 - t0)
        sub.close()
    return {"seconds": statistics.median(ours), "floor_seconds": statistics.median(raw), "nodes": total}


# ---- fan-out ----------------------------------------------------------------------------------


async def fanout(broker: Any, nodes: int, repeats: int) -> dict[str, Any]:
    """A fleet-wide ping to ``nodes`` simulated nodes until every ``ok`` receipt is in,
    versus ``nodes`` raw clients each answering twice (the same message count)."""
    ours, _ = await fanout_ours(broker, nodes, repeats)
    raw = await fanout_floor(broker, nodes, repeats)
    return {"seconds": statistics.median(ours), "floor_seconds": statistics.median(raw), "nodes": nodes}


async def fanout_ours(
    broker: Any, nodes: int, repeats: int, *, sim_args: tuple[str, ...] = (), timeout: float = 60
) -> tuple[list[float], float]:
    """``devfleet-sim`` with ``nodes`` nodes (more flags in ``sim_args``) and a console's
    ``broadcast('ping')`` ``repeats`` times: the seconds of each, and the seconds until
    the console saw every node online."""
    sim = Child(
        [PY, "-m", "devfleet_agent.sim.cli", "--broker", broker.url, "--nodes", str(nodes), "--prefix", "fan",
         "--heartbeat-interval", "3600", "--telemetry-interval", "3600", "--report", "5", "--json", *sim_args],
        ready=False,
    )  # fmt: skip
    ours: list[float] = []
    try:
        t_up = time.monotonic()
        async with AsyncFleet.connect(broker.url, connect_timeout=timeout) as fleet:
            await fleet.wait_for(
                lambda m: sum(n.online for n in m if n.name.startswith("fan-")) >= nodes, 2 * timeout
            )
            up = time.monotonic() - t_up
            for _ in range(repeats):
                t0 = time.monotonic()
                bc = await fleet.broadcast("ping", timeout=timeout)
                await bc.wait()
                ours.append(time.monotonic() - t0)
                if not bc.ok:
                    raise RuntimeError(f"fan-out incomplete: {len(bc.succeeded)}/{nodes}")
    finally:
        # --processes: the parent passes SIGTERM on and waits for its workers (close()'s
        # second SIGTERM, 5 s on, kills them), so none outlives close().
        sim.proc.terminate()
        sim.close()
    return ours, up


async def fanout_floor(broker: Any, nodes: int, repeats: int, timeout: float = 120) -> list[float]:
    """``nodes`` raw clients (one process) each answering a fleet request twice at QoS 1:
    seconds until every second answer arrived, ``repeats`` times."""
    raw: list[float] = []
    with floor("fleet", broker, str(nodes)):
        got = [0]

        def count(topic: str, payload: bytes, retain: bool, got: list[int] = got) -> None:
            if payload.startswith(b"ok"):
                got[0] += 1

        req = RawClient("floor-fan", count)
        await req.connect(broker.host, broker.port)
        await req.subscribe([("bench/rep/fan", 1)])
        body = contract.encode(Command.envelope({}, reply_to="replies/fan"))
        for _ in range(repeats):
            got[0] = 0
            t0 = time.monotonic()
            await req.publish_acked("bench/fleet", b"bench/rep/fan " + body)
            t1 = await _until(lambda got=got: got[0] >= nodes, timeout, step=0.001)
            raw.append(t1 - t0)
        req.close()
    return raw


# ---- telemetry ingestion -------------------------------------------------------------------------


async def ingestion(broker: Any, total: int, nodes: int) -> dict[str, Any]:
    """Telemetry messages per second into the console's fleet model, versus a raw
    subscriber counting them. A raw publisher process sends ``total`` QoS 0 samples."""

    async def measure(received: Any, start: Any) -> float:
        with floor("publish", broker, str(total), str(nodes)) as pub:
            await start()
            pub.say("go")
            t_first = await _until(lambda: received() > 0, 60, step=0.001)
            n_first = received()
            deadline = time.monotonic() + 120
            last_n, last_change = n_first, time.monotonic()
            while received() < total and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
                n = received()
                if n != last_n:
                    last_n, last_change = n, time.monotonic()
                elif time.monotonic() - last_change > 3:
                    break  # the broker dropped some: rate over what came
            return (received() - n_first) / max(1e-9, last_change - t_first)

    fleet = AsyncFleet(broker.url)
    ours = await measure(lambda: fleet.model.messages, fleet.start)
    samples = sum(len(n.telemetry) for n in fleet.model)
    await fleet.close()
    got = [0]
    sub = RawClient("floor-ingest", lambda t, p, r: got.__setitem__(0, got[0] + 1))

    async def start_raw() -> None:
        await sub.connect(broker.host, broker.port)
        await sub.subscribe(contract.subscriptions_for_console())

    raw = await measure(lambda: got[0], start_raw)
    sub.close()
    return {"rate": ours, "floor_rate": raw, "messages": total, "nodes_seen": samples}


# Fresh interpreters run as an installed console does: with its modules' bytecode cached.
# pip compiles a wheel's modules at install; the bench's editable installs get their
# __pycache__ on first import, unless PYTHONDONTWRITEBYTECODE (set in some sandboxes)
# forbids it, and then every run compiled ~20 modules from source (about 40 % of
# `devfleet --help`). The floor runs in the same environment.
_STARTUP_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run_quiet(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_STARTUP_ENV)


def _timed(args: list[str], repeats: int) -> float:
    _run_quiet(args)  # warm-up: writes the bytecode caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _run_quiet(args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def startup(repeats: int) -> dict[str, Any]:
    """Wall time of fresh interpreters running ``devfleet --help`` (the agent's import is
    timed in bench/section_agent.py)."""
    devfleet = str(Path(PY).parent / "devfleet")
    cli = [devfleet, "--help"] if os.path.exists(devfleet) else [PY, "-m", "devfleet_command.cli", "--help"]
    return {
        "help": _timed(cli, repeats),
        "floor_help": _timed(
            [PY, "-c", "import argparse; argparse.ArgumentParser(prog='x').print_help()"], repeats
        ),
    }


# ---- memory per tracked node ----------------------------------------------------------------------


def memory_per_node(nodes: int) -> dict[str, Any]:
    """Bytes the fleet model holds per node (births, a heartbeat, three samples), versus a
    raw app keeping the decoded last payload of every topic."""
    names = [f"mem-{i:05d}" for i in range(nodes)]
    messages = [*descriptions_for(names), *live_for(names)]
    now = time.time()

    def traced(build: Any) -> int:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        keep = build()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del keep
        return size

    def model() -> FleetModel:
        m = FleetModel()
        for topic, payload in messages:
            m.feed(topic, payload, False, now)
        assert len(m) == nodes
        m._topics.clear()  # the topic cache is bounded and not per-node state
        return m

    def read_model() -> FleetModel:
        m = model()
        for node in m:  # descriptions kept as received are decoded on first read
            assert node.meta is not None and node.state is not None and node.cfg is not None
        return m

    def raw() -> dict[str, Any]:
        return {topic: json.loads(payload) for topic, payload in messages}

    return {
        "bytes": traced(model) / nodes,
        "bytes_read": traced(read_model) / nodes,
        "floor_bytes": traced(raw) / nodes,
        "nodes": nodes,
    }


# ---- simulator capacity ---------------------------------------------------------------------------


async def sim_capacity(broker: Any, nodes: int, processes: int, window: float) -> dict[str, Any]:
    """``devfleet-sim`` with ``nodes`` nodes over ``processes`` processes, default
    telemetry, tracked by a console in this process: time to all online, RSS per
    node, CPU of the simulator and the console over ``window`` steady seconds."""
    sim = Child(
        [PY, "-m", "devfleet_agent.sim.cli", "--broker", broker.url, "--nodes", str(nodes), "--prefix", "cap",
         "--processes", str(processes), "--report", "2", "--json"],
        ready=False,
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        async with AsyncFleet.connect(broker.url, connect_timeout=60) as fleet:
            await fleet.wait_for(
                lambda m: sum(1 for n in m if n.online and n.name.startswith("cap-")) >= nodes, 300
            )
            online_after = time.monotonic() - t0
            pids = _children(sim.proc.pid) or [sim.proc.pid]
            before = {p: proc_stat(p)[0] for p in pids}
            c0 = sum(os.times()[:2])
            t1 = time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - t1
            console_cpu = sum(os.times()[:2]) - c0
            after = {p: proc_stat(p) for p in pids}
            tracked = sum(1 for n in fleet.model if n.online and n.name.startswith("cap-"))
            stats = _last_json(sim)
    finally:
        sim.proc.terminate()
        sim.close()
    rss = sum(a[1] for a in after.values())
    baseline = int(stats.get("baseline_rss_bytes") or 0)
    return {
        "nodes": nodes,
        "processes": processes,
        "online_seconds": online_after,
        "tracked_at_end": tracked,
        "rss_bytes": rss,
        "rss_per_node": rss / nodes,
        "rss_per_node_marginal": (rss - baseline) / nodes if baseline else None,
        "sim_cpu_percent": 100 * sum(after[p][0] - before[p] for p in pids) / elapsed,
        "console_cpu_percent": 100 * console_cpu / elapsed,
        "window": elapsed,
    }


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _last_json(child: Child) -> dict[str, Any]:
    """The simulator's latest stats line (non-blocking read of what it printed)."""
    import select

    assert child.proc.stdout is not None
    latest: dict[str, Any] = {}
    while select.select([child.proc.stdout], [], [], 0.0)[0]:
        line = child.proc.stdout.readline()
        if not line:
            break
        with contextlib.suppress(ValueError):
            latest = json.loads(line)
    return latest
