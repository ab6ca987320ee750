"""Many simulated nodes on one event loop: staggered connects, one scheduler, chaos.

One :class:`SimFleet` holds thousands of :class:`~devfleet_agent.sim.node.SimNode`
on the running asyncio loop (epoll: paho's own ``select()`` loop dies past
1,024 descriptors). Costs are kept per fleet, not per node:

- connects are staggered (``connect_rate`` per second, at most
  ``connect_concurrency`` waiting for their CONNACK): mosquitto and the loop
  choke on thousands of simultaneous CONNECTs;
- one scheduler task publishes heartbeats, telemetry and log batches for every
  node whose time has come (no timer per node); first deadlines are spread over
  one interval so the fleet does not pulse;
- failure injection: ``fail_rate`` nodes per minute crash (the broker publishes
  their will) and restart after ``down_time`` seconds with the next bd_seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from devfleet_base.node_config import default_node_config

from ..describe import host_facts
from .node import NodeBehaviour, SimNode, spawn

__all__ = ["FleetOptions", "FleetStats", "SimFleet", "node_names"]


@dataclass(frozen=True)
class FleetOptions:
    """What to simulate.

    Attributes:
        host: broker host.
        port: broker port.
        nodes: how many nodes.
        prefix: node names are ``{prefix}-{index:05d}``.
        first: index of the first node (so processes can share a fleet).
        telemetry_interval: seconds between telemetry samples (0: the config's default).
        heartbeat_interval: seconds between heartbeats (0: the config's default).
        connect_rate: connects started per second.
        connect_concurrency: connects waiting for their CONNACK at most.
        fail_rate: nodes crashing per minute, as a fraction of the fleet (0.01: 1 %).
        down_time: seconds a crashed node stays away before it restarts.
        slow_replies: fraction of nodes whose commands take ``reply_delay`` seconds.
        reply_delay: seconds a slow node takes to answer.
        silent: fraction of nodes that never answer commands.
        components: simulated component distributions every node starts with
            (name → version), installed, upgraded and removed by commands.
        unhealthy_after_upgrade: fraction of nodes whose components turn ``failed``
            after an install or upgrade to a version they did not start with
            (see :class:`~devfleet_agent.sim.node.NodeBehaviour`).
        keepalive: MQTT keepalive seconds.
        protocol: ``auto``, ``5`` or ``3.1.1``.
        seed: random seed (which nodes are slow, silent, and when they crash).
    """

    host: str = "127.0.0.1"
    port: int = 1883
    nodes: int = 100
    prefix: str = "sim"
    first: int = 0
    telemetry_interval: float = 0.0
    heartbeat_interval: float = 0.0
    connect_rate: float = 500.0
    connect_concurrency: int = 200
    fail_rate: float = 0.0
    down_time: float = 5.0
    slow_replies: float = 0.0
    reply_delay: float = 2.0
    silent: float = 0.0
    components: tuple[tuple[str, str], ...] = ()
    unhealthy_after_upgrade: float = 0.0
    keepalive: int = 30
    protocol: str = "auto"
    seed: int = 1


@dataclass
class FleetStats:
    """What a fleet did so far (``as_dict`` is what the CLI prints as JSON)."""

    nodes: int = 0
    connected: int = 0
    connect_seconds: float | None = None
    heartbeats: int = 0
    telemetry: int = 0
    commands: int = 0
    crashes: int = 0
    restarts: int = 0
    rss_bytes: int = 0
    baseline_rss_bytes: int = 0
    cpu_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures, with RSS per node (above the process's RSS before the
        nodes were made)."""
        out = dict(self.__dict__)
        extra = self.rss_bytes - self.baseline_rss_bytes
        out["rss_per_node"] = round(extra / self.nodes) if self.nodes else None
        return out


def node_names(prefix: str, first: int, count: int) -> list[str]:
    """The node names a fleet uses: ``{prefix}-{index:05d}``."""
    return [f"{prefix}-{i:05d}" for i in range(first, first + count)]


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class SimFleet:
    """A fleet of simulated nodes on the running loop.

    Use ``async with SimFleet(options) as fleet`` (or :meth:`start`/:meth:`stop`).

    Args:
        options: what to simulate.
    """

    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        self._rng = random.Random(options.seed)
        baseline = rss_bytes()
        config = default_node_config()
        if options.telemetry_interval > 0:
            config["telemetry"]["interval"] = float(options.telemetry_interval)
        if options.heartbeat_interval > 0:
            config["heartbeat"]["interval"] = float(options.heartbeat_interval)
        facts = host_facts()
        facts["simulated"] = True
        self.nodes: dict[str, SimNode] = {}
        for i, name in enumerate(node_names(options.prefix, options.first, options.nodes)):
            roll = self._rng.random()
            if roll < options.silent:
                behaviour = NodeBehaviour(silent=True)
            elif roll < options.silent + options.slow_replies:
                behaviour = NodeBehaviour(reply_delay=options.reply_delay)
            else:
                behaviour = _NORMAL
            if options.unhealthy_after_upgrade and self._rng.random() < options.unhealthy_after_upgrade:
                behaviour = replace(behaviour, unhealthy_after_upgrade=True)
            self.nodes[name] = SimNode(
                name,
                host=options.host,
                port=options.port,
                facts=facts,
                default_config=config,
                behaviour=behaviour,
                keepalive=options.keepalive,
                protocol=options.protocol,
                seed=options.seed * 1_000_003 + options.first + i,
                components=dict(options.components),
            )
        self.stats = FleetStats(nodes=options.nodes, baseline_rss_bytes=baseline)
        self._tasks: list[asyncio.Task[Any]] = []
        self._down: dict[str, float] = {}
        self._started = 0.0
        self._all_connected = asyncio.Event()
        self._connected_once = 0
        self._connecting: set[asyncio.Task[None]] = set()

    def __iter__(self) -> Iterator[SimNode]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting every node (staggered) and the scheduler; returns at once."""
        self._started = time.monotonic()
        self._tasks.append(asyncio.ensure_future(self._connect_all()))
        self._tasks.append(asyncio.ensure_future(self._schedule()))
        if self.options.fail_rate > 0:
            self._tasks.append(asyncio.ensure_future(self._chaos()))

    async def wait_connected(self, timeout: float) -> float:
        """Wait until every node connected once; return the seconds it took.

        Raises:
            TimeoutError: not all connected within ``timeout``.
        """
        await asyncio.wait_for(self._all_connected.wait(), timeout)
        assert self.stats.connect_seconds is not None
        return self.stats.connect_seconds

    async def stop(self, concurrency: int = 500) -> None:
        """Stop every node cleanly (retained ``offline``), at most ``concurrency`` at once."""
        tasks = [*self._tasks, *self._connecting]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        sem = asyncio.Semaphore(concurrency)

        async def one(node: SimNode) -> None:
            async with sem:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(node.stop(), 10.0)

        await asyncio.gather(*(one(n) for n in self.nodes.values()))

    def crash(self, name: str) -> None:
        """Crash one node now (its will fires); it stays down until :meth:`restart`."""
        self.nodes[name].crash()
        self.stats.crashes += 1

    def restart(self, name: str) -> None:
        """Bring a crashed node back (the next bd_seq)."""
        self._down.pop(name, None)
        self.nodes[name].restart()
        self.stats.restarts += 1

    def snapshot(self) -> FleetStats:
        """Current figures (connected count, RSS, CPU)."""
        s = self.stats
        s.connected = sum(1 for n in self.nodes.values() if n.connected)
        s.commands = sum(n.commands_seen for n in self.nodes.values())
        s.rss_bytes = rss_bytes()
        t = os.times()
        s.cpu_seconds = round(t.user + t.system, 2)
        return s

    # ---- tasks -------------------------------------------------------------------------

    async def _connect_all(self) -> None:
        opts = self.options
        sem = asyncio.Semaphore(max(1, opts.connect_concurrency))
        batch_period = 0.05
        per_batch = max(1, int(opts.connect_rate * batch_period))
        pending = self._connecting

        async def one(node: SimNode) -> None:
            released = False
            try:
                await node.mqtt.wait_connected(10.0)
            except TimeoutError:
                sem.release()  # slow: let others try, keep waiting for this one
                released = True
                await node.mqtt.wait_connected(None)
            finally:
                if not released:
                    sem.release()
            self._connected_once += 1
            if self._connected_once >= len(self.nodes):
                self.stats.connect_seconds = round(time.monotonic() - self._started, 3)
                self._all_connected.set()

        nodes = list(self.nodes.values())
        for i in range(0, len(nodes), per_batch):
            began = time.monotonic()
            for node in nodes[i : i + per_batch]:
                await sem.acquire()
                node.start()
                task = asyncio.ensure_future(one(node))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(max(0.0, batch_period - (time.monotonic() - began)))
        if pending:
            await asyncio.wait(set(pending))

    async def _schedule(self, tick: float = 0.25) -> None:
        rng = self._rng
        now = time.monotonic()
        for node in self.nodes.values():
            # The first heartbeat as soon as the node is connected, as the agent does: a
            # console that starts later dates the node by it (retained) instead of waiting
            # a whole interval for proof of life. The later ones spread over one interval.
            node.next_heartbeat = 0.0
            node.next_telemetry = now + rng.random() * node.store.config["telemetry"]["interval"]
        stats = self.stats
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for node in self.nodes.values():
                if not node.connected:
                    continue
                config = node.store.config
                if now >= node.next_heartbeat:
                    spread = rng.random() if node.next_heartbeat == 0.0 else 1.0
                    node.next_heartbeat = now + spread * config["heartbeat"]["interval"]
                    await node.heartbeat()
                    stats.heartbeats += 1
                if now >= node.next_telemetry:
                    node.next_telemetry = now + config["telemetry"]["interval"]
                    await node.telemetry()
                    stats.telemetry += 1
                if node.logs is not None and node.logs.pending:
                    spawn(node.ship_logs())

    async def _chaos(self, tick: float = 1.0) -> None:
        opts = self.options
        rng = self._rng
        per_tick = opts.fail_rate * len(self.nodes) * tick / 60.0
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for name, until in list(self._down.items()):
                if now >= until:
                    self.restart(name)
            # Whole crashes this tick, plus one more with the fractional probability.
            count = int(per_tick) + (1 if rng.random() < per_tick - int(per_tick) else 0)
            up = [n for n in self.nodes.values() if n.connected and n.name not in self._down]
            for node in rng.sample(up, min(count, len(up))):
                self.crash(node.name)
                self._down[node.name] = now + opts.down_time


_NORMAL = NodeBehaviour()
