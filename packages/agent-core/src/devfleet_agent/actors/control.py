"""Spawn, stop, stop_all and list: what a node does with the Wactorz control topics.

Each handler runs behind the node's dispatcher (registered with
:meth:`.host.ActorHost.serve`), so it sees only messages that are addressed here,
readable, signed where the node wants signatures, not expired and not seen
before; it returns the ``ok`` receipt's result or raises
:class:`~devfleet_base.errors.DevfleetError` for an ``error`` receipt.

Keys starting with ``_`` are transport, not config: ``_sig``, ``_id``,
``_expires_at`` (read by the dispatcher), ``_state`` (persisted values written
before setup; Wactorz's ``_initial_state``), ``_migration`` (``{"id",
"from_node"}``) and ``_migration_token`` (a migration through a Wactorz main).
They are stripped before the spec is kept.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.errors import Code, CommandError, ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage

from ..clock import wait_event
from ..pip_runner import check_requirement, pip_install
from ..supervisor import ChildInfo, ChildNotFoundError
from . import trust, wactorz_migration
from .dynamic import StateStore, dynamic_factory
from .hosting import Hosted, valid_name
from .spec import SpawnSpec
from .wactorz_verbs import delete_leftovers

if TYPE_CHECKING:
    from ..settings import Settings
    from .hosting import Host

__all__ = ["ActorControl", "check_requirements"]

log = logging.getLogger("devfleet.actors")


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


async def _pip_install(requirements: list[str], settings: Settings) -> None:
    """Install ``requirements`` with the agent's installer; raise CommandError on failure."""
    result = await pip_install(requirements, settings=settings)
    if not result.ok:
        why = "timed out" if result.timed_out else f"pip exited with {result.returncode}"
        raise CommandError(
            f"install of {', '.join(requirements)} failed ({why}): {result.output_tail[-500:]}",
            code=Code.FAILED,
        )


class ActorControl:
    """Serves ``spawn`` (and ``handoff``), ``stop``, ``stop_all`` and ``list`` for one host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        authenticate = functools.partial(trust.authenticate_spawn, host)  # a migration, node-signed
        host.serve("spawn", self.on_spawn, skip_empty=True, clear_retained=True, authenticate=authenticate)
        host.serve("stop", self._on_stop, form="name")
        host.serve("stop_all", self._on_stop_all)
        host.serve("list", self._on_list, signed=False, once=False, receipts=False, form="any")

    # ---- spawn -----------------------------------------------------------------------

    async def on_spawn(self, command: Command, msg: MqttMessage) -> dict[str, Any]:
        """Start the actor a spawn (or a migration's handoff) describes; answer a
        Wactorz main's ``_migration_token`` on ``spawn_ack`` either way."""
        host = self.host
        payload = command.args
        token = payload.get("_migration_token")
        try:
            raw_name = payload.get("name")
            state = payload.get("_state", payload.get("_initial_state"))  # devfleet's, Wactorz's
            if state is not None and not isinstance(state, dict):
                raise ContractError("spawn._state must be a JSON object")
            migration = payload.get("_migration")
            migration_id = migration.get("id") if isinstance(migration, dict) else None
            origin = trust.origin(msg.topic, payload)
            spec = SpawnSpec.from_payload({k: v for k, v in payload.items() if not k.startswith("_")})
            async with host.lock:
                info = await self.start(
                    spec,
                    state=state,
                    migration=migration_id if isinstance(migration_id, str) else None,
                    origin=origin,
                )
        except DevfleetError as exc:
            await wactorz_migration.ack(
                host, raw_name if isinstance(raw_name, str) else None, token, exc.message
            )
            raise
        refused = f"it failed to start: {info.last_error}" if info.state == "failed" else None
        await wactorz_migration.ack(host, spec.name, token, refused)
        if info.state == "failed":
            raise CommandError(f"actor {spec.name!r} failed to start: {info.last_error}", code=Code.FAILED)
        return {"name": spec.name, "actor_id": contract.actor_id(spec.name), "state": info.state}

    async def start(
        self,
        spec: SpawnSpec,
        *,
        state: dict[str, Any] | None,
        migration: str | None,
        origin: dict[str, Any] | None = None,
    ) -> ChildInfo:
        """Start ``spec`` under the supervisor (the caller holds the host's lock) and wait
        up to the host's ``start_timeout`` for its setup.

        Raises:
            DevfleetError: refused (code, install, duplicate name).
        """
        host = self.host
        settings = host.services.settings
        if not settings.allow_code:
            raise CommandError(
                "this node does not accept actor code (start the agent with --allow-code "
                "or allow_code = true)",
                code=Code.FORBIDDEN,
            )
        requirements = check_requirements(spec.install)
        if requirements and not settings.allow_install:
            raise CommandError(
                "this node does not install packages (start the agent with --allow-install "
                "or allow_install = true)",
                code=Code.FORBIDDEN,
            )
        if spec.node is not None and spec.node != host.node:
            log.warning(
                "spawn of %s names node %r but arrived at %s; running it here",
                spec.name,
                spec.node,
                host.node,
            )
        if host.supervisor.get(spec.name) is not None:
            if not spec.replace:
                raise CommandError(
                    f"actor {spec.name!r} is already running on {host.node}; ignored "
                    '(send "replace": true to restart it)',
                    code=Code.CONFLICT,
                )
            log.info("replacing actor %s", spec.name)
            with contextlib.suppress(ChildNotFoundError):
                await host.supervisor.stop_child(spec.name)
        if requirements:
            log.info("installing %s for actor %s", ", ".join(requirements), spec.name)
            await _pip_install(requirements, settings)
        if state is not None:
            try:
                StateStore(host.state_path(spec.name)).replace_all(state)
            except (ValueError, DevfleetError) as exc:
                raise ContractError(f"spawn._state could not be stored: {exc}") from None
        spec = _without_replace(spec)
        factory = dynamic_factory(spec, host, state_path=host.state_path(spec.name))
        # start_child(wait=False) registers the child without yielding to the loop, so
        # the record below exists before the child's first event.
        info = await host.supervisor.start_child(spec.name, factory, spec.policy(), wait=False)
        hosted = host.hosted[spec.name] = Hosted(spec, info, migration, origin=origin)
        host.services.state_changed()
        await wait_event(hosted.settled, host.start_timeout)
        log.info("actor %s spawned (%s)", spec.name, info.state)
        return info

    # ---- stop, stop_all, list --------------------------------------------------------

    async def _on_stop(self, command: Command, msg: MqttMessage) -> dict[str, Any]:
        """Stop one actor (an object or the Wactorz bare-name form); ``delete`` also
        removes what it left (:func:`.wactorz_verbs.delete_leftovers`)."""
        host = self.host
        payload = command.args
        name = payload.get("name")
        if not isinstance(name, str) or not valid_name(name):
            raise ContractError(f'stop: "name" must be an actor name, got {name!r}')
        deleted = payload.get("delete") is True
        async with host.lock:
            running = host.supervisor.get(name) is not None
            hosted = host.hosted.pop(name, None)
            if running:
                with contextlib.suppress(ChildNotFoundError):
                    await host.supervisor.stop_child(name)
            elif hosted is None and not deleted:
                # (a delete of a stopped actor removes what it left: Wactorz's migration end)
                raise CommandError(f"no actor named {name!r} on {host.node}", code=Code.NOT_FOUND)
        if deleted:
            await delete_leftovers(host, name, keep_topics=payload.get("keep_topics") is True)
        host.services.state_changed()
        log.info("actor %s stopped on request%s", name, " (deleted)" if deleted else "")
        return {"name": name, "stopped": True, **({"deleted": True} if deleted else {})}

    async def _on_stop_all(self, command: Command, msg: MqttMessage) -> dict[str, Any]:
        host = self.host
        async with host.lock:
            names = host.names()
            await host.stop_actors()
            host.hosted.clear()
        log.info("stop_all: stopped %d actor(s); shutting the agent down", len(names))
        # The agent stops after the receipt went out (its shutdown drains the dispatcher).
        host.services.request_stop("stop_all")
        return {"stopped": names}

    async def _on_list(self, command: Command, msg: MqttMessage) -> None:
        """Answer on ``nodes/{node}/agents`` (the Wactorz answer; no receipt)."""
        host = self.host
        agents = [
            {
                "name": name,
                "actor_id": contract.actor_id(name),
                "state": info.state,
                "restarts": info.restarts,
                "description": host.hosted[name].spec.description if name in host.hosted else "",
            }
            for name, info in sorted(host.children().items())
        ]
        await host.services.publish_json(
            contract.node_topic(host.node, "agents"),
            {"node": host.node, "agents": agents, "timestamp": time.time()},
            qos=1,
        )


def _without_replace(spec: SpawnSpec) -> SpawnSpec:
    """The spec as kept (and migrated): ``replace`` applies to one spawn only."""
    if not spec.replace:
        return spec
    return SpawnSpec.from_payload({**spec.to_payload(), "replace": False})
