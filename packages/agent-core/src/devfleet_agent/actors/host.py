"""The actor host: every devfleet agent is a Wactorz remote node.

:class:`ActorHost` is an agent subsystem written against
:class:`~devfleet_agent.services.NodeServices`. It keeps the registry of the
node's actors (children of the node's ONE_FOR_ONE supervisor), publishes what
they do (``agents/{id}/heartbeat`` every 10 s; ``agents/{id}/logs``: log lines,
alerts, supervisor events, refusals), adds them to the node's heartbeat, state
and meta, and is the :class:`~devfleet_agent.actors.ActorBus` of their ``agent``.

Its parts serve the Wactorz topics, one job each: :mod:`.control` (spawn, stop,
stop_all, list), :mod:`.migration` and :mod:`.trust` (migrate, handoff),
:mod:`.tasks` (send_to, by-name tasks), :mod:`.wactorz_verbs` and
:mod:`.wactorz_migration` (what a Wactorz main sends). Control messages go
through the node's dispatcher (:meth:`ActorHost.serve`): signatures, expiry,
at-most-once and receipts are checked and sent there. docs/contract.md
("Remote nodes (Wactorz)") records the choices Wactorz leaves open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devfleet_base import contract
from devfleet_base.contract import Command, TopicMatch
from devfleet_base.errors import DevfleetError
from devfleet_base.mqtt import MqttMessage
from devfleet_base.signing import NodeVerifier

from ..supervisor import ChildInfo, ChildNotFoundError, SupervisorEvent
from .control import ActorControl
from .dynamic import state_file
from .hosting import Hosted, valid_name
from .migration import Migrations
from .tasks import ActorTasks
from .wactorz_verbs import WactorzVerbs

if TYPE_CHECKING:
    from ..commands import ControlHandler, ControlHook
    from ..services import NodeServices

__all__ = ["HEARTBEAT_INTERVAL", "START_TIMEOUT", "ActorHost"]

log = logging.getLogger("devfleet.actors")

HEARTBEAT_INTERVAL: Final = 10.0
"""Seconds between ``agents/{id}/heartbeat`` messages (Wactorz: every 10 s)."""

START_TIMEOUT: Final = 60.0
"""Seconds a spawn waits for the actor's setup before answering (the actor keeps going)."""


class ActorHost:
    """Makes a node a Wactorz remote node (see the module docstring).

    Args:
        services: the node's services; routes, controls and providers are registered now.
        heartbeat_interval: seconds between actor heartbeats.
        start_timeout: seconds a spawn waits for the actor's setup before answering.
    """

    def __init__(
        self,
        services: NodeServices,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.services = services
        self.heartbeat_interval = heartbeat_interval
        self.start_timeout = start_timeout
        # The node's one supervisor, shared with components (whose children are named
        # "component:{name}"; ':' never occurs in an actor name).
        self.supervisor = services.supervisor
        services.on_supervisor_event(self._on_event)
        self.hosted: dict[str, Hosted] = {}
        """The actors this node runs or ran and failed, by name (changed under :attr:`lock`)."""
        self.lock = asyncio.Lock()
        identity = services.identity
        self.peers = NodeVerifier(identity.trusted) if identity is not None else None
        """Other nodes' signatures (a signed fleet's migrations), None when unsigned."""
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.control = ActorControl(self)
        self.migrations = Migrations(self)
        self.tasks = ActorTasks(self)
        WactorzVerbs(self)
        services.add_provider("heartbeat", "agents", self.names)
        services.add_provider("heartbeat", "agent_count", lambda: len(self.children()))
        services.add_provider("state", "actors", self.state)
        services.add_provider("meta", "actor_host", self._meta)

    # ---- subsystem -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the actor heartbeat loop."""
        self._heartbeat_task = self.services.spawn(self._heartbeat_loop(), "actor heartbeats")

    async def stop(self) -> None:
        """Stop every actor (deliberately: no restarts) and the heartbeat loop."""
        await self.stop_actors()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        self.tasks.cancel_pending()

    def serve(
        self,
        kind: str,
        handler: ControlHandler,
        *,
        skip_empty: bool = False,
        clear_retained: bool = False,
        on_error: ControlHook | None = None,
        **options: Any,
    ) -> None:
        """Route the control topic ``kind`` of this node (a ``handoff``: addressed to
        it) through the dispatcher, with ``handler`` and ``options`` as in
        :meth:`~devfleet_agent.commands.Dispatcher.register_control`; ``on_error``
        defaults to :meth:`refused`. ``skip_empty`` ignores an empty payload (our own
        clear of a retained message); ``clear_retained`` clears the topic after each."""
        dispatcher = self.services.dispatcher
        dispatcher.register_control(kind, handler, on_error=on_error or self.refused, **options)

        async def route(msg: MqttMessage, match: TopicMatch) -> None:
            addressed = match.name if kind == "handoff" else match.node
            if addressed != self.node or (skip_empty and not msg.payload):
                return
            try:
                await dispatcher.handle_control(msg, match)
            finally:
                if clear_retained:  # unconditionally: a retained message delivered live has retain=0
                    await self.services.publish_raw(msg.topic, b"", qos=1, retain=True)

        self.services.route(kind, route)

    async def refused(self, command: Command, error: DevfleetError) -> None:
        """A control message ended in an error: say so on the actor's logs too, when it
        names a valid actor (the receipt and the agent log have it already)."""
        name = command.args.get("name")
        if isinstance(name, str) and valid_name(name):
            await self.record(
                name, "error", "error", f"{command.verb} refused: {error.message}", code=error.code
            )

    # ---- views -----------------------------------------------------------------------

    @property
    def node(self) -> str:
        """The node this host runs on (the :class:`ActorBus` property)."""
        return self.services.node

    def state_path(self, name: str) -> Path:
        """The state file of actor ``name``: ``{data_dir}/actors/{name}.json``, or
        Wactorz's ``agentflow_{name}_state.json`` in a ``--state-dir`` given
        explicitly (to share the files with a Wactorz runner)."""
        settings = self.services.settings
        if settings.state_dir:
            return state_file(settings.resolved_state_dir, name)
        return settings.resolved_state_dir / f"{name}.json"

    def children(self) -> dict[str, ChildInfo]:
        """The supervisor's children that are actors (not components)."""
        return {name: info for name, info in self.supervisor.children.items() if ":" not in name}

    async def stop_actors(self) -> None:
        """Stop every actor deliberately (components are not ours to stop)."""
        for name in list(self.children()):
            with contextlib.suppress(ChildNotFoundError):
                await self.supervisor.stop_child(name)

    def names(self) -> list[str]:
        """The names of the running actors, sorted."""
        return sorted(self.children())

    def agents(self) -> list[dict[str, Any]]:
        """The running actors as ``{"name", "actor_id", "node", "state"}`` (the bus's ``agents()``)."""
        return [
            {"name": name, "actor_id": contract.actor_id(name), "node": self.node, "state": info.state}
            for name, info in sorted(self.children().items())
        ]

    def state(self) -> dict[str, Any]:
        """The ``actors`` section of ``nodes/{node}/state``: running and failed actors."""
        out: dict[str, Any] = {}
        for name, hosted in sorted(self.hosted.items()):
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
        settings = self.services.settings
        return {
            "allow_code": settings.allow_code,
            "allow_install": settings.allow_install,
            "heartbeat_interval": self.heartbeat_interval,
        }

    # ---- the ActorBus ----------------------------------------------------------------

    async def publish(self, topic: str, data: Any) -> None:
        """Publish an actor's data (QoS 1); dropped with a warning while offline."""
        if not await self.services.publish_json(topic, data, qos=1):
            log.warning("actor publish to %s dropped (not connected)", topic)

    async def log(self, actor_id: str, name: str, level: str, message: str) -> None:
        """Publish one log line on ``agents/{actor_id}/logs``."""
        await self.record(name, "log", level, message)

    async def alert(self, actor_id: str, name: str, severity: str, message: str) -> None:
        """Publish an alert on ``agents/{actor_id}/logs``."""
        await self.record(name, "alert", severity, message, severity=severity)

    async def send_to(self, name: str, payload: Any, timeout: float = 30.0) -> Any:
        """Send a task to the actor ``name`` on any node and return its reply
        (see :meth:`.tasks.ActorTasks.send_to`)."""
        return await self.tasks.send_to(name, payload, timeout)

    # ---- what the actors do ----------------------------------------------------------

    async def record(self, name: str, kind: str, level: str, message: str, **extra: Any) -> None:
        """Publish one record (``type`` ``kind``) on ``agents/{id}/logs`` of actor ``name``."""
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
        await self.services.publish_json(contract.agent_topic(contract.actor_id(name), "logs"), record, qos=1)

    async def _heartbeat(self, name: str) -> None:
        hosted = self.hosted.get(name)
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
        await self.services.publish_json(contract.agent_topic(contract.actor_id(name), "heartbeat"), payload)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.services.wait_connected()
            for name in self.names():
                await self._heartbeat(name)
            await asyncio.sleep(self.heartbeat_interval)

    async def _on_event(self, event: SupervisorEvent) -> None:
        name = event.child
        if ":" in name:
            return  # a component's event: the ComponentHost reports those
        hosted = self.hosted.get(name)
        level = {"crashed": "warning", "restarting": "warning", "fatal": "fatal"}.get(event.kind, "info")
        message = f"{event.kind}: {event.detail}" if event.detail else event.kind
        await self.record(name, "event", level, message, event=event.to_wire())
        if hosted is not None and event.kind in ("started", "fatal", "stopped"):
            hosted.settled.set()
        if event.kind == "started":
            await self._heartbeat(name)
        # Stopped actors leave the registry; failed ones stay listed in state until
        # stopped or spawned again.
        if (
            event.kind == "stopped"
            and hosted is not None
            and self.hosted.get(name) is hosted
            and hosted.info.state == "stopped"
        ):
            del self.hosted[name]
        self.services.state_changed()
