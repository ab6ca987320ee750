"""The payloads a node publishes about itself, shared by the agent and the simulator.

The retained descriptions (``meta``, ``status``, ``state``, ``cfg``), the will,
the heartbeat and telemetry samples are built here, so a simulated node
(:mod:`devfleet_agent.sim`) speaks exactly what a real agent speaks.

Ordering of retained descriptions: every one carries ``session`` (a counter
persisted on the device, bumped at each start) and ``version`` (increasing
within the process, reconnects included). Each connection takes a fresh block
of versions and its will carries the top of that block: it sorts above every
description of its own connection (a crash shows as lost) and below the birth
of the next connection (a late will never wins).
"""

from __future__ import annotations

import time
from typing import Any, Final

from devfleet_base import contract
from devfleet_base.mqtt import Will

from .config_store import ConfigStore

__all__ = [
    "CAPABILITIES",
    "VERSION_BLOCK",
    "Descriptions",
    "heartbeat_payload",
    "telemetry_payload",
]

VERSION_BLOCK: Final = 1_000_000
"""Description versions reserved per connection (see :meth:`Descriptions.will`)."""

CAPABILITIES: Final = ("commands", "config", "telemetry", "logs")
"""What every agent offers, listed in ``meta``."""


class Descriptions:
    """The versioned retained descriptions of one node.

    Args:
        node: the node name.
        session: the session counter (persisted by the agent, bumped at each start).
    """

    __slots__ = ("node", "session", "version")

    def __init__(self, node: str, session: int = 0) -> None:
        self.node = node
        self.session = session
        self.version = 0

    def envelope(self) -> dict[str, Any]:
        """The fields every description starts with; takes the next version."""
        self.version += 1
        return {"node": self.node, "session": self.session, "version": self.version, "ts": time.time()}

    def meta(
        self,
        facts: dict[str, Any],
        *,
        commands: dict[str, str],
        config: dict[str, Any],
        signed_commands: bool,
        started_at: float,
    ) -> dict[str, Any]:
        """The ``meta`` birth: host facts, commands, groups and capabilities."""
        payload = self.envelope()
        payload.update(facts)
        payload["commands"] = commands
        payload["groups"] = list(config.get("groups", []))
        payload["description"] = config.get("description", "")
        payload["capabilities"] = list(CAPABILITIES)
        payload["signed_commands"] = signed_commands
        payload["started_at"] = started_at
        return payload

    def status(self, status: str) -> dict[str, Any]:
        """``online`` or ``offline`` (the will says ``lost``: see :meth:`will`)."""
        payload = self.envelope()
        payload["status"] = status
        return payload

    def cfg(self, store: ConfigStore, desired_error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The reported config with its version and the versions kept for rollback."""
        payload = self.envelope()
        payload.update(
            config_version=store.version,
            config=store.config,
            applied_id=store.applied_id,
            updated_at=store.updated_at,
            kept_versions=store.versions(),
        )
        if desired_error is not None:
            payload["desired_error"] = desired_error
        if store.recovered_from is not None:
            payload["recovered_from"] = store.recovered_from
        return payload

    def will(self) -> Will:
        """The last will for the next connection attempt; starts a new version block.

        The will sorts above every description of its connection (so a crash shows
        as lost) and below the birth of the next one (so a late will never
        overwrites a newer birth).
        """
        self.version = (self.version // VERSION_BLOCK + 1) * VERSION_BLOCK
        payload = {
            "node": self.node,
            "session": self.session,
            "version": self.version + VERSION_BLOCK - 1,
            "ts": time.time(),
            "status": "lost",
        }
        return Will(contract.node_topic(self.node, "status"), contract.encode(payload), qos=1, retain=True)


def heartbeat_payload(
    node: str,
    *,
    session: int,
    uptime: float,
    broker: str,
    commands: dict[str, int],
    logs: dict[str, int],
    metrics: dict[str, float],
    agent_usage: dict[str, Any],
) -> dict[str, Any]:
    """The body of ``nodes/{node}/heartbeat`` (Wactorz-compatible fields first)."""
    payload: dict[str, Any] = {
        "node": node,
        "node_id": contract.node_id(node),
        "agents": [],
        "agent_count": 0,
        "broker": broker,
        "timestamp": time.time(),
        "session": session,
        "uptime": round(uptime, 1),
        "status": "online",
        "commands": dict(commands),
        "logs": logs,
    }
    payload.update(metrics)
    payload["agent"] = agent_usage
    return payload


def telemetry_payload(value: float, ts: float) -> dict[str, Any]:
    """One metric sample for ``nodes/{node}/telemetry/{metric}``."""
    return {"value": value, "unit": "%", "ts": ts}
