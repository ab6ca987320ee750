"""One simulated node: the agent's protocol code without the agent's host.

A :class:`SimNode` speaks the whole contract through the code the real agent
uses: :class:`~devfleet_base.mqtt.MqttSession` for the connection (will,
re-subscribe, TCP_NODELAY), :class:`~devfleet_agent.payloads.Descriptions` for
the versioned birth and the will, the agent's
:class:`~devfleet_agent.commands.Dispatcher` for envelopes, receipts and
at-most-once, and a :class:`~devfleet_agent.config_store.MemoryConfigStore`
for versioned config with optimistic concurrency.

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
from devfleet_base.mqtt import Inbound, MqttSession, SessionOptions

from ..commands import Dispatcher
from ..config_store import MemoryConfigStore, configure_arguments
from ..logship import LogShipper
from ..payloads import Descriptions, heartbeat_payload, judge_own_status, telemetry_payload

__all__ = ["NodeBehaviour", "SimNode", "spawn"]

log = logging.getLogger("devfleet.sim")

_BACKGROUND: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping a reference until it is done
    (the loop holds tasks only weakly); a failure is logged."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_background_done)
    return task


def _background_done(task: asyncio.Task[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("simulated node task failed", exc_info=task.exception())


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
        "descriptions",
        "dispatcher",
        "facts",
        "host",
        "keepalive",
        "logs",
        "name",
        "next_heartbeat",
        "next_telemetry",
        "port",
        "protocol",
        "rng",
        "session",
        "started_at",
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
        self.descriptions = Descriptions(name, session=1)
        self.store = MemoryConfigStore()
        self.store.config = default_config  # replaced (never mutated) by apply()
        self.dispatcher = Dispatcher(name, self._send_receipt)
        self.dispatcher.register("ping", self._cmd_ping, doc="Answer with uptime and session.", readonly=True)
        self.dispatcher.register(
            "rebirth", self._cmd_rebirth, doc="Publish every retained description again.", readonly=True
        )
        self.dispatcher.register(
            "configure", self._cmd_configure, doc="Change the node config (set, replace, rollback_to)."
        )
        self.dispatcher.register(
            "config_get", self._cmd_config_get, doc="Return the config and kept versions.", readonly=True
        )
        #: Simulated component distributions: name → version (no pip, no code).
        self.components: dict[str, str] = dict(components or {})
        self.components_at_start = dict(self.components)
        self.dispatcher.register("install", self._cmd_install, doc="Install a simulated component: {spec}.")
        self.dispatcher.register("upgrade", self._cmd_install, doc="Upgrade a simulated component: {spec}.")
        self.dispatcher.register(
            "uninstall", self._cmd_uninstall, doc="Remove a simulated component: {spec}."
        )
        self.logs: LogShipper | None = None
        self.started_at = time.time()
        self.next_heartbeat = 0.0
        self.next_telemetry = 0.0
        self.commands_seen = 0
        self.task: asyncio.Task[None] | None = None
        self.session = self._new_session()

    def _new_session(self) -> MqttSession:
        return MqttSession(
            SessionOptions(
                host=self.host,
                port=self.port,
                client_id=f"devfleet-sim-{self.name}",
                protocol=self.protocol,
                keepalive=self.keepalive,
                subscriptions=contract.subscriptions_for_node(
                    self.name, tuple(self.store.config.get("groups", []))
                ),
            ),
            on_message=self._on_message,
            on_connect=self.publish_birth,
            will=self.descriptions.will,
        )

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the node's session is up."""
        return self.session.connected

    def start(self) -> asyncio.Task[None]:
        """Start connecting (and staying connected) on the running loop."""
        self.started_at = time.time()
        self.task = asyncio.ensure_future(self.session.run())
        self.task.add_done_callback(self._run_done)
        return self.task

    def _run_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("node %s: %s", self.name, task.exception())

    async def stop(self) -> None:
        """Stop cleanly: retained ``offline``, then DISCONNECT (no will)."""
        await self.session.close(
            [
                (
                    contract.node_topic(self.name, "status"),
                    contract.encode(self.descriptions.status("offline")),
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
        self.session.abort()

    def restart(self) -> asyncio.Task[None]:
        """Come back after a crash as a restarted agent would: next session counter,
        the same (persisted) config and command id memory (the agent keeps it on disk)."""
        self.descriptions.session += 1
        self.descriptions.version = 0
        self.dispatcher = _fresh_dispatcher(self.dispatcher, self._send_receipt)
        self.session = self._new_session()
        return self.start()

    # ---- publishing --------------------------------------------------------------------

    async def _publish(self, topic: str, obj: Any, *, qos: int = 0, retain: bool = False) -> bool:
        return await self.session.publish(topic, contract.encode(obj), qos=qos, retain=retain)

    async def _publish_meta(self) -> None:
        meta = self.descriptions.meta(
            self.facts,
            commands=self.dispatcher.verbs(),
            config=self.store.config,
            signed_commands=False,
            started_at=self.started_at,
        )
        await self._publish(contract.node_topic(self.name, "meta"), meta, qos=1, retain=True)

    async def publish_birth(self) -> None:
        """Publish meta, status online, state and cfg (retained, QoS 1)."""
        d = self.descriptions
        await self._publish_meta()
        await self._publish(contract.node_topic(self.name, "status"), d.status("online"), qos=1, retain=True)
        await self.publish_state()
        await self._publish(contract.node_topic(self.name, "cfg"), d.cfg(self.store), qos=1, retain=True)

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
        state = self.descriptions.envelope()
        state["components"] = self.component_states()
        state["actors"] = {}
        await self._publish(contract.node_topic(self.name, "state"), state, qos=1, retain=True)

    def metrics(self) -> dict[str, float]:
        """Synthetic CPU, memory and disk percentages."""
        r = self.rng.random()
        return {"cpu": round(2 + 30 * r * r, 1), "memory": round(35 + 10 * r, 1), "disk": 42.0}

    async def heartbeat(self) -> None:
        """Publish one heartbeat."""
        logs = self.logs
        payload = heartbeat_payload(
            self.name,
            session=self.descriptions.session,
            uptime=time.time() - self.started_at,
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
        return await self.session.publish(
            contract.node_topic(self.name, "logs"), contract.encode(batch), qos=1, wait=True
        )

    async def _send_receipt(self, topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
        await self.session.publish(topic, contract.encode(receipt), qos=1, correlation=correlation)

    # ---- inbound -----------------------------------------------------------------------

    def _on_message(self, msg: Inbound) -> None:
        match = contract.parse_topic(msg.topic)
        if match is None:
            return
        if match.kind == "cmd":
            self.commands_seen += 1
            if self.behaviour.silent:
                return
            if msg.retain and msg.payload:  # a retained command would run on every reconnect
                spawn(self.session.publish(msg.topic, b"", qos=1, retain=True))
            spawn(
                self.dispatcher.handle(
                    msg.topic,
                    match,
                    msg.payload,
                    response_topic=msg.response_topic,
                    correlation=msg.correlation,
                    retained=msg.retain,
                )
            )
        elif match.kind == "cfg_desired" and msg.payload:
            spawn(self._on_desired(msg))
        elif match.kind == "status" and match.node == self.name:
            self._on_own_status(msg)

    def _on_own_status(self, msg: Inbound) -> None:
        try:
            payload = contract.decode(msg.payload) if msg.payload else None
        except ContractError:
            payload = None
        verdict = judge_own_status(
            payload, retained=msg.retain, instance=self.descriptions.instance, started_at=self.started_at
        )
        if verdict.action == "clash" and not self.session.reconnect_floor:
            # Another process simulates this node name: back off as the agent does.
            log.error("another process uses the node name %r; backing off", self.name)
            self.session.reconnect_floor = 30.0
        elif verdict.action == "rebirth" and self.connected:
            spawn(self.publish_birth())  # a stale will, a purge or junk replaced our birth

    async def _on_desired(self, msg: Inbound) -> None:
        try:
            command = Command.from_wire("configure", contract.decode(msg.payload))
        except ContractError:
            return
        if command.id == self.store.applied_id:
            return
        match = TopicMatch("cmd", node=self.name, verb="configure", scope="node")
        await self.dispatcher.handle(msg.topic, match, msg.payload)

    # ---- commands ----------------------------------------------------------------------

    async def _slow(self) -> None:
        if self.behaviour.reply_delay > 0:
            await asyncio.sleep(self.behaviour.reply_delay)

    async def _cmd_ping(self, cmd: Command) -> dict[str, Any]:
        await self._slow()
        return {
            "pong": True,
            "node": self.name,
            "session": self.descriptions.session,
            "uptime": round(time.time() - self.started_at, 3),
        }

    async def _cmd_rebirth(self, cmd: Command) -> dict[str, Any]:
        await self._slow()
        await self.publish_birth()
        return {"republished": list(contract.NODE_DESCRIPTIONS)}

    async def _cmd_config_get(self, cmd: Command) -> dict[str, Any]:
        await self._slow()
        return {
            "config_version": self.store.version,
            "config": self.store.config,
            "kept_versions": self.store.versions(),
        }

    async def _cmd_configure(self, cmd: Command) -> dict[str, Any]:
        await self._slow()
        kwargs = configure_arguments(cmd.args)
        groups_before = list(self.store.config.get("groups", []))
        try:
            self.store.apply(**kwargs, applied_id=cmd.id)
        except DevfleetError as exc:
            error = {"id": cmd.id, **exc.to_wire()}
            self.log(logging.WARNING, f"configure {cmd.id} refused: {exc.message}")
            await self._publish(
                contract.node_topic(self.name, "cfg"),
                self.descriptions.cfg(self.store, error),
                qos=1,
                retain=True,
            )
            raise
        self.log(logging.INFO, f"config version {self.store.version} applied (command {cmd.id})")
        await self._publish(
            contract.node_topic(self.name, "cfg"), self.descriptions.cfg(self.store), qos=1, retain=True
        )
        groups = list(self.store.config.get("groups", []))
        if groups != groups_before:
            await self.session.unsubscribe(
                [f for f, _ in self.session.options.subscriptions if f.startswith("groups/")]
            )
            await self.session.subscribe(contract.subscriptions_for_node(self.name, tuple(groups)))
            await self._publish_meta()
        return {"config_version": self.store.version}

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


def _fresh_dispatcher(old: Dispatcher, send: Any) -> Dispatcher:
    fresh = Dispatcher(old.node, send, memory=old.memory)
    for verb, route in old._routes.items():
        fresh.register(verb, route.handler, doc=route.doc, readonly=route.readonly)
    return fresh
