"""Migration between devfleet nodes: ``migrate`` on the source, the handoff on the target.

The source (``nodes/{src}/migrate`` ``{"name", "target_node", "timeout"?}``)
sends the actor's spec and persisted values on its own
``nodes/{src}/handoff/{dst}`` (so a per-node broker ACL allows it), waits for the
actor's heartbeat from the target whose ``migration`` field echoes this
migration's id (a Wactorz runner, which has no such field, is believed on
``node`` alone), then stops its copy; the answer is
``nodes/{src}/migrate_result`` either way. ``_expires_at`` makes a target refuse
a handoff that arrives after the source gave up.

In a signed fleet the handoff is signed by the source node and carries the
operator's ``migrate`` (the warrant) and original spawn (the origin), which the
target checks (:mod:`.trust`); only the target's
signed heartbeat confirms the move. Migration through a Wactorz main (target
``@main``) is :mod:`.wactorz_migration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final

from devfleet_base import contract
from devfleet_base.contract import Command, TopicMatch
from devfleet_base.errors import Code, CommandError, ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage

from ..supervisor import ChildNotFoundError
from . import trust
from .dynamic import StateStore
from .hosting import Hosted, valid_name
from .wactorz_migration import MAIN, return_to_main

if TYPE_CHECKING:
    from .hosting import Host

__all__ = ["DEFAULT_MIGRATE_TIMEOUT", "MAX_MIGRATE_TIMEOUT", "Migrations"]

log = logging.getLogger("devfleet.actors")

DEFAULT_MIGRATE_TIMEOUT: Final = 30.0
"""Seconds a migration waits for the target to report the actor running."""

MAX_MIGRATE_TIMEOUT: Final = 600.0


class Migrations:
    """Serves ``migrate`` and ``handoff`` and follows actor heartbeats for one host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._pending: dict[str, tuple[str, str, asyncio.Future[None]]] = {}
        host.serve("migrate", self._on_migrate, receipts=False, on_error=self._refused)
        # A migrating actor's spawn from the node the topic names; never retained, so
        # nothing to clear (and the topic is the source's to write, not ours).
        host.serve(
            "handoff",
            host.control.on_spawn,
            cmd="spawn",
            skip_empty=True,
            authenticate=functools.partial(trust.authenticate_handoff, host),
        )
        host.services.route("agent_heartbeat", self._on_actor_heartbeat)

    # ---- the source ------------------------------------------------------------------

    async def _on_migrate(self, command: Command, msg: MqttMessage) -> None:
        host = self.host
        payload = command.args
        raw = payload.get("name")
        if not (isinstance(raw, str) and valid_name(raw)):
            raise ContractError(f'migrate: "name" must be an actor name, got {raw!r}')
        name = raw
        target = payload.get("target_node")
        if target == MAIN:  # routed through a main (Wactorz): hand the actor back
            await return_to_main(host, payload)
            return
        if not isinstance(target, str):
            raise ContractError(f'migrate: "target_node" must be a node name, got {target!r}')
        contract.check_name(target, "target_node")
        if target == host.node:
            raise ContractError(f"migrate: {name!r} already runs on {target}")
        timeout = payload.get("timeout", DEFAULT_MIGRATE_TIMEOUT)
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_MIGRATE_TIMEOUT
        ):
            raise ContractError(f"migrate: timeout must be within (0, {MAX_MIGRATE_TIMEOUT:g}] seconds")
        hosted = host.hosted.get(name)
        if hosted is None or host.supervisor.get(name) is None:
            raise CommandError(f"no actor named {name!r} runs on {host.node}", code=Code.NOT_FOUND)
        if name in self._pending:
            raise CommandError(f"actor {name!r} is already migrating", code=Code.BUSY)
        await self._migrate(hosted, target, float(timeout), {"topic": msg.topic, "payload": payload})

    async def _refused(self, command: Command, error: DevfleetError) -> None:
        name = command.args.get("name")
        await self.failed(name if valid_name(name) else None, error.message)

    async def failed(self, name: str | None, error: str) -> None:
        """Answer a migration that did not happen on ``migrate_result`` (and the actor's logs)."""
        host = self.host
        log.warning("migration of %s failed: %s", name, error)
        if name is not None:
            await host.record(name, "error", "error", f"migrate failed: {error}")
        await host.services.publish_json(
            contract.node_topic(host.node, "migrate_result"),
            {"success": False, "error": error, "agent": name, "from_node": host.node},
            qos=1,
        )

    async def _migrate(self, hosted: Hosted, target: str, timeout: float, warrant: dict[str, Any]) -> None:
        host = self.host
        name = hosted.spec.name
        migration_id = contract.new_id()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[name] = (target, migration_id, done)
        try:
            async with host.services.subscription(
                [(contract.agent_topic(contract.actor_id(name), "heartbeat"), 0)]
            ):
                spawn = hosted.spec.to_payload(node=target)
                spawn.pop("replace", None)
                spawn["_state"] = StateStore(host.state_path(name)).snapshot()
                spawn["_migration"] = {"id": migration_id, "from_node": host.node}
                spawn["_expires_at"] = time.time() + timeout
                # Under the source's own subtree, so a per-node broker ACL allows it (docs/contract.md).
                spawn_topic = contract.handoff_topic(host.node, target)
                identity = host.services.identity
                if identity is not None:
                    if hosted.origin is None:
                        raise CommandError(
                            f"{name!r} has no operator-signed spawn to show the target", code=Code.FORBIDDEN
                        )
                    spawn["_migration"].update(warrant=warrant, origin=hosted.origin)
                    spawn = identity.sign(spawn_topic, spawn)
                log.info("migrating %s to %s (waiting up to %g s)", name, target, timeout)
                if not await host.services.publish_json(spawn_topic, spawn, qos=1):
                    raise CommandError("not connected to the broker", code=Code.UNAVAILABLE)
                try:
                    await asyncio.wait_for(asyncio.shield(done), timeout)
                except TimeoutError:
                    raise CommandError(
                        f"node {target!r} did not report {name!r} running within {timeout:g} s; "
                        f"the actor keeps running on {host.node}",
                        code=Code.TIMEOUT,
                    ) from None
        finally:
            self._pending.pop(name, None)
        async with host.lock:
            if host.hosted.get(name) is hosted:
                del host.hosted[name]
            with contextlib.suppress(ChildNotFoundError):
                await host.supervisor.stop_child(name)
        host.services.state_changed()
        log.info("actor %s migrated to %s", name, target)
        await host.record(name, "log", "info", f"migrated from {host.node} to {target}")
        await host.services.publish_json(
            contract.node_topic(host.node, "migrate_result"),
            {"success": True, "agent": name, "from_node": host.node, "to_node": target},
            qos=1,
        )

    async def _on_actor_heartbeat(self, msg: MqttMessage, match: TopicMatch) -> None:
        if not self._pending or not msg.payload:
            return
        try:
            beat = contract.decode(msg.payload)
        except ContractError:
            return
        if not isinstance(beat, dict):
            return
        peers = self.host.peers
        for name, (target, migration_id, done) in list(self._pending.items()):
            if (
                match.ident == contract.actor_id(name)
                and beat.get("node") == target
                and beat.get("migration", migration_id) == migration_id
                and beat.get("state", "running") == "running"
                and not done.done()
            ):
                if peers is not None and not peers.valid(target, msg.topic, beat):
                    # In a signed fleet only the target itself can confirm a migration.
                    log.warning("ignoring a heartbeat of %s that %s did not sign", name, target)
                    continue
                done.set_result(None)
