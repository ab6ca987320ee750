"""The asyncio console client: the fleet model fed by one :class:`MqttClient`.

Usage::

    async with AsyncFleet.connect("mqtt://127.0.0.1:1883") as fleet:
        for node in fleet.nodes():
            print(node.name, node.health)
        handle = await fleet.send("n1", "ping")
        print(await handle.result())

Receipts for every command this console sends come to one inbox,
``replies/{inbox}``, and are routed to their :class:`CommandHandle` (or
:class:`Broadcast`) by command id.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from devfleet_base import contract
from devfleet_base.broker_url import BrokerAddress
from devfleet_base.broker_url import parse_broker_url as _parse_broker_url
from devfleet_base.broker_url import parse_broker_urls as _parse_broker_urls
from devfleet_base.contract import Command, Receipt
from devfleet_base.errors import ContractError, DevfleetError
from devfleet_base.mqtt import ClientOptions, ConnectionRefusedFatal, MqttClient, MqttMessage, TlsOptions
from devfleet_base.node_config import NODE_CONFIG_SCHEMA, apply_dotted, default_node_config
from devfleet_base.signing import RETAINED_TTL, Identity, NodeVerifier

from . import wactorz, wactorz_ops
from .actors import ActorOps
from .errors import (
    CommandTimeout,
    ConnectError,
    ConsoleTimeout,
    InvalidConfig,
    InvalidURL,
    NodeNotFound,
)
from .fastjson import decode as _decode
from .handles import Broadcast, CommandHandle, LogRecord, Outcome
from .model import Drift, Event, FleetModel, NodeLost, NodeOffline, NodeStale, NodeView
from .purge import PURGED_LEAVES, PurgeOps
from .trading import ResumeRegistry, TradingOps

__all__ = [
    "INSTALL_TIMEOUT",
    "PURGED_LEAVES",
    "AsyncFleet",
    "Broadcast",
    "BrokerAddress",
    "CommandHandle",
    "EventStream",
    "LogRecord",
    "Outcome",
    "parse_broker_url",
]

log = logging.getLogger("devfleet.console")

_DOWN_EVENTS = (NodeLost, NodeOffline, NodeStale)
_WACTORZ_PRESENCE = ("/heartbeat", "/manifest", "/agents")
_SIGNED_DESCRIPTIONS = frozenset({"meta", "status", "state", "cfg", "heartbeat", "agent_heartbeat"})
_now = time.time

_MARKER_RESEND = 3.0
"""Seconds before the sync marker is published again (see :meth:`AsyncFleet.wait_until_synced`)."""

INSTALL_TIMEOUT = 900.0
"""Seconds a console waits for an install, upgrade or uninstall (pip on a Pi Zero is slow)."""

_PACING_SLACK = 1.0
"""Seconds beyond a heartbeat interval before a silent node is judged (agents sleep
an interval after publishing, so their period is a little longer)."""

# ---- broker address ---------------------------------------------------------------------


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://host:port``, ``mqtts://host:port`` or ``host[:port]``.

    Raises:
        InvalidURL: the URL is malformed.
    """
    try:
        return _parse_broker_url(url)
    except ContractError as exc:
        raise InvalidURL(exc.message) from None


def parse_broker_urls(urls: str | Sequence[str]) -> list[BrokerAddress]:
    """Parse one or several broker URLs (comma-separated, or a list); the first is tried first.

    Raises:
        InvalidURL: a URL is malformed, or TLS and plain brokers are mixed.
    """
    try:
        return _parse_broker_urls(urls)
    except ContractError as exc:
        raise InvalidURL(exc.message) from None


class EventStream:
    """An async iterator of model events; ``aclose()`` (or ``async with``) ends it."""

    def __init__(self, fleet: AsyncFleet, maxsize: int) -> None:
        self._fleet = fleet
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._closed = False
        fleet._queues.add(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        return await self._queue.get()

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._closed = True
        self._fleet._queues.discard(self._queue)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ---- the client -----------------------------------------------------------------------


class AsyncFleet(ActorOps, PurgeOps, TradingOps):
    """The console's asyncio client. Use ``async with AsyncFleet.connect(url) as fleet``.

    Args:
        url: ``mqtt://host:port`` or ``mqtts://host:port``; several brokers as a
            comma-separated string or a list (the first that answers; on loss the next).
        username: broker user name.
        password: broker password.
        tls_ca: CA file for TLS (implies TLS).
        identity: this console's signing identity (``devfleet provision --console``);
            when set every command is signed, and receipts and actor answers are
            believed only when signed by the node they claim to come from
            (certified by an operator the identity trusts).
        wactorz_key: the HMAC key shared with Wactorz packaged-runner nodes (their
            ``WACTORZ_NODE_KEY``, decoded): control messages to them are signed the
            Wactorz way, and their presence and answers count only when signed with it.
        client_id: MQTT client id (default: a fresh ``devfleet-console-...``).
        protocol: ``auto``, ``5`` or ``3.1.1``.
        connect_timeout: seconds to reach the broker and receive the retained burst.
        history: telemetry samples kept per metric per node.
        stale_check_interval: seconds between staleness checks.
        wait_for_node: seconds a command to a node this console has never seen waits
            for its birth (provisioning); 0 (the default) raises ``NodeNotFound`` at
            once and publishes nothing.
    """

    def __init__(
        self,
        url: str | Sequence[str] = "mqtt://127.0.0.1:1883",
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        identity: Identity | None = None,
        wactorz_key: bytes | None = None,
        client_id: str | None = None,
        protocol: str = "auto",
        connect_timeout: float = 10.0,
        history: int = 60,
        stale_check_interval: float = 1.0,
        wait_for_node: float = 0.0,
    ) -> None:
        self.address, *more = parse_broker_urls(url)
        self.model = FleetModel(history=history)
        self.identity = identity
        self.node_verifier = NodeVerifier(identity.operators()) if identity is not None else None
        self.refused_receipts = 0
        """Receipts dropped because they were not signed by the node they name."""
        self.refused_descriptions = 0
        """Descriptions (meta, status, state, cfg) and heartbeats (node and actor) dropped
        for the same reason."""
        # An HMAC key shared with Wactorz nodes (their WACTORZ_NODE_KEY): signs/checks the
        # Wactorz way for them (wactorz_ops).
        self.wactorz_key = wactorz_key
        ident = client_id or f"devfleet-console-{contract.new_id()[:12]}"
        self.inbox = contract.reply_inbox(ident)
        self.connect_timeout = connect_timeout
        self.stale_check_interval = stale_check_interval
        self.wait_for_node = wait_for_node
        tls = TlsOptions(ca=tls_ca) if (self.address.tls or tls_ca) else None
        self.mqtt = MqttClient(
            ClientOptions(
                host=self.address.host,
                port=self.address.port,
                client_id=ident,
                username=username,
                password=password,
                tls=tls,
                protocol=protocol,
                subscriptions=[
                    *contract.subscriptions_for_console(),
                    ("agents/+/resume", 0),
                    (self.inbox, 1),
                ],
                fallbacks=[(a.host, a.port) for a in more],
            ),
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self._commands: dict[str, CommandHandle | Broadcast] = {}
        self._markers: dict[str, asyncio.Future[None]] = {}
        self._queues: set[asyncio.Queue[Event]] = set()
        self._taps: set[Callable[[MqttMessage], None]] = set()
        self.registry = ResumeRegistry()
        self._tick = asyncio.Event()
        self._tick_waiters = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._run_task: asyncio.Task[None] | None = None
        self.dropped_events = 0

    @classmethod
    def connect(cls, url: str | Sequence[str] = "mqtt://127.0.0.1:1883", **kwargs: Any) -> AsyncFleet:
        """A client to use as ``async with AsyncFleet.connect(url) as fleet``
        (keyword arguments as for the constructor)."""
        return cls(url, **kwargs)

    async def __aenter__(self) -> AsyncFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, subscribe and wait for the retained burst.

        Raises:
            ConnectError: the broker refused the connection or its credentials, its
                host name does not resolve (both at once), or it did not answer
                within ``connect_timeout``.
        """
        # The retained burst (4 descriptions a node) builds long-lived objects and no
        # garbage cycles; the cyclic collector would walk the growing model again and
        # again (measured: 10,000 nodes 2.4 s with it, see docs/benchmarks.md). Pause it
        # for the burst only, and leave it as the caller had it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            await self._start()
        finally:
            if collecting:
                gc.enable()

    async def _start(self) -> None:
        self._tick = asyncio.Event()
        self._run_task = asyncio.create_task(self.mqtt.run(), name="devfleet-console-mqtt")
        connected = asyncio.create_task(self.mqtt.wait_connected())
        failed = asyncio.create_task(self.mqtt.wait_attempt_failed())
        deadline = time.monotonic() + self.connect_timeout
        failure: BaseException | None = None
        refused = 0
        while True:
            done, _ = await asyncio.wait(
                {connected, failed, self._run_task},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if connected in done or not done:
                break
            if self._run_task in done:
                failure = None if self._run_task.cancelled() else self._run_task.exception()
                break
            failure = failed.result()
            if isinstance(failure, (ConnectionRefusedError, socket.gaierror)):
                refused += 1
                if refused >= len(self.mqtt.brokers):
                    break  # nobody listens there, or no such host: say so now, not after the timeout
            failed = asyncio.create_task(self.mqtt.wait_attempt_failed())
        failed.cancel()
        if connected not in done:
            connected.cancel()
            # Stop the connect attempt now: closing would otherwise wait for its own
            # CONNACK timeout and overrun the caller's (a silent broker: 10 s became 13).
            self._run_task.cancel()
            await self.close()
            where = ", ".join(self.mqtt.brokers)
            if isinstance(failure, ConnectionRefusedFatal):
                raise ConnectError(failure.message) from None
            if isinstance(failure, ConnectionRefusedError):
                raise ConnectError(f"the broker at {where} refused the connection (is it running?)")
            if isinstance(failure, socket.gaierror):
                raise ConnectError(f"cannot resolve the broker host {self.address.host!r}: {failure}")
            raise ConnectError(f"cannot reach the broker at {where} within {self.connect_timeout:g} s")
        await self.wait_until_synced(max(0.1, deadline - time.monotonic()))
        # Retained last heartbeats date every node now: a dead one is stale at once. The
        # periodic check starts only now: during the burst it walked a model still being
        # built, every second (0.13 s of a 10,000-node discovery).
        self._dispatch(self.model.check_stale(time.time()))
        self._tasks.append(asyncio.create_task(self._stale_loop(), name="devfleet-console-stale"))

    async def _on_connect(self) -> None:
        if self.mqtt.connects > 1:
            # A broker restart loses every agent's subscriptions: until a node's new
            # birth (or any live message) comes, a command to it would be dropped.
            self.model.expect_rebirth()

    async def close(self) -> None:
        """Disconnect; commands still pending end as ``timed_out``."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for pending in list(self._commands.values()):
            if isinstance(pending, CommandHandle):
                pending._finish("timed_out")
            else:
                pending._time_out()
        self._commands.clear()
        await self.mqtt.close()
        if self._run_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._run_task, 5.0)
            self._run_task = None

    async def wait_until_synced(self, timeout: float = 10.0) -> None:
        """Wait until the retained burst of our subscriptions has arrived: publish a
        marker to our own inbox and wait for it to come back.

        Raises:
            ConsoleTimeout: the marker did not come back in time.
        """
        marker = contract.new_id()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[marker] = fut
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not await self.mqtt.publish(self.inbox, contract.encode({"marker": marker}), qos=1):
                    raise ConnectError("not connected to the broker")
                # Sent again every few seconds: a clustered broker (NATS) may refuse our
                # inbox subscription for a while and drop the first marker.
                wait = min(_MARKER_RESEND, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), wait)
                if fut.done():
                    break
        except TimeoutError:
            raise ConsoleTimeout(
                f"the broker did not echo our marker within {timeout:g} s ({len(self.model)} nodes seen"
                " so far). A broker that drops messages to a console that is behind loses it: on"
                " mosquitto raise max_queued_messages (default 1000; see 'Broker settings' in"
                " docs/agent.md)"
            ) from None
        finally:
            self._markers.pop(marker, None)

    # ---- inbound ---------------------------------------------------------------------------

    def _on_message(self, msg: MqttMessage) -> None:
        topic, payload, retain = msg[0], msg[1], msg[2]
        if topic == self.inbox:
            self._on_inbox(payload)
            return
        if topic.endswith("/resume") and topic.startswith("agents/"):
            self.registry.feed(topic, payload)
            if self._tick_waiters:
                self._dispatch([])  # wakes wait_for() callers watching résumés
            return
        if self._taps:
            for tap in tuple(self._taps):
                try:
                    tap(msg)
                except Exception:
                    log.exception("message tap failed")
            if topic.startswith(("tasks/", "pools/")):
                return  # work trading (an auction's or a pool's tap): nothing for the model
        # A Wactorz node's presence (heartbeat, manifest, list) is signed its own way, if
        # at all: a keyed console takes it only signed with the key; a console that
        # signs but holds no key shows it, marked unverified (wactorz_ops.check_commandable).
        wactorz_signed = (
            wactorz_ops.presence_signed(self, msg)
            if (self.wactorz_key is not None or self.node_verifier is not None)
            and topic.endswith(_WACTORZ_PRESENCE)
            else None
        )
        if wactorz_signed is False and self.wactorz_key is not None:
            return
        if (
            wactorz_signed is None
            and self.node_verifier is not None
            and payload
            and not self._believed(topic, payload)
        ):
            return
        events = self.model.feed(topic, payload, retain, _now())
        if wactorz_signed is not None:
            wactorz.mark_verified(self.model.get(topic.split("/")[1]), wactorz_signed)
        if events and (self._queues or self._commands or self._tick_waiters):
            self._dispatch(events)  # nobody listening: nothing to do per message

    def _believed(self, topic: str, payload: bytes) -> bool:
        """In a signed fleet, a description or heartbeat counts only when the node it
        names signed it (an empty payload, a removal, needs no signature: the broker's
        ACL guards it). Telemetry samples are not signed: they cannot make a node look
        alive, online or configured."""
        match = contract.parse_topic(topic)
        if match is None or match.kind not in _SIGNED_DESCRIPTIONS:
            return True
        try:
            data = contract.decode(payload)
        except ContractError:
            return True  # the model reports junk itself
        node = (
            match.node
            if match.kind != "agent_heartbeat"
            else (data.get("node") if isinstance(data, dict) else None)
        )
        assert self.node_verifier is not None
        if isinstance(node, str) and self.node_verifier.valid(node, topic, data):
            return True
        self.refused_descriptions += 1
        log.warning("ignoring %s: not signed by %s", topic, match.node)
        return False

    def _dispatch(self, events: list[Event]) -> None:
        for queue in self._queues:
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    self.dropped_events += 1
        if self._commands:
            for event in events:
                if isinstance(event, _DOWN_EVENTS) and event.node is not None:
                    for pending in list(self._commands.values()):
                        if isinstance(pending, Broadcast):
                            pending._node_down(event.node)
        if self._tick_waiters:  # a fresh Event per message only when someone waits on it
            tick = self._tick
            self._tick = asyncio.Event()
            tick.set()

    def _on_inbox(self, payload: bytes) -> None:
        try:
            data = _decode(payload)
            if isinstance(data, dict) and "marker" in data:
                fut = self._markers.get(str(data["marker"]))
                if fut is not None and not fut.done():
                    fut.set_result(None)
                return
            receipt = Receipt.from_wire(data)
        except ContractError as exc:
            log.warning("ignoring a malformed receipt: %s", exc.message)
            return
        target = self._commands.get(receipt.id)
        if target is None:
            return
        if self.node_verifier is not None and not self.node_verifier.valid(receipt.node, self.inbox, data):
            # Anyone who can read a command can write to its reply_to: only the node
            # itself may say how it went (issue 13: a forged ok for a stopped node).
            self.refused_receipts += 1
            log.warning("ignoring a receipt for %s that %s did not sign", receipt.id, receipt.node)
            return
        target._on_receipt(receipt, data)
        if isinstance(target, CommandHandle) and target.done:
            self._commands.pop(receipt.id, None)

    async def _stale_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stale_check_interval)
            events = self.model.check_stale(time.time())
            if events:
                self._dispatch(events)

    # ---- queries ----------------------------------------------------------------------------

    def nodes(self) -> list[NodeView]:
        """Every known node, by name."""
        return sorted(self.model, key=lambda n: n.name)

    def node(self, name: str) -> NodeView:
        """One node.

        Raises:
            NodeNotFound: the model does not know it.
        """
        view = self.model.get(name)
        if view is None:
            raise NodeNotFound(f"no node named {name!r} is known to the broker")
        return view

    def events(self, maxsize: int = 10_000) -> EventStream:
        """Every model event from now on (the stream is registered at once, so nothing
        between this call and the first ``__anext__`` is missed). Events beyond
        ``maxsize`` unread are dropped and counted in :attr:`dropped_events`."""
        return EventStream(self, maxsize)

    def add_tap(self, tap: Callable[[MqttMessage], None]) -> Callable[[], None]:
        """Call ``tap(msg)`` with every message the client receives (except receipts to its
        inbox), before the model is fed; return a function that removes the tap.

        Taps run in the MQTT receive path: keep them short. An exception in a tap is
        logged, not raised. Add taps before :meth:`start` to see the retained burst.
        """
        self._taps.add(tap)
        return lambda: self._taps.discard(tap)

    async def scan_retained(
        self, topic_filter: str, tap: Callable[[MqttMessage], None], *, timeout: float = 10.0
    ) -> None:
        """Show ``tap`` what a fresh subscription to ``topic_filter`` brings until the
        broker has sent everything retained under it (the sync marker came back), then
        unsubscribe.

        Raises:
            ConsoleTimeout: the sync marker did not come back within ``timeout`` seconds.
        """
        remove = self.add_tap(tap)
        try:
            # fresh: the broker resends what is retained even if another operation
            # already holds this filter.
            async with self.mqtt.subscription([(topic_filter, 1)], fresh=True):
                await self.wait_until_synced(timeout)
        finally:
            remove()

    async def wait_for(self, predicate: Callable[[FleetModel], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(model)`` is true; it is checked now and after every
        change.

        Raises:
            ConsoleTimeout: not true within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not predicate(self.model):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConsoleTimeout(f"condition not met within {timeout:g} s")
            self._tick_waiters += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._tick.wait(), remaining)
            finally:
                self._tick_waiters -= 1

    def drift(self) -> list[Drift]:
        """Nodes whose retained desired config differs from what they report."""
        return self.model.drift()

    async def confirm_liveness(
        self, timeout: float | None = None, on_wait: Callable[[list[str], float], None] | None = None
    ) -> list[str]:
        """Settle the nodes that say ``online`` with nothing to show they live (a
        retained birth, no heartbeat: a broker that persisted a dead node's status):
        wait for their heartbeat, and mark stale those silent for a whole heartbeat
        interval (plus one second for the agent's own pacing).

        Args:
            timeout: the most seconds to wait (None: one interval and one second).
                A node whose interval does not fit in it is waited on but not
                judged: it stays as it was.
            on_wait: called once with the names and the seconds it will wait, when
                there is anything to wait for (a progress hint).

        Returns:
            The nodes marked stale.
        """
        waiting = self.model.unconfirmed()
        if not waiting:
            return []
        needed = {n.name: n.heartbeat_interval + _PACING_SLACK for n in waiting}
        wait = max(needed.values()) if timeout is None else min(timeout, max(needed.values()))
        names = sorted(needed)
        if on_wait is not None:
            on_wait(names, wait)
        # A Wactorz node answers a list at once; its heartbeat may be 10 s away.
        await wactorz_ops.ask_lists(self.mqtt, [n.name for n in waiting if wactorz.is_wactorz(n)])

        def heard(m: FleetModel) -> bool:
            return not any((n := m.get(name)) is not None and n.unconfirmed for name in names)

        with contextlib.suppress(ConsoleTimeout):
            await self.wait_for(heard, wait)
        silent = [
            name
            for name in names
            if (n := self.model.get(name)) is not None and n.unconfirmed and needed[name] <= wait
        ]
        self._dispatch(self.model.mark_stale(silent, wait))
        return silent

    async def wait_for_known(self, node: str) -> NodeView:
        """The node, if this console has seen it (or it is born within
        ``wait_for_node`` seconds).

        Raises:
            ContractError: the name is outside the grammar.
            NodeNotFound: never seen.
        """
        contract.check_name(node, "node")
        if node not in self.model:
            if self.wait_for_node <= 0:
                raise NodeNotFound(
                    f"no node named {node!r} is known to the broker at {self.address.host}:{self.address.port}"
                    " (nothing sent)"
                )
            try:
                await self.wait_for(lambda m: node in m, self.wait_for_node)
            except ConsoleTimeout:
                raise NodeNotFound(
                    f"no node named {node!r} appeared within {self.wait_for_node:g} s (nothing sent)"
                ) from None
        return self.node(node)

    async def _target(self, node: str, timeout: float) -> NodeView:
        """The node a command goes to, once it can take one.

        Raises:
            ContractError: the name is outside the grammar.
            NodeNotFound: never seen (and not born within ``wait_for_node``).
            CommandTimeout: seen before our reconnect, not back within ``timeout``.
        """
        view = await self.wait_for_known(node)
        if view.awaiting:  # whatever its status: a broker going down may have fired its will
            try:
                await self.wait_for(lambda m: not (n := m.get(node)) or not n.awaiting, timeout)
            except ConsoleTimeout:
                raise CommandTimeout(
                    f"{node} is not back since the broker connection was lost"
                    f" (no birth or heartbeat within {timeout:g} s): nothing sent"
                ) from None
        return self.node(node)

    # ---- commands ---------------------------------------------------------------------------

    async def _publish_command(self, topic: str, envelope: dict[str, Any], *, retain: bool = False) -> None:
        if self.identity is not None:
            # A command's own expires_at wins; a desired config (none) lasts RETAINED_TTL.
            envelope = self.identity.sign(topic, envelope, ttl=RETAINED_TTL)
        if not await self.mqtt.publish(topic, contract.encode(envelope), qos=1, retain=retain, wait=True):
            raise ConnectError(f"the broker did not take the command on {topic}")

    async def send(
        self,
        node: str,
        verb: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float = 10.0,
        ttl: float | None = None,
        cmd_id: str | None = None,
        on_state: Callable[[CommandHandle], None] | None = None,
    ) -> CommandHandle:
        """Send ``verb`` to one node; the handle follows its receipts.

        Args:
            node: the node.
            verb: the command.
            args: its arguments.
            timeout: seconds until the handle ends as ``timed_out``.
            ttl: seconds until the node must refuse it as expired (default ``timeout``).
            cmd_id: the command id (default: a fresh one). Sending an id again is
                how a job resumes a step: the node runs an id at most once and
                answers a repeat with the first run's final receipt.
            on_state: called with the handle at every state it reaches (``accepted``,
                then the final one; see :meth:`CommandHandle.on_state`), registered
                before the command is published so no receipt can come first.

        Raises:
            ContractError: a bad node or verb name.
            NodeNotFound: a node this console has never seen (see ``wait_for_node``).
            CommandTimeout: the node is not back after a broker restart within
                ``timeout`` (nothing was sent).
            ConnectError: the broker did not take it.
        """
        topic = contract.node_command_topic(node, verb)
        started = time.monotonic()
        await self._target(node, timeout)
        timeout = max(0.1, timeout - (time.monotonic() - started))
        if cmd_id is not None:
            contract.check_id(cmd_id, "command id")
        envelope = Command.envelope(
            args, id=cmd_id, ttl=ttl if ttl is not None else timeout, reply_to=self.inbox
        )
        loop = asyncio.get_running_loop()
        handle = CommandHandle(envelope["id"], node, verb, loop)
        if on_state is not None:
            handle.on_state(on_state)
        if (earlier := self._commands.get(handle.id)) is not None:  # a resend of a pending id
            self._expire(earlier.id)
        self._commands[handle.id] = handle
        handle._timer = loop.call_later(timeout, self._expire, handle.id)
        try:
            await self._publish_command(topic, envelope)
        except BaseException:
            self._commands.pop(handle.id, None)
            handle._finish("timed_out")
            raise
        return handle

    def _expire(self, cmd_id: str) -> None:
        target = self._commands.pop(cmd_id, None)
        if isinstance(target, CommandHandle):
            target._finish("timed_out")
        elif target is not None:
            target._time_out()

    async def call(
        self, node: str, verb: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0
    ) -> Any:
        """Send and return the node's result (raises like :meth:`CommandHandle.result`)."""
        handle = await self.send(node, verb, args, timeout=timeout)
        return await handle.result()

    async def broadcast(
        self,
        verb: str,
        args: dict[str, Any] | None = None,
        *,
        group: str | None = None,
        timeout: float = 10.0,
        on_progress: Callable[[Broadcast], None] | None = None,
    ) -> Broadcast:
        """Send ``verb`` to every node (or every node of ``group``) in one message.

        The returned :class:`Broadcast` is already running; ``await b.wait()``.
        Nodes the model knows are down are listed as offline and not waited on; so
        are nodes whose retained status says online but that sent no heartbeat
        within one interval, and nodes not back after a broker restart (each
        waited on for at most half of ``timeout`` before sending).
        """
        topic = (
            contract.group_command_topic(group, verb)
            if group is not None
            else contract.fleet_command_topic(verb)
        )
        started = time.monotonic()
        await self.confirm_liveness(timeout / 2)
        members = self.model.in_group(group) if group is not None else list(self.model)
        if any(n.awaiting and n.online for n in members):  # hold for nodes not back yet
            names = [n.name for n in members]
            with contextlib.suppress(ConsoleTimeout):
                await self.wait_for(
                    lambda m: not any((n := m.get(x)) and n.awaiting and n.online for x in names), timeout / 2
                )
        timeout = max(0.1, timeout - (time.monotonic() - started))
        targets = [n.name for n in members if n.online and not n.awaiting]
        offline = [n.name for n in members if not n.online or n.awaiting]
        envelope = Command.envelope(args, ttl=timeout, reply_to=self.inbox)
        loop = asyncio.get_running_loop()
        bc = Broadcast(envelope["id"], verb, group, targets, offline, loop, on_progress)
        self._commands[bc.id] = bc
        bc._timer = loop.call_later(timeout, self._expire, bc.id)
        try:
            await self._publish_command(topic, envelope)
        except BaseException:
            self._commands.pop(bc.id, None)
            bc._time_out()
            raise
        bc._progress()
        return bc

    async def config_get(self, node: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """The node's config as it answers ``config_get`` (``config_version``, ``config``,
        ``kept_versions``)."""
        result = await self.call(node, "config_get", timeout=timeout)
        return result if isinstance(result, dict) else {"result": result}

    def validate_config(self, node: str, values: dict[str, Any]) -> dict[str, Any]:
        """The config ``values`` (dotted keys) would produce on ``node``, validated.

        Raises:
            InvalidConfig: a key or value the node would refuse.
        """
        view = self.model.get(node)
        base = view.config if view is not None and view.config is not None else default_node_config()
        try:
            candidate = apply_dotted(base, values)  # the same merge the node does
        except DevfleetError as exc:
            raise InvalidConfig(exc.message) from None
        try:
            return NODE_CONFIG_SCHEMA.validate(candidate)
        except DevfleetError as exc:
            raise InvalidConfig(f"{node}: {exc.message}") from None

    async def config_set(
        self,
        node: str,
        values: dict[str, Any],
        *,
        expect_version: int | None = None,
        desired: bool = False,
        timeout: float = 10.0,
    ) -> int | None:
        """Change config keys (``{"telemetry.interval": 5}``) on one node, validated
        here first.

        Args:
            node: the node.
            values: dotted keys to values.
            expect_version: refuse (``ConfigConflict``) unless the node is at this version.
            desired: instead of a command, publish it as the node's retained desired
                config (applied whenever the node is online); returns None.
            timeout: seconds to wait for the receipt.

        Returns:
            The node's new config version (None for ``desired``).

        Raises:
            InvalidConfig: refused client-side, nothing sent.
            ConfigConflict: ``expect_version`` was stale.
            CommandFailed: the node refused it.
            CommandTimeout: no answer.
        """
        if not values:
            raise InvalidConfig("nothing to set")
        self.validate_config(node, values)
        args: dict[str, Any] = {"set": dict(values)}
        if expect_version is not None:
            args["expect_version"] = expect_version
        if desired:
            await self._target(node, timeout)  # nothing retained for a node that does not exist
            envelope = Command.envelope(args, ttl=None)
            await self._publish_command(contract.node_topic(node, "cfg/desired"), envelope, retain=True)
            return None
        result = await self.call(node, "configure", args, timeout=timeout)
        version = result.get("config_version") if isinstance(result, dict) else None
        return version if isinstance(version, int) else None

    # ---- components ------------------------------------------------------------------------

    async def components(self, node: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """What ``node`` has: ``installed`` distributions, ``available`` and ``configured``
        components with their state, and import ``errors``."""
        result = await self.call(node, "components", timeout=timeout)
        return result if isinstance(result, dict) else {"result": result}

    async def install(
        self, node: str, spec: str, *, upgrade: bool = False, timeout: float = INSTALL_TIMEOUT
    ) -> dict[str, Any]:
        """pip-install (or upgrade) a component distribution on ``node``; a failed install
        or a component that turns unhealthy after an upgrade is rolled back by the node.

        Raises:
            CommandFailed: refused (``forbidden``/``invalid``) or failed; ``result`` says
                whether it was rolled back.
        """
        result = await self.call(node, "upgrade" if upgrade else "install", {"spec": spec}, timeout=timeout)
        return result if isinstance(result, dict) else {"result": result}

    async def uninstall(self, node: str, spec: str, *, timeout: float = INSTALL_TIMEOUT) -> dict[str, Any]:
        """pip-uninstall a component distribution from ``node``."""
        result = await self.call(node, "uninstall", {"spec": spec}, timeout=timeout)
        return result if isinstance(result, dict) else {"result": result}

    async def component_command(
        self,
        node: str,
        component: str,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float = 10.0,
    ) -> Any:
        """Run one of a component's declared commands (``ledstrip`` ``set_effect``...)."""
        return await self.call(
            node,
            "component",
            {"component": component, "command": command, "args": args or {}},
            timeout=timeout,
        )

    # ---- logs ------------------------------------------------------------------------------

    async def logs(self, node: str | None = None, maxsize: int = 10_000) -> AsyncIterator[LogRecord]:
        """Log records shipped from now on by ``node`` (or every node)."""
        filt = contract.node_filter(node, "logs")
        queue: asyncio.Queue[LogRecord] = asyncio.Queue(maxsize)

        def tap(msg: MqttMessage) -> None:
            match = contract.parse_topic(msg.topic)
            if match is None or match.kind != "logs" or (node is not None and match.node != node):
                return
            try:
                batch = contract.decode(msg.payload)
            except ContractError:
                return
            records = batch.get("records") if isinstance(batch, dict) else None
            for rec in records if isinstance(records, list) else ():
                if not isinstance(rec, dict):
                    continue
                item = LogRecord(
                    node=match.node or "?",
                    seq=rec.get("seq") if isinstance(rec.get("seq"), int) else None,
                    ts=rec.get("ts") if isinstance(rec.get("ts"), (int, float)) else None,
                    level=str(rec.get("level", "")),
                    logger=str(rec.get("logger", "")),
                    msg=str(rec.get("msg", "")),
                )
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(item)

        self._taps.add(tap)
        try:
            async with self.mqtt.subscription([(filt, 1)]):
                while True:
                    yield await queue.get()
        finally:
            self._taps.discard(tap)
