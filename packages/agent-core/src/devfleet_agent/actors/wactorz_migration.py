"""A devfleet node's part in a migration routed through a main (Wactorz's protocol).

A Wactorz main (or the devfleet console playing its part, for a fleet with
Wactorz nodes in it) moves an actor in three steps, each answered on a topic of
the node's own (shapes from ``wactorz/node/runner.py`` and
``wactorz/agents/main/migration.py`` of wactorz 0.7.2):

1. ``nodes/{src}/migrate`` ``{"name", "target_node": "@main", "return_token"}``:
   the source stops the actor and hands it back on ``nodes/{src}/state_return``
   ``{"agent", "return_token", "config", "state", "state_keys_dropped", "from_node"}``
   (``"refused"`` and an empty config when it cannot; the actor then keeps running).
2. ``nodes/{dst}/spawn`` with ``_initial_state`` and ``_migration_token``: the
   target starts it with that state and answers ``nodes/{dst}/spawn_ack``
   ``{"agent", "migration_token", "node"}`` (plus ``"refused": reason``).
3. ``nodes/{src}/stop`` ``{"name", "delete": true, "keep_topics": true}``: the
   source removes the state file it kept for a rollback.

devfleet↔devfleet migrations keep the handoff topic (docs/contract.md).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from devfleet_base import contract

from ..supervisor import ChildNotFoundError
from .dynamic import StateStore

if TYPE_CHECKING:
    from .hosting import Host

__all__ = ["MAIN", "ack", "return_to_main"]

#: ``target_node`` of a migration that hands the actor back to whoever asked.
MAIN = "@main"


async def return_to_main(host: Host, payload: dict[str, Any]) -> None:
    """Step 1: stop ``payload["name"]`` and publish its config and state (or a refusal)."""
    name = payload.get("name")
    token = payload.get("return_token")
    token = token if isinstance(token, str) else ""
    topic = contract.node_topic(host.node, "state_return")
    hosted = host.hosted.get(name) if isinstance(name, str) else None
    if hosted is None or host.supervisor.get(str(name)) is None:
        reason = f"no actor named {name!r} runs on {host.node}"
        await host.services.publish_json(
            topic,
            {
                "agent": name,
                "return_token": token,
                "config": {},
                "state": {},
                "state_keys_dropped": [],
                "refused": reason,
                "from_node": host.node,
                "timestamp": time.time(),
            },
            qos=1,
        )
        await host.migrations.failed(name if isinstance(name, str) else None, reason)
        return
    async with host.lock:
        with contextlib.suppress(ChildNotFoundError):
            await host.supervisor.stop_child(hosted.spec.name)
        host.hosted.pop(hosted.spec.name, None)
    host.services.state_changed()
    state = StateStore(host.state_path(hosted.spec.name)).snapshot()
    config = {k: v for k, v in hosted.spec.to_payload(node=host.node).items() if v is not None}
    await host.services.publish_json(
        topic,
        {
            "agent": hosted.spec.name,
            "return_token": token,
            "config": config,
            "state": state,
            "state_keys_dropped": [],
            "from_node": host.node,
            "timestamp": time.time(),
        },
        qos=1,
    )
    await host.services.publish_json(
        contract.node_topic(host.node, "migrate_result"),
        {
            "success": True,
            "agent": hosted.spec.name,
            "from_node": host.node,
            "to_node": "local",
            "state_keys_transferred": sorted(state),
            "state_keys_dropped": [],
            "timestamp": time.time(),
        },
        qos=1,
    )


async def ack(host: Host, name: Any, token: Any, refused: str | None) -> None:
    """Step 2's answer, for a spawn that carried a ``_migration_token``."""
    if not isinstance(token, str) or not token:
        return
    answer: dict[str, Any] = {
        "agent": name,
        "migration_token": token,
        "node": host.node,
        "timestamp": time.time(),
    }
    if refused is not None:
        answer["refused"] = refused
    await host.services.publish_json(contract.node_topic(host.node, "spawn_ack"), answer, qos=1)
