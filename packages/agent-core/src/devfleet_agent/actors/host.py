"""The actor host: every devfleet agent is a Wactorz remote node.

:class:`ActorHost` is an agent subsystem. It routes the Wactorz remote-node
topics (``nodes/{node}/spawn|stop|stop_all|list|migrate|reply/{id}`` and
``agents/by-name/{name}/task``) to a ONE_FOR_ONE
:class:`~devfleet_agent.supervisor.Supervisor` of
:class:`~devfleet_agent.actors.DynamicActor` children, and publishes what they
do: ``agents/{id}/heartbeat`` every 10 s, ``agents/{id}/logs`` for log lines,
alerts and supervisor events, ``nodes/{node}/agents`` for ``list``,
``nodes/{node}/migrate_result`` for ``migrate``. It also implements the
:class:`~devfleet_agent.actors.ActorBus` the actors' ``agent`` object talks to.

Every topic comes from :mod:`devfleet_base.contract`, and every publish goes
through :meth:`Agent.publish_json` (so ``--loglevel DEBUG`` shows it, counted).

The choices the Wactorz documentation leaves open are written down in
``docs/contract.md`` ("Remote nodes (Wactorz)"); the short version:

- Every spawn/stop/stop_all/migrate gets a receipt on ``nodes/{node}/receipts``
  (``cmd`` is the leaf; ``id`` is the payload's ``_id`` or a fresh one).
  Refusals also go to ``agents/{id}/logs`` (level ``error``) when the payload
  names a valid actor, and to the agent's log.
- Keys starting with ``_`` are transport, not config: ``_sig`` (signature),
  ``_id`` (receipt id), ``_state`` (persisted values written before setup),
  ``_migration`` (``{"id", "from_node"}``) and ``_expires_at`` (a late
  migration spawn is refused). They are stripped before the spec is kept.
- Migration waits for the actor's heartbeat from the target whose
  ``migration`` field echoes the migration id (a Wactorz runner, which has no
  such field, is believed on ``node`` alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devfleet_base import contract
from devfleet_base.contract import Receipt, TopicMatch
from devfleet_base.errors import Code, CommandError, ContractError, DevfleetError, SignatureError
from devfleet_base.mqtt import Inbound
from devfleet_base.signing import NodeVerifier

from ..installer import check_requirement, pip_install
from ..supervisor import ChildInfo, ChildNotFoundError, SupervisorEvent
from .dynamic import DynamicActor, StateStore, dynamic_factory, state_file
from .spec import SpawnSpec
from .wactorz_compat import reply_topic as _valid_reply_topic
from .wactorz_compat import task_body, wactorz_key_from_env
from .wactorz_migration import MAIN, return_to_main
from .wactorz_migration import ack as migration_ack
from .wactorz_verbs import WactorzVerbs, delete_leftovers, read_control

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = [
    "DEFAULT_MIGRATE_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "ActorHost",
    "SendTimeoutError",
    "check_requirements",
]

log = logging.getLogger("devfleet.actors")

HEARTBEAT_INTERVAL: Final = 10.0
"""Seconds between ``agents/{id}/heartbeat`` messages (Wactorz: every 10 s)."""

DEFAULT_MIGRATE_TIMEOUT: Final = 30.0
"""Seconds a migration waits for the target to report the actor running."""

MAX_MIGRATE_TIMEOUT: Final = 600.0

START_TIMEOUT: Final = 60.0
"""Seconds a spawn waits for the actor's setup before answering (the actor keeps going)."""

_SPAWN_TRANSPORT_KEYS = ("_sig", "_id", "_state", "_migration", "_expires_at")


class SendTimeoutError(CommandError, TimeoutError):
    """``send_to`` got no reply in time."""

    code = Code.TIMEOUT


class _Refused(DevfleetError):
    """Internal: a control message is refused; ``code`` says why."""


class _BadControl(Exception):
    """Internal: a control message could not be read or authenticated."""

    def __init__(self, error: DevfleetError, request_id: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


def check_requirements(requirements: tuple[str, ...] | list[str]) -> list[str]:
    """Validate a spawn's ``install`` entries with the installer's strict pattern.

    Raises:
        ContractError: an entry is not a plain requirement (an option, URL, path, ...).
    """
    for item in requirements:
        try:
            check_requirement(item)
        except CommandError as exc:
            raise ContractError(f"install entry {item!r}: {exc.message}") from None
    return list(requirements)


async def _pip_install(requirements: list[str], settings: Any) -> None:
    """Install ``requirements`` with the agent's installer; raise CommandError on failure."""
    result = await pip_install(requirements, settings=settings)
    if not result.ok:
        why = "timed out" if result.timed_out else f"pip exited with {result.returncode}"
        raise CommandError(
            f"install of {', '.join(requirements)} failed ({why}): {result.output_tail[-500:]}",
            code=Code.FAILED,
        )


@dataclass(eq=False)
class _Hosted:
    """One actor this node runs (or ran and failed)."""

    spec: SpawnSpec
    info: ChildInfo
    migration: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    origin: dict[str, Any] | None = None
    """On a signed node: the operator-signed spawn (``{"topic", "payload"}``) this actor's
    code came from; a migration carries it so the target can check the code."""


class ActorHost:
    """Makes an agent a Wactorz remote node (see the module docstring).

    Args:
        agent: the agent to serve; routes and providers are registered now.
        heartbeat_interval: seconds between actor heartbeats.
        start_timeout: seconds a spawn waits for the actor's setup before answering.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.agent = agent
        self.heartbeat_interval = heartbeat_interval
        self.start_timeout = start_timeout
        # The node's one supervisor, shared with components (whose children are named
        # "component:{name}"; ':' never occurs in an actor name).
        self.supervisor = agent.supervisor
        agent.on_supervisor_event(self._on_event)
        self._hosted: dict[str, _Hosted] = {}
        self._replies: dict[str, asyncio.Future[Any]] = {}
        self._migrations: dict[str, tuple[str, str, asyncio.Future[None]]] = {}
        self._lock = asyncio.Lock()
        self._heartbeat_task: asyncio.Task[None] | None = None
        identity = agent.identity
        self._peers = NodeVerifier(identity.trusted) if identity is not None else None
        agent.route("spawn", self._on_spawn)
        agent.route("stop", self._on_stop)
        agent.route("stop_all", self._on_stop_all)
        agent.route("list", self._on_list)
        agent.route("migrate", self._on_migrate)
        agent.route("handoff", self._on_handoff)
        agent.route("reply", self._on_reply)
        agent.route("by_name_task", self._on_task)
        agent.route("agent_heartbeat", self._on_actor_heartbeat)
        WactorzVerbs(self)  # desired_state, restart, restart_agent (wactorz_verbs)
        agent.dispatcher.wactorz_key = wactorz_key_from_env()  # Wactorz-signed control, if keyed
        agent.add_provider("heartbeat", "agents", self.names)
        agent.add_provider("heartbeat", "agent_count", lambda: len(self._children()))
        agent.add_provider("state", "actors", self.state)
        agent.add_provider("meta", "actor_host", self._meta)

    # ---- subsystem -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the actor heartbeat loop."""
        self._heartbeat_task = self.agent.spawn(self._heartbeat_loop(), "actor heartbeats")

    async def stop(self) -> None:
        """Stop every actor (deliberately: no restarts) and the heartbeat loop."""
        await self._stop_actors()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        for fut in self._replies.values():
            if not fut.done():
                fut.cancel()

    # ---- views -----------------------------------------------------------------------

    @property
    def node(self) -> str:
        """The node this host runs on (the :class:`ActorBus` property)."""
        return self.agent.node

    @property
    def state_dir(self) -> Path:
        """Where actors persist their values."""
        return self.agent.settings.resolved_state_dir

    def state_path(self, name: str) -> Path:
        """The state file of actor ``name``: ``{data_dir}/actors/{name}.json``, or
        Wactorz's ``agentflow_{name}_state.json`` in a ``--state-dir`` given
        explicitly (to share the files with a Wactorz runner)."""
        if self.agent.settings.state_dir:
            return state_file(self.state_dir, name)
        return self.state_dir / f"{name}.json"

    def _children(self) -> dict[str, ChildInfo]:
        """The supervisor's children that are actors (not components)."""
        return {name: info for name, info in self.supervisor.children.items() if ":" not in name}

    async def _stop_actors(self) -> None:
        """Stop every actor deliberately (components are not ours to stop)."""
        for name in list(self._children()):
            with contextlib.suppress(ChildNotFoundError):
                await self.supervisor.stop_child(name)

    def names(self) -> list[str]:
        """The names of the running actors, sorted."""
        return sorted(self._children())

    def agents(self) -> list[dict[str, Any]]:
        """The running actors as ``{"name", "actor_id", "node", "state"}`` (the bus's ``agents()``)."""
        return [
            {"name": name, "actor_id": contract.actor_id(name), "node": self.node, "state": info.state}
            for name, info in sorted(self._children().items())
        ]

    def state(self) -> dict[str, Any]:
        """The ``actors`` section of ``nodes/{node}/state``: running and failed actors."""
        out: dict[str, Any] = {}
        for name, hosted in sorted(self._hosted.items()):
            info = hosted.info
            out[name] = {
                "actor_id": contract.actor_id(name),
                "state": info.state,
                "restarts": info.restarts,
                "max_restarts": info.policy.max_restarts,
                "last_error": info.last_error,
                "type": hosted.spec.type,
                "description": hosted.spec.description,
            }
        return out

    def _meta(self) -> dict[str, Any]:
        return {
            "allow_code": self.agent.settings.allow_code,
            "allow_install": self.agent.settings.allow_install,
            "heartbeat_interval": self.heartbeat_interval,
        }

    # ---- the ActorBus ----------------------------------------------------------------

    async def publish(self, topic: str, data: Any) -> None:
        """Publish an actor's data (QoS 1); dropped with a warning while offline."""
        if not await self.agent.publish_json(topic, data, qos=1):
            log.warning("actor publish to %s dropped (not connected)", topic)

    async def log(self, actor_id: str, name: str, level: str, message: str) -> None:
        """Publish one log line on ``agents/{actor_id}/logs``."""
        await self._actor_record(name, "log", level, message)

    async def alert(self, actor_id: str, name: str, severity: str, message: str) -> None:
        """Publish an alert on ``agents/{actor_id}/logs``."""
        await self._actor_record(name, "alert", severity, message, severity=severity)

    async def send_to(self, name: str, payload: Any, timeout: float = 30.0) -> Any:
        """Send a task to the actor ``name`` on any node and return its reply.

        The request goes to ``agents/by-name/{name}/task`` as
        ``{"_remote_task": true, "_reply_topic": "nodes/{node}/reply/{id}", "payload": ...}``,
        a JSON object merged with the envelope instead (``contract.task_envelope``: what
        Wactorz handlers expect).

        Args:
            name: the target actor's name.
            payload: any JSON value.
            timeout: seconds to wait for the reply.

        Returns:
            The reply object (an error object if the target failed or has no handler).

        Raises:
            SendTimeoutError: no reply within ``timeout`` (also a ``TimeoutError``).
            CommandError: not connected to the broker (``unavailable``).
            ContractError: ``name`` is not a valid actor name.
        """
        topic = contract.by_name_task_topic(name)
        reply_id = contract.new_id()
        reply_topic = contract.node_reply_topic(self.node, reply_id)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[reply_id] = fut
        try:
            request = contract.task_envelope(payload, reply_topic)
            if not await self.agent.publish_json(topic, request, qos=1):
                raise CommandError(f"send_to {name!r}: not connected to the broker", code=Code.UNAVAILABLE)
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise SendTimeoutError(
                    f"send_to {name!r}: no reply within {timeout:g} s (is an actor of that name running?)"
                ) from None
        finally:
            self._replies.pop(reply_id, None)

    # ---- publishing helpers ----------------------------------------------------------

    async def _actor_record(self, name: str, kind: str, level: str, message: str, **extra: Any) -> None:
        record: dict[str, Any] = {
            "type": kind,
            "actor_id": contract.actor_id(name),
            "name": name,
            "node": self.node,
            "level": level,
            "message": message,
            "timestamp": time.time(),
        }
        record.update(extra)
        logging.getLogger(f"devfleet.actor.{name}").debug("%s: %s", level, message)
        await self.agent.publish_json(contract.agent_topic(contract.actor_id(name), "logs"), record, qos=1)

    async def _answer(
        self,
        cmd: str,
        request_id: str | None,
        *,
        name: str | None = None,
        error: DevfleetError | None = None,
        result: Any = None,
    ) -> None:
        """A receipt on ``nodes/{node}/receipts``; a refusal also goes to the actor's logs."""
        status = "ok" if error is None else "error"
        receipt = Receipt(
            request_id or contract.new_id(),
            self.node,
            cmd,
            status,
            code=error.code if error else None,
            message=error.message[:4096] if error else None,
            result=result,
            ts=time.time(),
        )
        if error is not None:
            log.warning("%s%s refused: %s", cmd, f" {name}" if name else "", error.message)
            if name is not None and _valid_name(name):
                await self._actor_record(
                    name, "error", "error", f"{cmd} refused: {error.message}", code=error.code
                )
        await self.agent.publish_json(contract.node_topic(self.node, "receipts"), receipt.to_wire(), qos=1)

    async def _heartbeat(self, name: str) -> None:
        hosted = self._hosted.get(name)
        if hosted is None:
            return
        info = hosted.info
        now = time.time()
        payload = {
            "actor_id": contract.actor_id(name),
            "name": name,
            "node": self.node,
            "node_id": contract.node_id(self.node),
            "state": info.state,
            "timestamp": now,
            "restarts": info.restarts,
            "max_restarts": info.policy.max_restarts,
            "last_error": info.last_error,
            "type": hosted.spec.type,
            "description": hosted.spec.description,
            "poll_interval": hosted.spec.poll_interval,
            "uptime": round(now - info.started_at, 1) if info.started_at else 0.0,
            "migration": hosted.migration,
        }
        await self.agent.publish_json(contract.agent_topic(contract.actor_id(name), "heartbeat"), payload)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.agent.mqtt.wait_connected()
            for name in self.names():
                await self._heartbeat(name)
            await asyncio.sleep(self.heartbeat_interval)

    async def _on_event(self, event: SupervisorEvent) -> None:
        name = event.child
        if ":" in name:
            return  # a component's event: the ComponentHost reports those
        hosted = self._hosted.get(name)
        level = {"crashed": "warning", "restarting": "warning", "fatal": "fatal"}.get(event.kind, "info")
        message = f"{event.kind}: {event.detail}" if event.detail else event.kind
        await self._actor_record(name, "event", level, message, event=event.to_wire())
        if hosted is not None and event.kind in ("started", "fatal", "stopped"):
            hosted.settled.set()
        if event.kind == "started":
            await self._heartbeat(name)
        # Stopped actors leave the registry; failed ones stay listed in state until
        # stopped or spawned again.
        if (
            event.kind == "stopped"
            and hosted is not None
            and self._hosted.get(name) is hosted
            and hosted.info.state == "stopped"
        ):
            del self._hosted[name]
        self.agent.state_changed()

    # ---- inbound: spawn --------------------------------------------------------------

    def _read_control(
        self, msg: Inbound, cmd: str, *, source: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """Decode and authenticate a control payload.

        Returns:
            The payload and its request id (``_id``), if it has a valid one.

        Raises:
            _BadControl: not a JSON object, or (on a node with a signing identity)
                unsigned, tampered with or replayed.
        """
        try:
            payload = contract.decode(msg.payload)
        except ContractError as exc:
            raise _BadControl(exc, None) from None
        if not isinstance(payload, dict):
            error = ContractError(f"{cmd}: expected a JSON object, got {type(payload).__name__}")
            raise _BadControl(error, None)
        request_id = payload.get("_id")
        if not (isinstance(request_id, str) and re.fullmatch(contract.ID_PATTERN, request_id)):
            request_id = None
        try:  # devfleet's _sig, or a Wactorz main's signature in user properties
            dispatcher = self.agent.dispatcher
            if cmd == "spawn" and self._peers is not None and _node_signed(payload):
                self._check_peer_spawn(msg.topic, payload, source)
            elif not dispatcher.check_wactorz_signature(msg.topic, msg.payload, msg.user_properties):
                dispatcher.check_signature(msg.topic, payload)
            # Like a command's expires_at; a Wactorz main machine sends none (then none applies).
            expires = payload.get("_expires_at")
            if expires is not None and (
                not isinstance(expires, (int, float))
                or isinstance(expires, bool)
                or not math.isfinite(expires)
            ):
                raise ContractError(f"{cmd}._expires_at must be Unix time in seconds")
            if expires is not None and time.time() > expires:
                raise ContractError(f"{cmd} expired before it arrived; not run", code=Code.EXPIRED)
        except DevfleetError as exc:
            raise _BadControl(exc, request_id) from None
        return payload, request_id

    def _check_peer_spawn(self, topic: str, payload: dict[str, Any], handoff_from: str | None) -> None:
        """A spawn signed by another node: a migration. Believe it only with the operator's
        word for it: the spawn is signed by the source node (certified by an operator), it
        carries the operator-signed ``migrate`` naming this node as the target (spent once
        here), and the code is the code an operator signed in the original spawn.

        Raises:
            SignatureError: any of these does not hold.
        """
        assert self._peers is not None and self.agent.dispatcher.verifier is not None
        operators = self.agent.dispatcher.verifier
        sig = payload["_sig"]
        source, _ = self._peers.node_key(sig.get("cert"))
        if handoff_from is not None and source != handoff_from:
            raise SignatureError(f"a handoff from {handoff_from!r} was signed by {source!r}")
        self._peers.check(source, topic, payload)
        migration = payload.get("_migration")
        warrant = migration.get("warrant") if isinstance(migration, dict) else None
        origin = migration.get("origin") if isinstance(migration, dict) else None
        if not (isinstance(warrant, dict) and isinstance(origin, dict)):
            raise SignatureError(f"a spawn from node {source!r} needs the operator's migrate and spawn")
        w_topic, w_payload = warrant.get("topic"), warrant.get("payload")
        if w_topic != contract.node_topic(source, "migrate") or not isinstance(w_payload, dict):
            raise SignatureError(f"the migrate carried by {source!r} was not addressed to {source!r}")
        if w_payload.get("target_node") != self.node or w_payload.get("name") != payload.get("name"):
            raise SignatureError(f"no operator asked {source!r} to move {payload.get('name')!r} here")
        o_topic, o_payload = origin.get("topic"), origin.get("payload")
        o_match = contract.parse_topic(o_topic) if isinstance(o_topic, str) else None
        if o_match is None or o_match.kind != "spawn" or not isinstance(o_payload, dict):
            raise SignatureError("the original spawn carried by a migration is malformed")
        operators.check(str(o_topic), o_payload, evidence=True)
        for key, default in (("name", None), ("code", None), ("install", [])):
            if o_payload.get(key, default) != payload.get(key, default):
                raise SignatureError(f"the migrated {key!r} is not what an operator signed")
        operators.check(str(w_topic), w_payload)  # last: spends the warrant

    async def _on_spawn(self, msg: Inbound, match: TopicMatch) -> None:
        if match.node != self.node or not msg.payload:
            return  # an empty payload is our own clear of the retained spawn
        try:
            await self._spawn_message(msg)
        finally:
            # Clear unconditionally: a retained spawn delivered live has retain=0.
            await self.agent.mqtt.publish(msg.topic, b"", qos=1, retain=True)

    async def _on_handoff(self, msg: Inbound, match: TopicMatch) -> None:
        """A migrating actor's spawn from node ``match.node``; never retained, so nothing
        to clear (and the topic is the source's to write, not ours)."""
        if match.name != self.node or not msg.payload:
            return
        await self._spawn_message(msg, source=match.node)

    async def _spawn_message(self, msg: Inbound, source: str | None = None) -> None:
        try:
            payload, request_id = self._read_control(msg, "spawn", source=source)
        except _BadControl as bad:
            await self._answer("spawn", bad.request_id, error=bad.error)
            return
        name: str | None = None
        try:
            migration = payload.get("_migration")
            if source is not None and (
                not isinstance(migration, dict) or migration.get("from_node") != source
            ):
                # The topic names the publisher (the broker's ACL vouches for it): a
                # handoff must be a migration from that very node.
                raise ContractError(f"a handoff from {source} must carry _migration.from_node {source!r}")
            raw_name = payload.get("name")
            name = raw_name if isinstance(raw_name, str) else None
            state = payload.get("_state", payload.get("_initial_state"))  # devfleet's, Wactorz's
            if state is not None and not isinstance(state, dict):
                raise ContractError("spawn._state must be a JSON object")
            migration_id = migration.get("id") if isinstance(migration, dict) else None
            origin = _origin(msg.topic, payload)
            spec = SpawnSpec.from_payload({k: v for k, v in payload.items() if not k.startswith("_")})
        except DevfleetError as exc:
            await self._answer("spawn", request_id, name=name, error=exc)
            await migration_ack(self, name, payload.get("_migration_token"), exc.message)
            return
        async with self._lock:
            try:
                info = await self._spawn(
                    spec,
                    state=state,
                    migration=migration_id if isinstance(migration_id, str) else None,
                    origin=origin,
                )
            except DevfleetError as exc:
                await self._answer("spawn", request_id, name=spec.name, error=exc)
                await migration_ack(self, spec.name, payload.get("_migration_token"), exc.message)
                return
        refused = f"it failed to start: {info.last_error}" if info.state == "failed" else None
        await migration_ack(self, spec.name, payload.get("_migration_token"), refused)
        if info.state == "failed":
            error = CommandError(f"actor {spec.name!r} failed to start: {info.last_error}", code=Code.FAILED)
            await self._answer("spawn", request_id, name=spec.name, error=error)
        else:
            await self._answer(
                "spawn",
                request_id,
                name=spec.name,
                result={"name": spec.name, "actor_id": contract.actor_id(spec.name), "state": info.state},
            )

    async def _spawn(
        self,
        spec: SpawnSpec,
        *,
        state: dict[str, Any] | None,
        migration: str | None,
        origin: dict[str, Any] | None = None,
    ) -> ChildInfo:
        """Start ``spec`` under the supervisor (the caller holds the lock).

        Raises:
            DevfleetError: refused (code, install, duplicate name).
        """
        settings = self.agent.settings
        if not settings.allow_code:
            raise _Refused(
                "this node does not accept actor code (start the agent with --allow-code "
                "or allow_code = true)",
                code=Code.FORBIDDEN,
            )
        requirements = check_requirements(spec.install)
        if requirements and not settings.allow_install:
            raise _Refused(
                "this node does not install packages (start the agent with --allow-install "
                "or allow_install = true)",
                code=Code.FORBIDDEN,
            )
        if spec.node is not None and spec.node != self.node:
            log.warning(
                "spawn of %s names node %r but arrived at %s; running it here",
                spec.name,
                spec.node,
                self.node,
            )
        if self.supervisor.get(spec.name) is not None:
            if not spec.replace:
                raise _Refused(
                    f"actor {spec.name!r} is already running on {self.node}; ignored "
                    '(send "replace": true to restart it)',
                    code=Code.CONFLICT,
                )
            log.info("replacing actor %s", spec.name)
            with contextlib.suppress(ChildNotFoundError):
                await self.supervisor.stop_child(spec.name)
        if requirements:
            log.info("installing %s for actor %s", ", ".join(requirements), spec.name)
            await _pip_install(requirements, settings)
        if state is not None:
            try:
                StateStore(self.state_path(spec.name)).replace_all(state)
            except (ValueError, DevfleetError) as exc:
                raise ContractError(f"spawn._state could not be stored: {exc}") from None
        spec = _without_replace(spec)
        factory = dynamic_factory(spec, self, state_path=self.state_path(spec.name))
        # start_child(wait=False) registers the child without yielding to the loop, so
        # the record below exists before the child's first event.
        info = await self.supervisor.start_child(spec.name, factory, spec.policy(), wait=False)
        hosted = _Hosted(spec, info, migration, origin=origin)
        self._hosted[spec.name] = hosted
        self.agent.state_changed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hosted.settled.wait(), self.start_timeout)
        log.info("actor %s spawned (%s)", spec.name, info.state)
        return info

    # ---- inbound: stop, stop_all, list -----------------------------------------------

    async def _on_stop(self, msg: Inbound, match: TopicMatch) -> None:
        if match.node != self.node:
            return
        try:  # an object, or the Wactorz bare-name form
            payload, request_id = read_control(self, msg, "stop")
        except DevfleetError as exc:
            await self._answer("stop", None, error=exc)
            return
        name = payload.get("name")
        if not isinstance(name, str) or not _valid_name(name):
            await self._answer(
                "stop", request_id, error=ContractError(f'stop: "name" must be an actor name, got {name!r}')
            )
            return
        async with self._lock:
            running = self.supervisor.get(name) is not None
            hosted = self._hosted.pop(name, None)
            if running:
                with contextlib.suppress(ChildNotFoundError):
                    await self.supervisor.stop_child(name)
            elif hosted is None and payload.get("delete") is True:
                pass  # a delete of a stopped actor removes what it left (Wactorz: migration's end)
            elif hosted is None:
                error = CommandError(f"no actor named {name!r} on {self.node}", code=Code.NOT_FOUND)
                await self._answer("stop", request_id, name=name, error=error)
                return
        deleted = payload.get("delete") is True
        if deleted:
            await delete_leftovers(self, name, keep_topics=payload.get("keep_topics") is True)
        self.agent.state_changed()
        log.info("actor %s stopped on request%s", name, " (deleted)" if deleted else "")
        result = {"name": name, "stopped": True, **({"deleted": True} if deleted else {})}
        await self._answer("stop", request_id, name=name, result=result)

    async def _on_stop_all(self, msg: Inbound, match: TopicMatch) -> None:
        if match.node != self.node:
            return
        try:
            _, request_id = self._read_control(msg, "stop_all")
        except _BadControl as bad:
            await self._answer("stop_all", bad.request_id, error=bad.error)
            return
        async with self._lock:
            names = self.names()
            await self._stop_actors()
            self._hosted.clear()
        log.info("stop_all: stopped %d actor(s); shutting the agent down", len(names))
        await self._answer("stop_all", request_id, result={"stopped": names})
        self.agent.request_stop("stop_all")

    async def _on_list(self, msg: Inbound, match: TopicMatch) -> None:
        if match.node != self.node:
            return
        agents = [
            {
                "name": name,
                "actor_id": contract.actor_id(name),
                "state": info.state,
                "restarts": info.restarts,
                "description": self._hosted[name].spec.description if name in self._hosted else "",
            }
            for name, info in sorted(self._children().items())
        ]
        await self.agent.publish_json(
            contract.node_topic(self.node, "agents"),
            {"node": self.node, "agents": agents, "timestamp": time.time()},
            qos=1,
        )

    # ---- inbound: migrate ------------------------------------------------------------

    async def _on_migrate(self, msg: Inbound, match: TopicMatch) -> None:
        if match.node != self.node:
            return
        try:
            payload, _ = self._read_control(msg, "migrate")
        except _BadControl as bad:
            await self._migrate_failed(None, bad.error.message)
            return
        warrant = {"topic": msg.topic, "payload": payload}
        name: str | None = None
        try:
            raw = payload.get("name")
            name = raw if isinstance(raw, str) and _valid_name(raw) else None
            if name is None:
                raise ContractError(f'migrate: "name" must be an actor name, got {raw!r}')
            target = payload.get("target_node")
            if target == MAIN:  # routed through a main (Wactorz): hand the actor back
                await return_to_main(self, payload)
                return
            if not isinstance(target, str):
                raise ContractError(f'migrate: "target_node" must be a node name, got {target!r}')
            contract.check_name(target, "target_node")
            if target == self.node:
                raise ContractError(f"migrate: {name!r} already runs on {target}")
            timeout = payload.get("timeout", DEFAULT_MIGRATE_TIMEOUT)
            if (
                not isinstance(timeout, (int, float))
                or isinstance(timeout, bool)
                or not math.isfinite(timeout)
                or not 0 < timeout <= MAX_MIGRATE_TIMEOUT
            ):
                raise ContractError(f"migrate: timeout must be within (0, {MAX_MIGRATE_TIMEOUT:g}] seconds")
            hosted = self._hosted.get(name)
            if hosted is None or self.supervisor.get(name) is None:
                raise CommandError(f"no actor named {name!r} runs on {self.node}", code=Code.NOT_FOUND)
            if name in self._migrations:
                raise CommandError(f"actor {name!r} is already migrating", code=Code.BUSY)
        except DevfleetError as exc:
            await self._migrate_failed(name, exc.message)
            return
        await self._migrate(hosted, target, float(timeout), warrant)

    async def _migrate_failed(self, name: str | None, error: str) -> None:
        log.warning("migration of %s failed: %s", name, error)
        if name is not None:
            await self._actor_record(name, "error", "error", f"migrate failed: {error}")
        await self.agent.publish_json(
            contract.node_topic(self.node, "migrate_result"),
            {"success": False, "error": error, "agent": name, "from_node": self.node},
            qos=1,
        )

    async def _migrate(self, hosted: _Hosted, target: str, timeout: float, warrant: dict[str, Any]) -> None:
        name = hosted.spec.name
        aid = contract.actor_id(name)
        migration_id = contract.new_id()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._migrations[name] = (target, migration_id, done)
        heartbeat_filter = contract.agent_topic(aid, "heartbeat")
        try:
            await self.agent.mqtt.subscribe([(heartbeat_filter, 0)])
            spawn = hosted.spec.to_payload(node=target)
            spawn.pop("replace", None)
            spawn["_state"] = StateStore(self.state_path(name)).snapshot()
            spawn["_migration"] = {"id": migration_id, "from_node": self.node}
            spawn["_expires_at"] = time.time() + timeout
            # Under the source's own subtree, so a per-node broker ACL allows it (docs/contract.md).
            spawn_topic = contract.handoff_topic(self.node, target)
            identity = self.agent.identity
            if identity is not None:
                if hosted.origin is None:
                    raise CommandError(
                        f"{name!r} has no operator-signed spawn to show the target", code=Code.FORBIDDEN
                    )
                spawn["_migration"].update(warrant=warrant, origin=hosted.origin)
                spawn = identity.sign(spawn_topic, spawn)
            log.info("migrating %s to %s (waiting up to %g s)", name, target, timeout)
            if not await self.agent.publish_json(spawn_topic, spawn, qos=1):
                raise CommandError("not connected to the broker", code=Code.UNAVAILABLE)
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout)
            except TimeoutError:
                raise CommandError(
                    f"node {target!r} did not report {name!r} running within {timeout:g} s; "
                    f"the actor keeps running on {self.node}",
                    code=Code.TIMEOUT,
                ) from None
        except DevfleetError as exc:
            await self._migrate_failed(name, exc.message)
            return
        finally:
            self._migrations.pop(name, None)
            await self.agent.mqtt.unsubscribe([heartbeat_filter])
        async with self._lock:
            if self._hosted.get(name) is hosted:
                del self._hosted[name]
            with contextlib.suppress(ChildNotFoundError):
                await self.supervisor.stop_child(name)
        self.agent.state_changed()
        log.info("actor %s migrated to %s", name, target)
        await self._actor_record(name, "log", "info", f"migrated from {self.node} to {target}")
        await self.agent.publish_json(
            contract.node_topic(self.node, "migrate_result"),
            {"success": True, "agent": name, "from_node": self.node, "to_node": target},
            qos=1,
        )

    async def _on_actor_heartbeat(self, msg: Inbound, match: TopicMatch) -> None:
        if not self._migrations or not msg.payload:
            return
        try:
            beat = contract.decode(msg.payload)
        except ContractError:
            return
        if not isinstance(beat, dict):
            return
        for name, (target, migration_id, done) in list(self._migrations.items()):
            if (
                match.ident == contract.actor_id(name)
                and beat.get("node") == target
                and beat.get("migration", migration_id) == migration_id
                and beat.get("state", "running") == "running"
                and not done.done()
            ):
                if self._peers is not None and not self._peers.valid(target, msg.topic, beat):
                    # In a signed fleet only the target itself can confirm a migration.
                    log.warning("ignoring a heartbeat of %s that %s did not sign", name, target)
                    continue
                done.set_result(None)

    # ---- inbound: replies and tasks --------------------------------------------------

    async def _on_reply(self, msg: Inbound, match: TopicMatch) -> None:
        if match.node != self.node or match.ident is None:
            return
        fut = self._replies.get(match.ident)
        if fut is None or fut.done():
            log.debug("reply %s matches no pending send_to", match.ident)
            return
        try:
            fut.set_result(contract.decode(msg.payload))
        except ContractError as exc:
            fut.set_result({"error": f"the reply was not valid JSON: {exc.message}", "code": exc.code})

    async def _on_task(self, msg: Inbound, match: TopicMatch) -> None:
        name = match.name
        if name is None or name not in self._hosted:
            return  # another node's actor (every node hears every by-name task)
        try:
            payload = contract.decode(msg.payload)
        except ContractError as exc:
            log.warning("task for %s refused: %s", name, exc.message)
            await self._actor_record(name, "error", "error", f"task refused: {exc.message}", code=exc.code)
            return
        reply_topic: str | None = None
        task = payload
        if isinstance(payload, dict):
            candidate = payload.get("_reply_topic")
            if candidate is not None:
                reply_topic = _valid_reply_topic(candidate)
                if reply_topic is None:
                    log.warning("task for %s names a bad _reply_topic %r; not answering", name, candidate)
            task = task_body(payload)  # devfleet's {"payload": X} or Wactorz's merged envelope
        reply = await self.handle_task(name, task)
        if reply_topic is not None:
            await self.agent.publish_json(reply_topic, reply, qos=1)

    async def handle_task(self, name: str, payload: Any) -> dict[str, Any]:
        """Run the local actor ``name``'s ``handle_task(agent, payload)``.

        Returns:
            The actor's result if it is a JSON object, ``{"result": value}`` for any
            other JSON value, or an error object ``{"error", "code", "agent", "node"}``.
        """
        info = self.supervisor.get(name)
        instance = info.instance if info is not None else None
        try:
            if not isinstance(instance, DynamicActor):
                state = info.state if info is not None else "not running"
                raise CommandError(f"actor {name!r} is {state}; try again", code=Code.UNAVAILABLE)
            result = await instance.handle_task(payload)
            wrapped = result if isinstance(result, dict) else {"result": result}
            contract.encode(wrapped)
        except DevfleetError as exc:
            return {"error": exc.message, "code": exc.code, "agent": name, "node": self.node}
        except (TypeError, ValueError) as exc:
            message = f"handle_task returned a value that is not JSON: {exc}"
            return {"error": message, "code": Code.FAILED, "agent": name, "node": self.node}
        return wrapped


def _valid_name(name: str) -> bool:
    try:
        contract.check_name(name, "actor name")
    except ContractError:
        return False
    return True


def _node_signed(payload: dict[str, Any]) -> bool:
    sig = payload.get("_sig")
    return isinstance(sig, dict) and isinstance(sig.get("kid"), str) and sig["kid"].startswith("node:")


def _origin(topic: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The operator-signed spawn an actor's code comes from (None when unsigned)."""
    if "_sig" not in payload:
        return None
    if _node_signed(payload):  # a migration: it brought the original along
        migration = payload.get("_migration")
        origin = migration.get("origin") if isinstance(migration, dict) else None
        return origin if isinstance(origin, dict) else None
    return {"topic": topic, "payload": payload}


def _without_replace(spec: SpawnSpec) -> SpawnSpec:
    """The spec as kept (and migrated): ``replace`` applies to one spawn only."""
    if not spec.replace:
        return spec
    return SpawnSpec.from_payload({**spec.to_payload(), "replace": False})
