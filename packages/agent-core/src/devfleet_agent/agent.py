"""The agent: one MQTT session, the node's retained description, and the loops.

The agent is deliberately boring: connectivity, lifecycle and command handling.
Behaviour lives in subsystems (components, dynamic actors) that plug in through
:meth:`Agent.route`, :meth:`Agent.add_provider`, :meth:`Agent.on_config` and the
dispatcher.

Ordering of retained descriptions (see :mod:`devfleet_agent.payloads`, which
builds them for the agent and the simulator alike): every one carries
``session`` and ``version``, each connection takes a fresh block of versions and
its will the top of that block. The console keeps the newest by
``(session, version)``, and the agent itself re-publishes ``online`` if a stale
will overwrote it.
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
from devfleet_base.contract import Command, TopicMatch
from devfleet_base.errors import ContractError, DevfleetError
from devfleet_base.mqtt import ConnectionRefusedFatal, Inbound, MqttSession, SessionOptions, TlsOptions, Will
from devfleet_base.replay import ReplayGuard
from devfleet_base.signing import DEFAULT_TTL, Verifier

from .command_ids import CommandMemory
from .commands import Dispatcher
from .config_store import ConfigStore, configure_arguments
from .control_messages import PersistedSequences
from .describe import host_facts
from .logship import LogShipper
from .payloads import Descriptions, OwnStatus, heartbeat_payload, judge_own_status, telemetry_payload
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

REBIRTH_INTERVAL = 5.0
"""Seconds between two births repairing the node's own status (or asked by ``rebirth``)."""

EXIT_CONFIG = 77
"""Exit code for a problem only the operator can fix (credentials, a certificate the
agent can never accept): the systemd unit does not restart on it (``RestartPreventExitStatus``)."""
CLASH_BACKOFF = (30.0, 600.0)
"""Reconnect wait (first, most) while another process uses this node name: doubled
at every reconnect, so two such processes take the session from each other once
in minutes rather than four times a second."""
_NEVER_RETAINED = frozenset(
    {"cmd", "stop", "stop_all", "migrate", "list", "by_name_task", "restart", "restart_agent"}
)
"""Control topics whose messages must not be retained (``spawn`` may be: the node clears it)."""
CLASH_FORGET = 900.0
"""Seconds without new evidence after which a name clash is forgotten."""


def _clash_fields(other: dict[str, Any]) -> dict[str, Any]:
    """What we republish about the other process: only well-formed small values (the
    payload came from the wire and goes back out in our retained status)."""
    instance, session, since = other.get("instance"), other.get("session"), other.get("ts")
    ok_session = isinstance(session, int) and not isinstance(session, bool) and 0 <= session < 2**53
    ok_since = isinstance(since, (int, float)) and not isinstance(since, bool) and 0 <= since < 1e11
    return {
        "instance": instance if isinstance(instance, str) and len(instance) <= 64 else None,
        "session": session if ok_session else None,
        "since": since if ok_since else time.time(),
    }


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
        self.started_at = time.time()
        self._monotonic_start = time.monotonic()
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
        self.rebirth_interval = REBIRTH_INTERVAL
        self._last_rebirth = -REBIRTH_INTERVAL
        self._rebirth_pending: asyncio.Future[None] | None = None
        self.logs = LogShipper(self._publish_logs, self.node)
        self.mqtt = MqttSession(
            SessionOptions(
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
        self._routes: dict[str, RouteHandler] = {}
        self._providers: dict[str, dict[str, Provider]] = {"meta": {}, "state": {}, "heartbeat": {}}
        self._config_hooks: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self._subsystems: list[Subsystem] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._wake_loops = asyncio.Event()
        self._state_dirty = False
        self._config_lock = asyncio.Lock()
        self._unsent_receipts: deque[tuple[str, dict[str, Any], bytes | None]] = deque(maxlen=256)
        self._desired_error: dict[str, Any] | None = None
        self._cleared: set[str] = set()
        self.name_clash: dict[str, Any] | None = None
        """Set while another live process uses this node name (shown in status and state)."""
        self._clash_seen_at = 0.0
        self.exit_code = 0
        self.restart_requested = False
        self.stop_reason = ""
        self._sampler: Any = None
        self._supervisor_listeners: list[Callable[[SupervisorEvent], object]] = []
        self.supervisor = Supervisor(on_event=self._supervisor_event)
        """The one ONE_FOR_ONE supervisor of every actor on the node (components and
        dynamic actors); subsystems name their children apart (``component:{name}``)."""
        self._register_builtin_commands()

    # ---- extension points -----------------------------------------------------------

    def route(self, kind: str, handler: RouteHandler) -> None:
        """Send inbound messages whose :func:`~devfleet_base.contract.parse_topic` kind
        is ``kind`` (``spawn``, ``by_name_task``, ...) to ``handler``."""
        self._routes[kind] = handler

    def add_provider(self, section: str, key: str, provider: Provider) -> None:
        """Contribute ``key`` to the ``meta``, ``state`` or ``heartbeat`` payload."""
        self._providers[section][key] = provider

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
            if isinstance(task.exception(), ConnectionRefusedFatal):
                return  # run() reports it in one line: no traceback for bad credentials
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def state_changed(self) -> None:
        """Publish the retained state soon (changes in one loop turn are coalesced)."""
        if self._state_dirty:
            return
        self._state_dirty = True
        asyncio.get_running_loop().call_soon(lambda: self.spawn(self._publish_state(), "state"))

    def request_stop(self, reason: str, *, exit_code: int = 0, restart: bool = False) -> None:
        self.stop_reason = reason
        self.exit_code = exit_code
        self.restart_requested = restart
        self._stop.set()

    @property
    def session_counter(self) -> int:
        """This start's session counter (persisted, bumped at each start)."""
        return self.descriptions.session

    @property
    def bd_seq(self) -> int:
        """This start's birth/death sequence number (Sparkplug's bdSeq; ``session`` on
        the wire): persisted, bumped at each start."""
        return self.descriptions.session

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._monotonic_start

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

    def meta_payload(self) -> dict[str, Any]:
        payload = self.descriptions.meta(
            host_facts(),
            commands=self.dispatcher.verbs(),
            config=self.store.config,
            signed_commands=self.identity is not None,
            started_at=self.started_at,
        )
        payload["broker"] = self.mqtt.broker
        self._add_provided(payload, "meta")
        return payload

    def state_payload(self) -> dict[str, Any]:
        payload = self.descriptions.envelope()
        if self.name_clash is not None:
            payload["name_clash"] = self.name_clash
        self._add_provided(payload, "state")
        return payload

    def cfg_payload(self) -> dict[str, Any]:
        return self.descriptions.cfg(self.store, self._desired_error)

    def status_payload(self, status: str) -> dict[str, Any]:
        payload = self.descriptions.status(status)
        if self.name_clash is not None:
            payload["name_clash"] = self.name_clash
        return payload

    def _add_provided(self, payload: dict[str, Any], section: str) -> None:
        for key, provider in self._providers[section].items():
            try:
                payload[key] = provider()
            except Exception:
                log.exception("%s provider %r failed", section, key)

    async def publish_birth(self, *, wait: bool = False) -> bool:
        """Publish every retained description: meta, status online, state, cfg.

        With ``wait``, return whether the broker acknowledged the last of them (QoS 1
        acknowledgements come in order, so the whole birth arrived).
        """
        await self.publish_json(
            contract.node_topic(self.node, "meta"), self.meta_payload(), qos=1, retain=True
        )
        await self.publish_json(
            contract.node_topic(self.node, "status"),
            self.status_payload("online"),
            qos=1,
            retain=True,
        )
        await self.publish_json(
            contract.node_topic(self.node, "state"), self.state_payload(), qos=1, retain=True
        )
        return await self.publish_json(
            contract.node_topic(self.node, "cfg"), self.cfg_payload(), qos=1, retain=True, wait=wait
        )

    async def publish_meta(self) -> None:
        await self.publish_json(
            contract.node_topic(self.node, "meta"), self.meta_payload(), qos=1, retain=True
        )

    async def _publish_state(self) -> None:
        self._state_dirty = False
        await self.publish_json(
            contract.node_topic(self.node, "state"), self.state_payload(), qos=1, retain=True
        )

    async def _publish_cfg(self) -> None:
        await self.publish_json(contract.node_topic(self.node, "cfg"), self.cfg_payload(), qos=1, retain=True)

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
        counters_path = self.data_dir / "session.json"
        try:
            counters = read_json(counters_path)
            previous = int(counters.get("session", 0)) if isinstance(counters, dict) else 0
        except (FileNotFoundError, ValueError, TypeError):
            previous = 0
        self.descriptions.session = previous + 1
        atomic_write_json(counters_path, {"session": self.session_counter})
        self.dispatcher.memory = CommandMemory(self.data_dir / "commands.json")
        self.dispatcher.memory.load()

    async def run(self) -> int:
        """Run until stopped; return the exit code."""
        self._load_persistent()
        root = logging.getLogger()
        root.addHandler(self.logs)
        self.logs.configure(self.store.config["logs"])
        await self._apply_config(self.store.config)
        mqtt_task = self.spawn(self.mqtt.run(), "mqtt")
        for sub in self._subsystems:
            try:
                await sub.start()
            except Exception:
                log.exception("subsystem %s failed to start", type(sub).__name__)
        self.spawn(self._heartbeat_loop(), "heartbeat")
        self.spawn(self._telemetry_loop(), "telemetry")
        self.spawn(self.logs.run(), "logs")
        if self.notifier.enabled:
            self.spawn(self._service_loop(mqtt_task), "sd_notify")
        log.info("agent %s started (session %d)", self.node, self.session_counter)
        stop_wait = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({stop_wait, mqtt_task}, return_when=asyncio.FIRST_COMPLETED)
        if mqtt_task in done and not mqtt_task.cancelled() and mqtt_task.exception() is not None:
            exc = mqtt_task.exception()
            self.request_stop(
                str(exc), exit_code=EXIT_CONFIG if isinstance(exc, ConnectionRefusedFatal) else 3
            )
        stop_wait.cancel()
        await self._shutdown()
        root.removeHandler(self.logs)
        return self.exit_code

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
                            self.status_payload("offline"),
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

    async def _on_connect(self) -> None:
        self._clash_on_connect()
        acked = await self.publish_birth(wait=self.notifier.enabled and not self._ready_sent)
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
        """Whether the MQTT session is connected, or is still trying (an attempt
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

    # ---- duplicate node names ---------------------------------------------------------

    def _clash_seen(self, other: dict[str, Any] | None) -> None:
        """Another process uses this node name: say so once, show it, and back off."""
        self._clash_seen_at = time.monotonic()
        clash = _clash_fields(other or {})
        first = self.name_clash is None
        self.name_clash = clash
        if first:
            log.error(
                "another agent process uses the node name %r (instance %s, session %s): the broker"
                " hands the session back and forth; backing off (reconnect after %.0f s, up to %.0f s)."
                " Give each node a unique --name",
                self.node,
                clash["instance"] or "unknown",
                clash["session"] if clash["session"] is not None else "unknown",
                CLASH_BACKOFF[0],
                CLASH_BACKOFF[1],
            )
            self.mqtt.reconnect_floor = CLASH_BACKOFF[0]
            if self.mqtt.connected:
                self.spawn(self._publish_status_online(), "clash status")
                self.state_changed()

    def _clash_on_connect(self) -> None:
        if self.mqtt.taken_over:
            self.mqtt.taken_over = 0
            self._clash_seen(None)  # MQTT 5 told us: another client took our session
            return
        if self.name_clash is None:
            return
        if time.monotonic() - self._clash_seen_at > CLASH_FORGET:
            log.info(
                "no sign of the other process named %r for %.0f s; clash forgotten", self.node, CLASH_FORGET
            )
            self.name_clash = None
            self.mqtt.reconnect_floor = 0.0
            return
        # We got the session back by taking it: wait longer next time it is taken.
        self.mqtt.reconnect_floor = min(
            CLASH_BACKOFF[1], max(CLASH_BACKOFF[0], self.mqtt.reconnect_floor * 2)
        )

    async def _publish_status_online(self) -> None:
        await self.publish_json(
            contract.node_topic(self.node, "status"), self.status_payload("online"), qos=1, retain=True
        )

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
            session=self.session_counter,
            uptime=self.uptime,
            broker=self.mqtt.broker,  # the one in use: with several, it changes on failover
            commands=self.dispatcher.counts,
            logs={"pending": self.logs.pending, "shipped": self.logs.shipped, "dropped": self.logs.dropped},
            metrics=sampler.sample(),
            agent_usage=sampler.agent_usage(),
        )
        self._add_provided(payload, "heartbeat")
        return payload

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_loops.wait(), seconds)

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

    # ---- inbound ---------------------------------------------------------------------

    def _on_message(self, msg: Inbound) -> None:
        match = contract.parse_topic(msg.topic)
        if match is None:
            log.debug("ignoring message on %s", msg.topic)
            return
        if match.kind in _NEVER_RETAINED and self._retained_control(msg, match):
            return
        if match.kind == "cmd":
            self.spawn(
                self.dispatcher.handle(
                    msg.topic,
                    match,
                    msg.payload,
                    response_topic=msg.response_topic,
                    correlation=msg.correlation,
                    retained=msg.retain,
                ),
                f"cmd {match.verb}",
            )
        elif match.kind == "cfg_desired":
            self.spawn(self._on_desired(msg), "desired")
        elif match.kind == "status" and match.node == self.node:
            self._on_own_status(msg)
        elif match.kind in self._routes:
            self.spawn(self._guarded(self._routes[match.kind], msg, match), match.kind)

    def _retained_control(self, msg: Inbound, match: TopicMatch) -> bool:
        """Deal with a control message the broker holds retained; True when it is handled
        here (not to be run). A retained command would run again on every reconnect (a
        retained ``restart`` restarts the node forever): clear it, refuse it, say so."""
        if not msg.payload:
            # Our own clear coming back (or someone else's): nothing to run or answer.
            if msg.topic in self._cleared:
                self._cleared.discard(msg.topic)
                return True
            return msg.retain
        if not msg.retain:
            return False
        log.warning("%s arrived retained; control messages are not retained: not run, cleared", msg.topic)
        self._cleared.add(msg.topic)
        self.spawn(self.mqtt.publish(msg.topic, b"", qos=1, retain=True), "clear retained")
        # A command goes on to the dispatcher, which answers it with an error receipt.
        return match.kind != "cmd"

    async def _guarded(self, handler: RouteHandler, msg: Inbound, match: TopicMatch) -> None:
        try:
            await handler(msg, match)
        except Exception:
            log.exception("handler for %s failed", msg.topic)

    def _on_own_status(self, msg: Inbound) -> None:
        if self._stop.is_set() or not self.mqtt.connected:
            return
        try:
            payload = contract.decode(msg.payload) if msg.payload else None
        except ContractError:
            payload = None
        verdict = judge_own_status(
            payload,
            retained=msg.retain,
            instance=self.descriptions.instance,
            started_at=self.started_at,
        )
        if (
            verdict.action == "ok"
            and self.identity is not None
            and not _signed_by(payload, self.identity.kid)
        ):
            # In a signed fleet consoles ignore an "online" we did not sign: repair it.
            verdict = OwnStatus("rebirth", verdict.status)
        if verdict.action == "clash":
            self._clash_seen(verdict.other)
            if verdict.status != "online" and not msg.retain:
                self.spawn(self._publish_status_online(), "rebirth")  # its will replaced our birth
        elif verdict.action == "previous":
            # What the previous run left (offline after a restart, lost after a crash):
            # expected, and our birth is already on its way.
            log.info("previous run of this node ended %s", verdict.status or "without a status")
        elif verdict.action == "rebirth":
            # A stale will, a purge or junk replaced our birth while we are alive: be born
            # again, at most once per rebirth_interval (a flood of junk writes must not
            # become a flood of births).
            if self._rebirth_pending is None:
                log.warning(
                    "retained status of this node was replaced by %r; publishing the birth again",
                    verdict.status if verdict.status is not None else msg.payload[:40],
                )
            self.spawn(self.rebirth(), "rebirth")

    async def rebirth(self) -> None:
        """Publish the birth again, rate-limited: requests while one is due share it."""
        if self._rebirth_pending is not None:
            await asyncio.shield(self._rebirth_pending)
            return
        loop = asyncio.get_running_loop()
        self._rebirth_pending = done = loop.create_future()
        try:
            wait = self._last_rebirth + self.rebirth_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_rebirth = loop.time()
            self._rebirth_pending = None  # a request from now on waits for the next slot
            await self.publish_birth()
        finally:
            self._rebirth_pending = None
            if not done.done():
                done.set_result(None)

    async def _on_desired(self, msg: Inbound) -> None:
        if not msg.payload:
            return  # desired cleared
        match = TopicMatch("cmd", node=self.node, verb="configure", scope="node")
        try:
            payload = contract.decode(msg.payload)
            command = Command.from_wire("configure", payload)
        except ContractError as exc:
            self._desired_error = {"code": exc.code, "message": exc.message}
            await self._publish_cfg()
            return
        if command.id == self.store.applied_id:
            return  # already applied (the retained message comes back on every connect)
        await self.dispatcher.handle(msg.topic, match, msg.payload, on_refused=self._desired_refused)

    async def _desired_refused(self, cmd_id: str, exc: DevfleetError) -> None:
        # A retained desired config is not a conversation: say why in cfg, where the
        # console's drift view looks, not only in a receipt nobody may be waiting for.
        self._desired_error = {"id": cmd_id, **exc.to_wire()}
        await self._publish_cfg()

    # ---- built-in commands -------------------------------------------------------------

    def _register_builtin_commands(self) -> None:
        d = self.dispatcher
        d.register("ping", self._cmd_ping, doc="Answer with uptime and session.", readonly=True)
        d.register(
            "rebirth",
            self._cmd_rebirth,
            doc="Publish every retained description again.",
            readonly=True,
        )
        d.register("restart", self._cmd_restart, doc="Re-execute the agent process.")
        d.register(
            "configure",
            self._cmd_configure,
            doc="Change the node config (set, replace, rollback_to).",
        )
        d.register(
            "config_get",
            self._cmd_config_get,
            doc="Return the config and kept versions.",
            readonly=True,
        )

    async def _cmd_ping(self, cmd: Command) -> dict[str, Any]:
        return {
            "pong": True,
            "node": self.node,
            "session": self.session_counter,
            "uptime": round(self.uptime, 3),
        }

    async def _cmd_rebirth(self, cmd: Command) -> dict[str, Any]:
        await self.rebirth()
        return {"republished": list(contract.NODE_DESCRIPTIONS)}

    async def _cmd_restart(self, cmd: Command) -> dict[str, Any]:
        # Stop after the ok receipt went out.
        asyncio.get_running_loop().call_later(0.2, lambda: self.request_stop("restart command", restart=True))
        return {"restarting": True}

    async def _cmd_config_get(self, cmd: Command) -> dict[str, Any]:
        return {
            "config_version": self.store.version,
            "config": self.store.config,
            "kept_versions": self.store.versions(),
        }

    async def _cmd_configure(self, cmd: Command) -> dict[str, Any]:
        kwargs = configure_arguments(cmd.args)
        async with self._config_lock:
            try:
                config = self.store.apply(**kwargs, applied_id=cmd.id)
            except DevfleetError as exc:
                self._desired_error = {"id": cmd.id, **exc.to_wire()}
                await self._publish_cfg()
                raise
            self._desired_error = None
            log.info("config version %d applied (command %s)", self.store.version, cmd.id)
            await self._apply_config(config)
            await self._publish_cfg()
            await self.publish_meta()
        return {"config_version": self.store.version}

    async def _apply_config(self, config: dict[str, Any]) -> None:
        self.logs.configure(config["logs"])
        # Records below the root level are never created: let devfleet's own through
        # to the shipper (the console's stderr handler keeps its own level).
        ship_level = logging.getLevelName(config["logs"]["level"])
        ours = logging.getLogger("devfleet")
        if config["logs"]["enabled"] and ours.getEffectiveLevel() > ship_level:
            ours.setLevel(ship_level)
        groups = tuple(config.get("groups", []))
        await self.mqtt.unsubscribe(
            [f for f, _ in self.mqtt.options.subscriptions if f.startswith("groups/")]
        )
        await self.mqtt.subscribe(contract.subscriptions_for_node(self.node, groups))
        self._wake_loops.set()
        self._wake_loops = asyncio.Event()
        for hook in self._config_hooks:
            try:
                await hook(config)
            except Exception:
                log.exception("config hook %r failed", hook)


def _signed_by(payload: Any, kid: str) -> bool:
    sig = payload.get("_sig") if isinstance(payload, dict) else None
    return isinstance(sig, dict) and sig.get("kid") == kid
