"""The node protocol core: what every node says and answers on the wire, written once.

The agent (:class:`~devfleet_agent.agent.Agent`) and the fleet simulator
(:class:`~devfleet_agent.sim.node.SimNode`) both speak the node contract through
one :class:`NodeCore` each, so the simulator cannot drift from the agent. The
core owns:

- inbound routing: commands to the :class:`~devfleet_agent.commands.Dispatcher`,
  the desired config, the node's own ``status``, and every other topic kind to
  the handler a subsystem routed it to; retained control messages are refused
  and cleared;
- the versioned retained descriptions (``meta``, ``status``, ``state``, ``cfg``;
  see :class:`~devfleet_agent.payloads.Descriptions`), the birth, and their
  repair when a stale will, a purge or junk replaced the node's ``online``;
- duplicate node names (another live process using this name: shown, backed off);
- the built-in commands ``ping``, ``rebirth``, ``config_get`` and ``configure``,
  and applying a config (group subscriptions, then the owner's hook).

What differs between its owners is passed in: the MQTT client, how to publish
JSON (the agent signs), how to run a background task, the config store, the
descriptions, the host facts, an on-applied hook and where node log lines go.
The owner keeps the lifecycle: the agent its loops and persistence, the
simulator its fake metrics and fault injection (the ``admit`` and ``delay``
hooks).

Ideas: Sparkplug B's bdSeq (a birth/death sequence number that orders a birth
against a late will, ``session`` on the wire) and Homie's ``$state`` repair.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from devfleet_base import contract
from devfleet_base.contract import Command, TopicMatch
from devfleet_base.errors import ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage

from .commands import Dispatcher, Handler
from .config_store import ConfigStore, configure_arguments
from .payloads import Descriptions, OwnStatus, config_report, judge_own_status
from .services import Provider, RouteHandler

__all__ = [
    "CLASH_BACKOFF",
    "CLASH_FORGET",
    "REBIRTH_INTERVAL",
    "NodeCore",
    "PublishJson",
    "SessionLink",
    "clash_fields",
]

log = logging.getLogger("devfleet.agent")

REBIRTH_INTERVAL = 5.0
"""Seconds between two births repairing the node's own status (or asked by ``rebirth``)."""
CLASH_BACKOFF = (30.0, 600.0)
"""Reconnect wait (first, most) while another process uses this node name: doubled
at every reconnect, so two such processes take the session from each other once
in minutes rather than four times a second."""
CLASH_FORGET = 900.0
"""Seconds without new evidence after which a name clash is forgotten."""

_NEVER_RETAINED = frozenset(
    {"cmd", "stop", "stop_all", "migrate", "list", "by_name_task", "restart", "restart_agent"}
)
"""Control topics whose messages must not be retained (``spawn`` may be: the node clears it)."""
_SECTIONS = ("meta", "state", "heartbeat")


class SessionLink(Protocol):
    """What the core needs of the MQTT client (:class:`~devfleet_base.mqtt.MqttClient` is one)."""

    reconnect_floor: float
    taken_over: int

    @property
    def connected(self) -> bool: ...

    @property
    def broker(self) -> str: ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, wait: bool = False
    ) -> bool: ...

    async def subscribe(self, filters: Sequence[tuple[str, int]], *, fresh: bool = False) -> None: ...

    async def unsubscribe(self, filters: Sequence[str]) -> None: ...


class PublishJson(Protocol):
    """Publishes ``obj`` as JSON; returns False when it was not sent (see
    :meth:`devfleet_base.mqtt.MqttClient.publish`)."""

    async def __call__(
        self, topic: str, obj: Any, *, qos: int = 0, retain: bool = False, wait: bool = False
    ) -> bool: ...


Spawn = Callable[[Coroutine[Any, Any, Any], str], object]
"""Runs a coroutine as a background task named by the second argument; logs its failure."""
NodeLog = Callable[[int, str], None]
"""Takes one line for the node's own log (level, message)."""


def _python_log(level: int, msg: str) -> None:
    log.log(level, "%s", msg)


def clash_fields(other: dict[str, Any]) -> dict[str, Any]:
    """What a node republishes about another process using its name: only well-formed
    small values (the payload came from the wire and goes back out in our retained status)."""
    instance, session, since = other.get("instance"), other.get("session"), other.get("ts")
    ok_session = isinstance(session, int) and not isinstance(session, bool) and 0 <= session < 2**53
    ok_since = isinstance(since, (int, float)) and not isinstance(since, bool) and 0 <= since < 1e11
    return {
        "instance": instance if isinstance(instance, str) and len(instance) <= 64 else None,
        "session": session if ok_session else None,
        "since": since if ok_since else time.time(),
    }


class NodeCore:
    """One node's protocol on one MQTT client.

    Args:
        session: the node's MQTT client (subscribe, unsubscribe, raw publish for
            clearing retained messages, reconnect back-off for name clashes).
        dispatcher: runs commands; the core registers the built-in ones on it.
        store: the node config (on disk for the agent, in memory for the simulator).
        descriptions: the node's versioned descriptions (its ``bd_seq`` set by the owner).
        facts: returns the host facts shown in ``meta``.
        spawn: runs a background task (each inbound command gets its own).
        publish: publishes JSON (the agent signs what it vouches for); default:
            encoded and published on ``session`` as it is.
        on_applied: awaited with the whole config at start and after every change,
            after the group subscriptions changed (the agent configures its log
            shipper and loops and calls its subsystems' config hooks).
        signer_kid: the key id the node signs with; a retained ``online`` not signed
            with it is repaired (consoles of a signed fleet ignore it). None: unsigned.
        node_log: where the core's notable lines go (default: the ``devfleet.agent``
            logger, which the agent ships); the simulator puts them in its node's log.
        admit: called with every inbound command before anything else; False drops
            it unanswered (the simulator's hung nodes).
        delay: awaited before each built-in command runs, after ``accepted`` (the
            simulator's slow nodes).
    """

    __slots__ = (
        "_admit",
        "_cleared",
        "_config_lock",
        "_delay",
        "_facts",
        "_groups",
        "_last_rebirth",
        "_monotonic_start",
        "_node_log",
        "_on_applied",
        "_providers",
        "_publish",
        "_rebirth_pending",
        "_routes",
        "_session",
        "_signer_kid",
        "_spawn",
        "_state_dirty",
        "clash_seen_at",
        "descriptions",
        "desired_error",
        "dispatcher",
        "name_clash",
        "node",
        "rebirth_interval",
        "started_at",
        "stopping",
        "store",
    )

    def __init__(
        self,
        session: SessionLink,
        *,
        dispatcher: Dispatcher,
        store: ConfigStore,
        descriptions: Descriptions,
        facts: Callable[[], dict[str, Any]],
        spawn: Spawn,
        publish: PublishJson | None = None,
        on_applied: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        signer_kid: str | None = None,
        node_log: NodeLog | None = None,
        admit: Callable[[TopicMatch], bool] | None = None,
        delay: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._session = session
        self.node = descriptions.node
        self.dispatcher = dispatcher
        self.store = store
        self.descriptions = descriptions
        self._facts = facts
        self._spawn = spawn
        self._publish: PublishJson = publish if publish is not None else self._publish_plain
        self._on_applied = on_applied
        self._signer_kid = signer_kid
        self._node_log: NodeLog = node_log or _python_log
        self._admit = admit
        self._delay = delay
        self._routes: dict[str, RouteHandler] = {}
        self._providers: dict[str, dict[str, Provider]] = {}
        self._cleared: set[str] | None = None
        self._config_lock: asyncio.Lock | None = None
        self._groups: tuple[str, ...] | None = None
        """The groups whose subscriptions the core holds (None: none held yet)."""
        self._state_dirty = False
        self.desired_error: dict[str, Any] | None = None
        """Why the last desired config or ``configure`` was refused (shown in ``cfg``)."""
        self.name_clash: dict[str, Any] | None = None
        """Set while another live process uses this node name (shown in status and state)."""
        self.clash_seen_at = 0.0
        """When (monotonic) the last sign of that other process came."""
        self.stopping = False
        """Set by the owner when the node is stopping: its own status is left alone."""
        self.rebirth_interval = REBIRTH_INTERVAL
        self._last_rebirth = -REBIRTH_INTERVAL
        self._rebirth_pending: asyncio.Future[None] | None = None
        self.started_at = time.time()
        self._monotonic_start = time.monotonic()
        self._register_builtins()

    # ---- the owner's controls --------------------------------------------------------

    @property
    def bd_seq(self) -> int:
        """This run's birth/death sequence number (Sparkplug's bdSeq; ``session`` on the wire)."""
        return self.descriptions.bd_seq

    @property
    def uptime(self) -> float:
        """Seconds since this run started."""
        return time.monotonic() - self._monotonic_start

    def mark_started(self) -> None:
        """Note that this run starts now (``uptime``; ``started_at`` in ``meta``)."""
        self.started_at = time.time()
        self._monotonic_start = time.monotonic()

    def restarted(self, session: SessionLink) -> None:
        """Become the next run of the node on a new ``session`` (the simulator's restart
        after a crash): the next ``bd_seq``, a fresh block of versions, and what a
        process forgets when it restarts (not the config, nor the persisted command ids)."""
        self._session = session
        self.descriptions.bd_seq += 1
        self.descriptions.version = 0
        self.dispatcher.restarted()
        self._groups = None
        self._cleared = None
        self.name_clash = None
        self.stopping = False
        self._last_rebirth = -self.rebirth_interval
        self._rebirth_pending = None

    def route(self, kind: str, handler: RouteHandler) -> None:
        """Send inbound messages whose :func:`~devfleet_base.contract.parse_topic` kind
        is ``kind`` (``spawn``, ``by_name_task``, ...) to ``handler``."""
        self._routes[kind] = handler

    def add_provider(self, section: str, key: str, provider: Provider) -> None:
        """Contribute ``key`` to the ``meta``, ``state`` or ``heartbeat`` payload.

        Raises:
            ValueError: an unknown section.
        """
        if section not in _SECTIONS:
            raise ValueError(f"unknown section {section!r} (one of {', '.join(_SECTIONS)})")
        self._providers.setdefault(section, {})[key] = provider

    def add_provided(self, payload: dict[str, Any], section: str) -> None:
        """Add every provider's value of ``section`` to ``payload`` (a failing one is logged)."""
        for key, provider in self._providers.get(section, {}).items():
            try:
                payload[key] = provider()
            except Exception:
                log.exception("%s provider %r failed", section, key)

    # ---- descriptions ----------------------------------------------------------------

    def meta_payload(self) -> dict[str, Any]:
        """``meta``: envelope, host facts, commands, groups, capabilities, broker, providers'."""
        payload = self.descriptions.meta(
            self._facts(),
            commands=self.dispatcher.verbs(),
            config=self.store.config,
            signed_commands=self.dispatcher.verifier is not None,
            started_at=self.started_at,
        )
        payload["broker"] = self._session.broker
        self.add_provided(payload, "meta")
        return payload

    def state_payload(self) -> dict[str, Any]:
        """``state``: envelope, ``name_clash`` while there is one, providers' values."""
        payload = self.descriptions.envelope()
        if self.name_clash is not None:
            payload["name_clash"] = self.name_clash
        self.add_provided(payload, "state")
        return payload

    def cfg_payload(self) -> dict[str, Any]:
        """``cfg``: the reported config, its versions, and ``desired_error`` when refused."""
        return self.descriptions.cfg(self.store, self.desired_error)

    def status_payload(self, status: str) -> dict[str, Any]:
        """``status`` (``online``/``offline``), with ``name_clash`` while there is one."""
        payload = self.descriptions.status(status)
        if self.name_clash is not None:
            payload["name_clash"] = self.name_clash
        return payload

    async def publish_birth(self, *, wait: bool = False) -> bool:
        """Publish every retained description: meta, status online, state, cfg.

        With ``wait``, return whether the broker acknowledged the last of them (QoS 1
        acknowledgements come in order, so the whole birth arrived).
        """
        await self.publish_meta()
        await self.publish_status_online()
        await self.publish_state()
        return await self._publish(
            contract.node_topic(self.node, "cfg"), self.cfg_payload(), qos=1, retain=True, wait=wait
        )

    async def publish_meta(self) -> None:
        await self._publish(contract.node_topic(self.node, "meta"), self.meta_payload(), qos=1, retain=True)

    async def publish_status_online(self) -> None:
        await self._publish(
            contract.node_topic(self.node, "status"), self.status_payload("online"), qos=1, retain=True
        )

    async def publish_state(self) -> None:
        self._state_dirty = False
        await self._publish(contract.node_topic(self.node, "state"), self.state_payload(), qos=1, retain=True)

    async def publish_cfg(self) -> None:
        await self._publish(contract.node_topic(self.node, "cfg"), self.cfg_payload(), qos=1, retain=True)

    def state_changed(self) -> None:
        """Publish the retained state soon (changes in one loop turn are coalesced)."""
        if self._state_dirty:
            return
        self._state_dirty = True
        asyncio.get_running_loop().call_soon(lambda: self._spawn(self.publish_state(), "state"))

    async def _publish_plain(
        self, topic: str, obj: Any, *, qos: int = 0, retain: bool = False, wait: bool = False
    ) -> bool:
        return await self._session.publish(topic, contract.encode(obj), qos=qos, retain=retain, wait=wait)

    async def on_connect(self, *, wait: bool = False) -> bool:
        """After every (re)connect: note a session taken over, publish the birth
        (``wait``: see :meth:`publish_birth`)."""
        self.clash_on_connect()
        return await self.publish_birth(wait=wait)

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

    # ---- inbound ---------------------------------------------------------------------

    def on_message(self, msg: MqttMessage) -> None:
        """Route one inbound message (the MQTT client's ``on_message``)."""
        match = contract.parse_topic(msg.topic)
        if match is None:
            log.debug("ignoring message on %s", msg.topic)
            return
        kind = match.kind
        if kind == "cmd" and self._admit is not None and not self._admit(match):
            return
        if kind in _NEVER_RETAINED and self._retained_control(msg, match):
            return
        if kind == "cmd":
            self._spawn(
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
        elif kind == "cfg_desired":
            self._spawn(self._on_desired(msg), "desired")
        elif kind == "status" and match.node == self.node:
            self._on_own_status(msg)
        elif kind in self._routes:
            self._spawn(self._guarded(self._routes[kind], msg, match), kind)

    def _retained_control(self, msg: MqttMessage, match: TopicMatch) -> bool:
        """Deal with a control message the broker holds retained; True when it is handled
        here (not to be run). A retained command would run again on every reconnect (a
        retained ``restart`` restarts the node forever): clear it, refuse it, say so."""
        if not msg.payload:
            # Our own clear coming back (or someone else's): nothing to run or answer.
            if self._cleared is not None and msg.topic in self._cleared:
                self._cleared.discard(msg.topic)
                return True
            return msg.retain
        if not msg.retain:
            return False
        self._node_log(
            logging.WARNING,
            f"{msg.topic} arrived retained; control messages are not retained: not run, cleared",
        )
        if self._cleared is None:
            self._cleared = set()
        self._cleared.add(msg.topic)
        self._spawn(self._session.publish(msg.topic, b"", qos=1, retain=True), "clear retained")
        # A command goes on to the dispatcher, which answers it with an error receipt.
        return match.kind != "cmd"

    async def _guarded(self, handler: RouteHandler, msg: MqttMessage, match: TopicMatch) -> None:
        try:
            await handler(msg, match)
        except Exception:
            log.exception("handler for %s failed", msg.topic)

    def _on_own_status(self, msg: MqttMessage) -> None:
        if self.stopping or not self._session.connected:
            return
        try:
            payload = contract.decode(msg.payload) if msg.payload else None
        except ContractError:
            payload = None
        verdict = judge_own_status(
            payload, retained=msg.retain, instance=self.descriptions.instance, started_at=self.started_at
        )
        if (
            verdict.action == "ok"
            and self._signer_kid is not None
            and not _signed_by(payload, self._signer_kid)
        ):
            # In a signed fleet consoles ignore an "online" we did not sign: repair it.
            verdict = OwnStatus("rebirth", verdict.status)
        if verdict.action == "clash":
            self._clash_seen(verdict.other)
            if verdict.status != "online" and not msg.retain:
                self._spawn(self.publish_status_online(), "rebirth")  # its will replaced our birth
        elif verdict.action == "previous":
            # What the previous run left (offline after a restart, lost after a crash):
            # expected, and our birth is already on its way.
            log.info("previous run of this node ended %s", verdict.status or "without a status")
        elif verdict.action == "rebirth":
            # A stale will, a purge or junk replaced our birth while we are alive: be born
            # again, at most once per rebirth_interval (a flood of junk writes must not
            # become a flood of births).
            if self._rebirth_pending is None:
                what = verdict.status if verdict.status is not None else msg.payload[:40]
                self._node_log(
                    logging.WARNING,
                    f"retained status of this node was replaced by {what!r}; publishing the birth again",
                )
            self._spawn(self.rebirth(), "rebirth")

    async def _on_desired(self, msg: MqttMessage) -> None:
        if not msg.payload:
            return  # desired cleared
        match = TopicMatch("cmd", node=self.node, verb="configure", scope="node")
        try:
            payload = contract.decode(msg.payload)
            command = Command.from_wire("configure", payload)
        except ContractError as exc:
            self.desired_error = {"code": exc.code, "message": exc.message}
            await self.publish_cfg()
            return
        if command.id == self.store.applied_id:
            return  # already applied (the retained message comes back on every connect)
        await self.dispatcher.handle(msg.topic, match, msg.payload, on_refused=self._desired_refused)

    async def _desired_refused(self, cmd_id: str, exc: DevfleetError) -> None:
        # A retained desired config is not a conversation: say why in cfg, where the
        # console's drift view looks, not only in a receipt nobody may be waiting for.
        self.desired_error = {"id": cmd_id, **exc.to_wire()}
        await self.publish_cfg()

    # ---- duplicate node names --------------------------------------------------------

    def _clash_seen(self, other: dict[str, Any] | None) -> None:
        """Another process uses this node name: say so once, show it, and back off."""
        self.clash_seen_at = time.monotonic()
        clash = clash_fields(other or {})
        first = self.name_clash is None
        self.name_clash = clash
        if first:
            session = clash["session"] if clash["session"] is not None else "unknown"
            self._node_log(
                logging.ERROR,
                f"another agent process uses the node name {self.node!r} (instance"
                f" {clash['instance'] or 'unknown'}, session {session}): the broker hands the session"
                f" back and forth; backing off (reconnect after {CLASH_BACKOFF[0]:.0f} s, up to"
                f" {CLASH_BACKOFF[1]:.0f} s). Give each node a unique --name",
            )
            self._session.reconnect_floor = CLASH_BACKOFF[0]
            if self._session.connected:
                self._spawn(self.publish_status_online(), "clash status")
                self.state_changed()

    def clash_on_connect(self) -> None:
        """At every connect (:meth:`on_connect` calls it): a session the broker said was
        taken over is a clash; a clash with no news for :data:`CLASH_FORGET` is
        forgotten; otherwise we took the session back, so wait longer next time."""
        session = self._session
        if session.taken_over:
            session.taken_over = 0
            self._clash_seen(None)  # MQTT 5 told us: another client took our session
            return
        if self.name_clash is None:
            return
        if time.monotonic() - self.clash_seen_at > CLASH_FORGET:
            self._node_log(
                logging.INFO,
                f"no sign of the other process named {self.node!r} for {CLASH_FORGET:.0f} s; clash forgotten",
            )
            self.name_clash = None
            session.reconnect_floor = 0.0
            return
        session.reconnect_floor = min(CLASH_BACKOFF[1], max(CLASH_BACKOFF[0], session.reconnect_floor * 2))

    # ---- config ----------------------------------------------------------------------

    async def apply_config(self, config: dict[str, Any]) -> None:
        """Put ``config`` in force: hold the node's subscriptions and those of its
        groups, then await the owner's hook.

        At a change the node's filters are subscribed afresh (the broker hands its
        retained messages over again, so a retained command that ran when it came
        live is refused and cleared now, not at the next reconnect), then the
        previous ones let go: a group left is unsubscribed, the rest stay held once.
        """
        groups = tuple(config.get("groups", []))
        await self._session.subscribe(
            contract.subscriptions_for_node(self.node, groups), fresh=self._groups is not None
        )
        if self._groups is not None:
            await self._session.unsubscribe(
                [f for f, _ in contract.subscriptions_for_node(self.node, self._groups)]
            )
        self._groups = groups
        if self._on_applied is not None:
            await self._on_applied(config)

    # ---- built-in commands -----------------------------------------------------------

    def _register_builtins(self) -> None:
        d = self.dispatcher
        d.register(
            "ping", self._builtin(self._cmd_ping), doc="Answer with uptime and session.", readonly=True
        )
        d.register(
            "rebirth",
            self._builtin(self._cmd_rebirth),
            doc="Publish every retained description again.",
            readonly=True,
        )
        d.register(
            "configure",
            self._builtin(self._cmd_configure),
            doc="Change the node config (set, replace, rollback_to).",
        )
        d.register(
            "config_get",
            self._builtin(self._cmd_config_get),
            doc="Return the config and kept versions.",
            readonly=True,
        )

    def _builtin(self, handler: Handler) -> Handler:
        delay = self._delay
        if delay is None:
            return handler

        async def delayed(cmd: Command) -> Any:
            await delay()
            return await handler(cmd)

        return delayed

    async def _cmd_ping(self, cmd: Command) -> dict[str, Any]:
        return {"pong": True, "node": self.node, "session": self.bd_seq, "uptime": round(self.uptime, 3)}

    async def _cmd_rebirth(self, cmd: Command) -> dict[str, Any]:
        await self.rebirth()
        return {"republished": list(contract.NODE_DESCRIPTIONS)}

    async def _cmd_config_get(self, cmd: Command) -> dict[str, Any]:
        return config_report(self.store)

    async def _cmd_configure(self, cmd: Command) -> dict[str, Any]:
        kwargs = configure_arguments(cmd.args)
        if self._config_lock is None:
            self._config_lock = asyncio.Lock()
        async with self._config_lock:
            try:
                config = self.store.apply(**kwargs, applied_id=cmd.id)
            except DevfleetError as exc:
                self.desired_error = {"id": cmd.id, **exc.to_wire()}
                await self.publish_cfg()
                raise
            self.desired_error = None
            self._node_log(logging.INFO, f"config version {self.store.version} applied (command {cmd.id})")
            await self.apply_config(config)
            await self.publish_cfg()
            await self.publish_meta()
        return {"config_version": self.store.version}


def _signed_by(payload: Any, kid: str) -> bool:
    sig = payload.get("_sig") if isinstance(payload, dict) else None
    return isinstance(sig, dict) and sig.get("kid") == kid
