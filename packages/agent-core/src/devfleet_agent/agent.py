"""The agent: one MQTT client, the node's lifecycle, its loops and persistence.

The agent is deliberately boring: connectivity, lifecycle and persistence. What
the node says and answers on the wire (inbound routing, the versioned birth and
its repair, the built-in commands, applying a config) is the node protocol core,
:class:`~devfleet_agent.node_core.NodeCore`, which the fleet simulator uses too.
Behaviour lives in subsystems (components, dynamic actors) that plug in through
:meth:`Agent.route`, :meth:`Agent.add_provider`, :meth:`Agent.on_config` and the
dispatcher (see :class:`~devfleet_agent.services.NodeServices`).

Ordering of retained descriptions (see :mod:`devfleet_agent.payloads`): every one
carries ``session`` (the bd_seq) and ``version``, each connection takes a fresh
block of versions and its will the top of that block. The console keeps the
newest by ``(session, version)``, and the agent itself re-publishes ``online`` if
a stale will overwrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType
from typing import Any, Protocol

from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.mqtt import (
    ClientOptions,
    ConnectionRefusedFatal,
    MqttClient,
    MqttMessage,
    TlsOptions,
    Will,
)
from devfleet_base.replay import ReplayGuard
from devfleet_base.signing import DEFAULT_TTL, Verifier

from .clock import wait_event
from .command_ids import CommandMemory
from .commands import Dispatcher
from .config_store import ConfigStore
from .control_messages import PersistedSequences
from .describe import host_facts
from .logship import LogShipper
from .node_core import NodeCore
from .payloads import Descriptions, heartbeat_payload, telemetry_payload
from .sdnotify import SdNotifier
from .services import ConfigValidator, Provider, RouteHandler
from .settings import Settings
from .storage import atomic_write_json, read_json
from .supervisor import Supervisor, SupervisorEvent

__all__ = ["Agent", "RouteHandler", "Subsystem"]

log = logging.getLogger("devfleet.agent")

SIGNED_KINDS = frozenset(
    {
        "meta",
        "status",
        "state",
        "cfg",
        "heartbeat",
        "receipts",
        "inbox",
        "agents",
        "agent_heartbeat",
        "migrate_result",
    }
)
"""What a node with a signing identity signs when it publishes (``parse_topic`` kinds)."""

EXIT_CONFIG = 77
"""Exit code for a problem only the operator can fix (credentials, a certificate the
agent can never accept): the systemd unit does not restart on it (``RestartPreventExitStatus``)."""


class Subsystem(Protocol):
    """Something the agent starts after its own setup and stops before it disconnects."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Agent:
    """One node's agent.

    Args:
        settings: local settings (see :mod:`devfleet_agent.settings`).
        notifier: where to report readiness, watchdog pings and status to systemd
            (see :mod:`devfleet_agent.sdnotify`); None outside systemd.
    """

    def __init__(self, settings: Settings, *, notifier: SdNotifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or SdNotifier(None)
        self._ready_sent = False
        self.node = settings.name
        self.data_dir = settings.resolved_data_dir
        self.descriptions = Descriptions(self.node)
        self.store = ConfigStore(self.data_dir / "config")
        self.identity = settings.signing_identity()
        # One replay guard for the node, whatever the signer, persisted across restarts.
        self.guard = ReplayGuard(self.data_dir / "replay.jsonl") if self.identity is not None else None
        wactorz_key = settings.wactorz_fleet_key()
        self.dispatcher = Dispatcher(
            self.node,
            self._send_receipt,
            verifier=Verifier(self.identity.trusted, self.guard)
            if self.identity is not None and self.guard is not None
            else None,
            wactorz_key=wactorz_key,
            # Like the replay guard: a restarted node still refuses a captured Wactorz message.
            sequences=PersistedSequences(
                self.data_dir / "wactorz_sequences.json", now_us=time.time_ns() // 1000
            )
            if wactorz_key is not None
            else None,
        )
        self.logs = LogShipper(self._publish_logs, self.node)
        self.mqtt = MqttClient(
            ClientOptions(
                host=settings.broker,
                port=settings.port,
                client_id=f"devfleet-{self.node}",
                username=settings.username,
                password=settings.password,
                tls=TlsOptions(settings.tls_ca, settings.tls_cert, settings.tls_key, settings.tls_insecure)
                if settings.tls
                else None,
                protocol=settings.protocol,
                keepalive=settings.keepalive,
                fallbacks=list(settings.fallbacks),
                persistent=settings.persistent_session,
            ),
            on_message=self._on_message,
            on_connect=self._on_connect,
            will=self._make_will,
        )
        self.core = NodeCore(
            self.mqtt,
            dispatcher=self.dispatcher,
            store=self.store,
            descriptions=self.descriptions,
            facts=host_facts,
            spawn=self.spawn,
            publish=self.publish_json,
            on_applied=self._config_applied,
            signer_kid=self.identity.kid if self.identity is not None else None,
        )
        """The node protocol (inbound routing, births, built-in commands, config)."""
        self.dispatcher.register("restart", self._cmd_restart, doc="Re-execute the agent process.")
        self._config_hooks: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self._subsystems: list[Subsystem] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._wake_loops = asyncio.Event()
        self._unsent_receipts: deque[tuple[str, dict[str, Any], bytes | None]] = deque(maxlen=256)
        self.exit_code = 0
        self.restart_requested = False
        self.stop_reason = ""
        self._sampler: Any = None
        self._supervisor_listeners: list[Callable[[SupervisorEvent], object]] = []
        self.supervisor = Supervisor(on_event=self._supervisor_event)
        """The one ONE_FOR_ONE supervisor of every actor on the node (components and
        dynamic actors); subsystems name their children apart (``component:{name}``)."""

    # ---- extension points -----------------------------------------------------------

    def route(self, kind: str, handler: RouteHandler) -> None:
        """Send inbound messages whose :func:`~devfleet_base.contract.parse_topic` kind
        is ``kind`` (``spawn``, ``by_name_task``, ...) to ``handler``."""
        self.core.route(kind, handler)

    def add_provider(self, section: str, key: str, provider: Provider) -> None:
        """Contribute ``key`` to the ``meta``, ``state`` or ``heartbeat`` payload."""
        self.core.add_provider(section, key, provider)

    def on_config(self, hook: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Awaited with the whole node config at start and after every change."""
        self._config_hooks.append(hook)

    def on_supervisor_event(self, listener: Callable[[SupervisorEvent], object]) -> None:
        """Call ``listener`` with every event of :attr:`supervisor` (it may return an
        awaitable, which is awaited; each listener filters the children it owns)."""
        self._supervisor_listeners.append(listener)

    async def _supervisor_event(self, event: SupervisorEvent) -> None:
        for listener in list(self._supervisor_listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("supervisor listener %r failed", listener)

    def add_config_validator(self, validator: ConfigValidator) -> None:
        """Refuse a node config when ``validator(config)`` raises ContractError (run
        after the schema; e.g. the component host checks component settings)."""
        self.store.add_validator(validator)

    @property
    def config(self) -> Mapping[str, Any]:
        """The node config in force (read-only view)."""
        return MappingProxyType(self.store.config)

    def add_subsystem(self, subsystem: Subsystem) -> None:
        self._subsystems.append(subsystem)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task whose failure is logged, never silently lost."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def state_changed(self) -> None:
        """Publish the retained state soon (changes in one loop turn are coalesced)."""
        self.core.state_changed()

    def request_stop(self, reason: str, *, exit_code: int = 0, restart: bool = False) -> None:
        self.stop_reason = reason
        self.exit_code = exit_code
        self.restart_requested = restart
        self.core.stopping = True
        self._stop.set()

    @property
    def bd_seq(self) -> int:
        """This start's birth/death sequence number (Sparkplug's bdSeq; ``session`` on
        the wire): persisted, bumped at each start."""
        return self.descriptions.bd_seq

    @property
    def name_clash(self) -> dict[str, Any] | None:
        """Set while another live process uses this node name (shown in status and state)."""
        return self.core.name_clash

    # ---- publishing ------------------------------------------------------------------

    async def publish_json(
        self,
        topic: str,
        obj: Any,
        *,
        qos: int = 0,
        retain: bool = False,
        wait: bool = False,
        correlation: bytes | None = None,
    ) -> bool:
        """Publish ``obj`` as JSON; signed by the node when it has an identity and the
        topic is one it vouches for (:data:`SIGNED_KINDS`)."""
        return await self.mqtt.publish(
            topic,
            contract.encode(self.signed(topic, obj, retain=retain)),
            qos=qos,
            retain=retain,
            wait=wait,
            correlation=correlation,
        )

    async def publish_raw(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, wait: bool = False
    ) -> bool:
        """Publish bytes as they are (``b""`` retained clears a retained message)."""
        return await self.mqtt.publish(topic, payload, qos=qos, retain=retain, wait=wait)

    def subscription(
        self, filters: Sequence[tuple[str, int]], *, fresh: bool = False
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``[(filter, qos)]`` for an ``async with`` block (reference-counted)."""
        return self.mqtt.subscription(filters, fresh=fresh)

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        """Hold filters until :meth:`unsubscribe` (reference-counted)."""
        await self.mqtt.subscribe(filters)

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        await self.mqtt.unsubscribe(filters)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await self.mqtt.wait_connected(timeout)

    def signed(self, topic: str, obj: Any, *, retain: bool = False) -> Any:
        """``obj`` signed by this node for ``topic`` when it should be (else unchanged)."""
        if self.identity is None or not isinstance(obj, dict):
            return obj
        match = contract.parse_topic(topic)
        if match is None or match.kind not in SIGNED_KINDS:
            return obj
        return self.identity.sign(topic, obj, ttl=None if retain else DEFAULT_TTL)

    async def publish_meta(self) -> None:
        await self.core.publish_meta()

    async def _publish_logs(self, batch: dict[str, Any]) -> bool:
        if not self.mqtt.connected:
            return False
        return await self.publish_json(contract.node_topic(self.node, "logs"), batch, qos=1, wait=True)

    async def _send_receipt(self, topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
        if not await self.publish_json(topic, receipt, qos=1, correlation=correlation):
            # Offline: keep it for the next connection (bounded), so a command that was
            # accepted before the broker went away still gets its final receipt.
            if len(self._unsent_receipts) == self._unsent_receipts.maxlen:
                log.warning("receipt outbox full: dropping the oldest unsent receipt")
            self._unsent_receipts.append((topic, receipt, correlation))

    async def _flush_receipts(self) -> None:
        while self._unsent_receipts and self.mqtt.connected:
            topic, receipt, correlation = self._unsent_receipts[0]
            if not await self.publish_json(topic, receipt, qos=1, correlation=correlation):
                return
            self._unsent_receipts.popleft()

    def _make_will(self) -> Will:
        will = self.descriptions.will()
        if self.identity is None:
            return will
        payload = self.signed(will.topic, contract.decode(will.payload), retain=True)
        return Will(will.topic, contract.encode(payload), will.qos, will.retain)

    # ---- lifecycle -------------------------------------------------------------------

    def _load_persistent(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store.load()
        if self.store.recovered_from:
            log.error(
                "config on disk was damaged (%s); using version %d",
                self.store.recovered_from,
                self.store.version,
            )
        counters_path = self.data_dir / "session.json"  # file and key named before bd_seq
        try:
            counters = read_json(counters_path)
            previous = int(counters.get("session", 0)) if isinstance(counters, dict) else 0
        except (FileNotFoundError, ValueError, TypeError):
            previous = 0
        self.descriptions.bd_seq = previous + 1
        atomic_write_json(counters_path, {"session": self.bd_seq})
        self.dispatcher.memory = CommandMemory(self.data_dir / "commands.json")
        self.dispatcher.memory.load()

    async def run(self) -> int:
        """Run until stopped; return the exit code."""
        self._load_persistent()
        root = logging.getLogger()
        root.addHandler(self.logs)
        self.logs.configure(self.store.config["logs"])
        await self.core.apply_config(self.store.config)
        try:
            # The session and the loops live exactly as long as this block: stopping
            # shuts down first (subsystems, commands, the offline status), then what
            # is left of them is cancelled and the group waits for it.
            async with asyncio.TaskGroup() as lifetime:
                session = lifetime.create_task(self._run_session(), name="mqtt")
                for sub in self._subsystems:
                    try:
                        await sub.start()
                    except Exception:
                        log.exception("subsystem %s failed to start", type(sub).__name__)
                loops = [
                    lifetime.create_task(_logged(coro, name), name=name)
                    for name, coro in (
                        ("heartbeat", self._heartbeat_loop()),
                        ("telemetry", self._telemetry_loop()),
                        ("logs", self.logs.run()),
                    )
                ]
                if self.notifier.enabled:
                    loops.append(
                        lifetime.create_task(
                            _logged(self._service_loop(session), "sd_notify"), name="sd_notify"
                        )
                    )
                log.info("agent %s started (bd_seq %d)", self.node, self.bd_seq)
                await self._stop.wait()
                await self._shutdown()
                for task in (session, *loops):  # closed, but a connect attempt may linger
                    task.cancel()
        finally:
            root.removeHandler(self.logs)
        return self.exit_code

    async def _run_session(self) -> None:
        """The MQTT client until it is closed; a session that ends by itself stops
        the agent (exit :data:`EXIT_CONFIG` when only the operator can fix it)."""
        try:
            await self.mqtt.run()
        except ConnectionRefusedFatal as exc:  # reported in one line by the CLI
            self.request_stop(str(exc), exit_code=EXIT_CONFIG)
        except Exception as exc:
            log.error("background task mqtt failed", exc_info=exc)
            self.request_stop(str(exc), exit_code=3)
        else:
            if not self._stop.is_set():
                self.request_stop(self.stop_reason)

    async def _shutdown(self) -> None:
        log.info("agent %s stopping: %s", self.node, self.stop_reason or "requested")
        if self.restart_requested:
            # The process re-executes itself with the same pid: STOPPING=1 would make
            # systemd wait for an exit that never comes, then kill it. READY=1 follows.
            self.notifier.notify("STATUS=re-executing (restart command)")
        else:
            self.notifier.notify("STOPPING=1", f"STATUS=stopping: {self.stop_reason or 'requested'}")
        for sub in reversed(self._subsystems):
            try:
                await asyncio.wait_for(sub.stop(), 10.0)
            except Exception:
                log.exception("subsystem %s failed to stop", type(sub).__name__)
        await self.dispatcher.drain()
        if self.mqtt.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.logs.ship(), 2.0)
        # paho sends no will on a clean disconnect: say "offline" ourselves.
        await self.mqtt.close(
            [
                (
                    contract.node_topic(self.node, "status"),
                    contract.encode(
                        self.signed(
                            contract.node_topic(self.node, "status"),
                            self.core.status_payload("offline"),
                            retain=True,
                        )
                    ),
                    1,
                    True,
                )
            ]
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_message(self, msg: MqttMessage) -> None:
        self.core.on_message(msg)

    async def _on_connect(self) -> None:
        acked = await self.core.on_connect(wait=self.notifier.enabled and not self._ready_sent)
        if self.notifier.enabled and acked and not self._ready_sent:
            # systemd's "started" means the node is visible to the fleet, not just running.
            self._ready_sent = self.notifier.notify("READY=1", f"STATUS={self.service_status()}")
        await self._flush_receipts()
        if self.mqtt.connects > 1:
            # A reconnect (perhaps to another broker of the list): the retained heartbeat
            # still names the old broker; say the new one now, not an interval later.
            await self.publish_json(contract.node_topic(self.node, "heartbeat"), self.heartbeat_payload())

    def service_status(self) -> str:
        """One line for ``systemctl status``: the broker and the components running."""
        where = f"{self.settings.broker}:{self.settings.port}"
        link = f"connected to {where}" if self.mqtt.connected else f"connecting to {where}"
        running = sorted(
            name.split(":", 1)[1]
            for name, info in self.supervisor.children.items()
            if name.startswith("component:") and info.state == "running"
        )
        return f"{link}; components: {', '.join(running) or 'none'}"

    def session_healthy(self) -> bool:
        """Whether the MQTT client is connected, or is still trying (an attempt
        started or ended within the watchdog interval): a wedged session is not."""
        interval = self.notifier.watchdog_interval or 30.0
        return self.mqtt.connected or time.monotonic() - self.mqtt.last_activity < interval

    async def _service_loop(self, mqtt_task: asyncio.Task[Any]) -> None:
        """``WATCHDOG=1`` at half ``WatchdogSec`` while this loop runs and the session
        is healthy (a blocked event loop sends nothing, so systemd restarts it), and
        ``STATUS=`` whenever the line changes. Source: sd_watchdog_enabled(3)."""
        interval = self.notifier.watchdog_interval
        tick = interval / 2 if interval else 5.0
        last_status = ""
        while True:
            status = self.service_status()
            lines = [f"STATUS={status}"] if status != last_status else []
            if interval and not mqtt_task.done() and self.session_healthy():
                lines.append("WATCHDOG=1")
            if lines:
                self.notifier.notify(*lines)
                last_status = status
            await asyncio.sleep(tick)

    # ---- loops -----------------------------------------------------------------------

    def _sampler_or_none(self) -> Any:
        if self._sampler is None:
            from .telemetry import Sampler

            self._sampler = Sampler()
        return self._sampler

    def heartbeat_payload(self) -> dict[str, Any]:
        sampler = self._sampler_or_none()
        payload = heartbeat_payload(
            self.node,
            bd_seq=self.bd_seq,
            uptime=self.core.uptime,
            broker=self.mqtt.broker,  # the one in use: with several, it changes on failover
            commands=self.dispatcher.counts,
            logs={"pending": self.logs.pending, "shipped": self.logs.shipped, "dropped": self.logs.dropped},
            metrics=sampler.sample(),
            agent_usage=sampler.agent_usage(),
        )
        self.core.add_provided(payload, "heartbeat")
        return payload

    async def _sleep_or_wake(self, seconds: float) -> None:
        await wait_event(self._wake_loops, seconds)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.mqtt.wait_connected()
            # Retained: a console that connects between heartbeats (a one-shot `devfleet ls`)
            # sees the latest figures, and dates the node by the payload's timestamp.
            await self.publish_json(
                contract.node_topic(self.node, "heartbeat"), self.heartbeat_payload(), retain=True
            )
            await self._sleep_or_wake(self.store.config["heartbeat"]["interval"])

    async def _telemetry_loop(self) -> None:
        while True:
            section = self.store.config["telemetry"]
            if section["enabled"] and self.mqtt.connected:
                now = time.time()
                for metric, value in self._sampler_or_none().sample(section["metrics"]).items():
                    await self.publish_json(
                        contract.node_telemetry_topic(self.node, metric),
                        telemetry_payload(value, now),
                    )
            await self._sleep_or_wake(section["interval"])

    # ---- agent-only commands and config ------------------------------------------------

    async def _cmd_restart(self, cmd: Command) -> dict[str, Any]:
        # Stop after the ok receipt went out.
        asyncio.get_running_loop().call_later(0.2, lambda: self.request_stop("restart command", restart=True))
        return {"restarting": True}

    async def _config_applied(self, config: dict[str, Any]) -> None:
        """The core applied ``config`` (group subscriptions done): logs, loops, subsystems."""
        self.logs.configure(config["logs"])
        # Records below the root level are never created: let devfleet's own through
        # to the shipper (the console's stderr handler keeps its own level).
        ship_level = logging.getLevelName(config["logs"]["level"])
        ours = logging.getLogger("devfleet")
        if config["logs"]["enabled"] and ours.getEffectiveLevel() > ship_level:
            ours.setLevel(ship_level)
        self._wake_loops.set()
        self._wake_loops = asyncio.Event()
        for hook in self._config_hooks:
            try:
                await hook(config)
            except Exception:
                log.exception("config hook %r failed", hook)


async def _logged(coro: Coroutine[Any, Any, Any], name: str) -> None:
    """Run a lifetime loop; its failure is logged, and the agent keeps running."""
    try:
        await coro
    except Exception:
        log.exception("background task %s failed", name)
