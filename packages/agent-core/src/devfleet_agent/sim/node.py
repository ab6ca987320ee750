"""One simulated node: the agent's protocol core without the agent's host.

A :class:`SimNode` speaks the whole contract through the code the real agent
uses: :class:`~devfleet_base.mqtt.MqttClient` for the connection (will,
re-subscribe, TCP_NODELAY) and the agent's node protocol core,
:class:`~devfleet_agent.node_core.NodeCore`, for inbound routing, the versioned
birth and its repair, name clashes, the built-in commands and config (with the
agent's :class:`~devfleet_agent.commands.Dispatcher` for envelopes, receipts and
at-most-once, and a :class:`~devfleet_agent.config_store.MemoryConfigStore` for
versioned config with optimistic concurrency). What it adds is its own: fake
metrics, simulated components, and fault injection (hung and slow nodes, crashes).

What it leaves out to stay cheap: psutil (metrics are synthetic), the disk
(config lives in memory), a logging handler per node (log records are put
straight into a lazily made :class:`~devfleet_agent.logship.LogShipper`), and
per-node timers (the fleet schedules heartbeats and telemetry).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from devfleet_base import contract
from devfleet_base.contract import Command, TopicMatch
from devfleet_base.errors import Code, ContractError, DevfleetError
from devfleet_base.mqtt import ClientOptions, MqttClient, MqttMessage

from ..commands import Dispatcher
from ..config_store import MemoryConfigStore
from ..logship import LogShipper
from ..node_core import NodeCore
from ..payloads import Descriptions, heartbeat_payload, telemetry_payload

__all__ = ["NodeBehaviour", "SimNode", "spawn"]

log = logging.getLogger("devfleet.sim")

_BACKGROUND: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping a reference until it is done
    (the loop holds tasks only weakly); a failure is logged."""
    # create_task, not ensure_future (its checks), and the bookkeeping inside the task
    # rather than a done callback (one more loop callback per command a node runs).
    task = asyncio.get_running_loop().create_task(_background(coro))
    _BACKGROUND.add(task)
    return task


def _spawn_named(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return spawn(coro)


async def _background(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        await coro
    except Exception:
        log.exception("simulated node task failed")
    finally:
        task = asyncio.current_task()
        if task is not None:
            _BACKGROUND.discard(task)


@dataclass(frozen=True, slots=True)
class NodeBehaviour:
    """How one simulated node misbehaves.

    Attributes:
        reply_delay: seconds a command handler takes before its ``ok`` (slow replies).
        silent: drop every command without a receipt (a hung node).
        unhealthy_after_upgrade: a component installed or upgraded to any version
            other than the one the node started with answers ``ok``, then reports
            itself ``failed`` in the node's state (a release that breaks on some
            hardware: what a staged rollout's health gate must catch). Going back
            to the starting version makes it healthy again.
    """

    reply_delay: float = 0.0
    silent: bool = False
    unhealthy_after_upgrade: bool = False


class SimNode:
    """One simulated node on a shared event loop.

    Args:
        name: the node name.
        host: broker host.
        port: broker port.
        facts: the host facts shown in ``meta`` (shared by every node of a fleet).
        default_config: the initial node config, shared until a node changes its own.
        behaviour: failure injection for this node.
        keepalive: MQTT keepalive seconds (the will fires after 1.5x of silence).
        protocol: ``auto``, ``5`` or ``3.1.1``.
    """

    __slots__ = (
        "behaviour",
        "commands_seen",
        "components",
        "components_at_start",
        "core",
        "descriptions",
        "dispatcher",
        "facts",
        "host",
        "keepalive",
        "logs",
        "mqtt",
        "name",
        "next_heartbeat",
        "next_telemetry",
        "port",
        "protocol",
        "rng",
        "store",
        "task",
    )

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        facts: dict[str, Any],
        default_config: dict[str, Any],
        behaviour: NodeBehaviour = NodeBehaviour(),
        keepalive: int = 30,
        protocol: str = "auto",
        seed: int = 0,
        components: dict[str, str] | None = None,
    ) -> None:
        self.name = contract.check_name(name, "node")
        self.host = host
        self.port = port
        self.facts = facts
        self.behaviour = behaviour
        self.keepalive = keepalive
        self.protocol = protocol
        self.rng = random.Random(seed)
        self.descriptions = Descriptions(name, bd_seq=1)
        self.store = MemoryConfigStore()
        self.store.config = default_config  # replaced (never mutated) by apply()
        self.dispatcher = Dispatcher(name, self._send_receipt)
        self.logs: LogShipper | None = None
        self.mqtt = self._new_client()
        self.core = NodeCore(
            self.mqtt,
            dispatcher=self.dispatcher,
            store=self.store,
            descriptions=self.descriptions,
            facts=self._facts,
            spawn=_spawn_named,
            on_applied=self._config_applied,
            node_log=self.log,
            admit=self._admit,
            delay=self._slow if behaviour.reply_delay > 0 else None,
        )
        self.core.add_provider("state", "components", self.component_states)
        self.core.add_provider("state", "actors", dict)
        #: Simulated component distributions: name → version (no pip, no code).
        self.components: dict[str, str] = dict(components or {})
        self.components_at_start = dict(self.components)
        self.dispatcher.register("install", self._cmd_install, doc="Install a simulated component: {spec}.")
        self.dispatcher.register("upgrade", self._cmd_install, doc="Upgrade a simulated component: {spec}.")
        self.dispatcher.register(
            "uninstall", self._cmd_uninstall, doc="Remove a simulated component: {spec}."
        )
        self.next_heartbeat = 0.0
        self.next_telemetry = 0.0
        self.commands_seen = 0
        self.task: asyncio.Task[None] | None = None

    def _new_client(self) -> MqttClient:
        return MqttClient(
            ClientOptions(
                host=self.host,
                port=self.port,
                client_id=f"devfleet-sim-{self.name}",
                protocol=self.protocol,
                keepalive=self.keepalive,
            ),
            on_message=self._on_message,
            on_connect=self._on_connect,
            will=self.descriptions.will,
        )

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the node's session is up."""
        return self.mqtt.connected

    @property
    def started_at(self) -> float:
        """When this run of the node started (Unix seconds)."""
        return self.core.started_at

    def start(self) -> asyncio.Task[None]:
        """Start connecting (and staying connected) on the running loop."""
        self.core.mark_started()
        self.task = asyncio.ensure_future(self._run())
        self.task.add_done_callback(self._run_done)
        return self.task

    async def _run(self) -> None:
        await self.core.apply_config(self.store.config)  # holds the node's subscriptions
        await self.mqtt.run()

    def _run_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("node %s: %s", self.name, task.exception())

    async def stop(self) -> None:
        """Stop cleanly: retained ``offline``, then DISCONNECT (no will)."""
        self.core.stopping = True  # our own "offline" coming back is not to be repaired
        await self.mqtt.close(
            [
                (
                    contract.node_topic(self.name, "status"),
                    contract.encode(self.core.status_payload("offline")),
                    1,
                    True,
                )
            ]
        )
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    def crash(self) -> None:
        """Drop the connection without DISCONNECT, as a crash would: the broker
        publishes the will (``lost``)."""
        self.mqtt.abort()

    def restart(self) -> asyncio.Task[None]:
        """Come back after a crash as a restarted agent would: the next bd_seq, the
        same (persisted) config and command id memory (the agent keeps it on disk)."""
        self.mqtt = self._new_client()
        self.core.restarted(self.mqtt)
        return self.start()

    # ---- publishing --------------------------------------------------------------------

    async def _publish(self, topic: str, obj: Any, *, qos: int = 0, retain: bool = False) -> bool:
        return await self.mqtt.publish(topic, contract.encode(obj), qos=qos, retain=retain)

    def _facts(self) -> dict[str, Any]:
        return self.facts

    def component_states(self) -> dict[str, Any]:
        """The ``components`` section of the state, shaped like the agent's."""
        out: dict[str, Any] = {}
        for name, version in sorted(self.components.items()):
            broken = self.behaviour.unhealthy_after_upgrade and version != self.components_at_start.get(name)
            out[name] = {
                "state": "failed" if broken else "running",
                "enabled": True,
                "version": version,
                "dist": name,
                "restarts": 0,
                "last_error": f"{name} {version} crashed at start (simulated)" if broken else None,
                "health": None,
                "reported": None,
                "since": self.started_at,
            }
        return out

    async def publish_state(self) -> None:
        """Publish the retained state (components, no actors)."""
        await self.core.publish_state()

    def metrics(self) -> dict[str, float]:
        """Synthetic CPU, memory and disk percentages."""
        r = self.rng.random()
        return {"cpu": round(2 + 30 * r * r, 1), "memory": round(35 + 10 * r, 1), "disk": 42.0}

    async def heartbeat(self) -> None:
        """Publish one heartbeat."""
        logs = self.logs
        payload = heartbeat_payload(
            self.name,
            bd_seq=self.descriptions.bd_seq,
            uptime=self.core.uptime,
            broker=f"{self.host}:{self.port}",
            commands=self.dispatcher.counts,
            logs={
                "pending": logs.pending if logs else 0,
                "shipped": logs.shipped if logs else 0,
                "dropped": logs.dropped if logs else 0,
            },
            metrics=self.metrics(),
            agent_usage={"rss_mb": 0.0, "cpu": 0.0},
        )
        await self._publish(contract.node_topic(self.name, "heartbeat"), payload, retain=True)

    async def telemetry(self) -> None:
        """Publish one sample of each metric the node's config asks for."""
        section = self.store.config["telemetry"]
        if not section["enabled"]:
            return
        now = time.time()
        values = self.metrics()
        for metric in section["metrics"]:
            await self._publish(
                contract.node_telemetry_topic(self.name, metric), telemetry_payload(values[metric], now)
            )

    def log(self, level: int, msg: str) -> None:
        """Queue one log record for the node's next log batch."""
        if self.logs is None:
            self.logs = LogShipper(self._publish_logs, self.name)
            self.logs.configure(self.store.config["logs"])
        record = logging.LogRecord("devfleet.agent", level, __file__, 0, msg, None, None)
        self.logs.emit(record)

    async def ship_logs(self) -> None:
        """Publish the queued log batches (QoS 1, acknowledged)."""
        if self.logs is not None and self.logs.pending and self.connected:
            await self.logs.ship()

    async def _publish_logs(self, batch: dict[str, Any]) -> bool:
        return await self.mqtt.publish(
            contract.node_topic(self.name, "logs"), contract.encode(batch), qos=1, wait=True
        )

    async def _send_receipt(self, topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
        await self.mqtt.publish(topic, contract.encode(receipt), qos=1, correlation=correlation)

    # ---- inbound: the core, behind the fault injection ---------------------------------

    def _on_message(self, msg: MqttMessage) -> None:
        self.core.on_message(msg)

    async def _on_connect(self) -> None:
        await self.core.on_connect()

    def _admit(self, match: TopicMatch) -> bool:
        self.commands_seen += 1
        return not self.behaviour.silent  # a hung node drops every command unanswered

    async def _slow(self) -> None:
        if self.behaviour.reply_delay > 0:
            await asyncio.sleep(self.behaviour.reply_delay)

    async def _config_applied(self, config: dict[str, Any]) -> None:
        if self.logs is not None:
            self.logs.configure(config["logs"])

    # ---- simulated components ----------------------------------------------------------

    async def _cmd_install(self, cmd: Command) -> dict[str, Any]:
        await self._slow()
        name, version = _sim_spec(cmd.args.get("spec"))
        previous = self.components.get(name)
        if version is None:
            version = previous or "1.0"
        self.components[name] = version
        self.log(logging.INFO, f"{cmd.verb} {name} {version} (was {previous})")
        await self.publish_state()
        return {
            "installed": True,
            "dist": name,
            "version": version,
            "previous": previous,
            "rolled_back": False,
        }

    async def _cmd_uninstall(self, cmd: Command) -> dict[str, Any]:
        await self._slow()
        name, _ = _sim_spec(cmd.args.get("spec"))
        version = self.components.pop(name, None)
        if version is None:
            raise DevfleetError(f"{name} is not installed", code=Code.NOT_FOUND)
        await self.publish_state()
        return {"uninstalled": True, "dist": name, "version": version, "components": [name]}


def _sim_spec(spec: Any) -> tuple[str, str | None]:
    """``name`` or ``name==version`` (all the simulator understands).

    Raises:
        DevfleetError: (``invalid``) anything else.
    """
    if not isinstance(spec, str):
        raise DevfleetError("spec must be a string", code=Code.INVALID)
    name, sep, version = spec.partition("==")
    try:
        contract.check_name(name, "component")
    except ContractError:
        raise DevfleetError(
            f"the simulator takes name or name==version, not {spec!r}", code=Code.INVALID
        ) from None
    if sep and not version:
        raise DevfleetError(f"no version in {spec!r}", code=Code.INVALID)
    return name, version if sep else None
