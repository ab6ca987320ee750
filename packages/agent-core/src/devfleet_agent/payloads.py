"""The payloads a node publishes about itself, shared by the agent and the simulator.

The retained descriptions (``meta``, ``status``, ``state``, ``cfg``), the will,
the heartbeat and telemetry samples are built here, so a simulated node
(:mod:`devfleet_agent.sim`) speaks exactly what a real agent speaks.

Ordering of retained descriptions: every one carries ``session`` (the bd_seq,
Sparkplug's birth/death sequence number: persisted on the device, bumped at
each start) and ``version`` (increasing
within the process, reconnects included). Each connection takes a fresh block
of versions and its will carries the top of that block: it sorts above every
description of its own connection (a crash shows as lost) and below the birth
of the next connection (a late will never wins).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from devfleet_base import contract
from devfleet_base.mqtt import Will

from .config_store import ConfigStore

__all__ = [
    "CAPABILITIES",
    "VERSION_BLOCK",
    "Descriptions",
    "OwnStatus",
    "config_report",
    "heartbeat_payload",
    "judge_own_status",
    "telemetry_payload",
]

VERSION_BLOCK: Final = 1_000_000
"""Description versions reserved per connection (see :meth:`Descriptions.will`)."""

CAPABILITIES: Final = ("commands", "config", "telemetry", "logs")
"""What every agent offers, listed in ``meta``."""


def config_report(store: ConfigStore) -> dict[str, Any]:
    """The config as a node reports it: ``config_version``, ``config``, ``kept_versions``.

    The one list of these fields: the ``config_get`` command answers with it and
    the retained ``cfg`` description (:meth:`Descriptions.cfg`) carries it
    (their schema is :data:`devfleet_base.payload_schemas.CFG_SCHEMA`).
    """
    return {"config_version": store.version, "config": store.config, "kept_versions": store.versions()}


class Descriptions:
    """The versioned retained descriptions of one node.

    Args:
        node: the node name.
        bd_seq: the birth/death sequence number (Sparkplug's bdSeq: persisted by the
            agent, bumped at each start; ``session`` on the wire).
    """

    __slots__ = ("bd_seq", "instance", "node", "version")

    def __init__(self, node: str, bd_seq: int = 0) -> None:
        self.node = node
        self.bd_seq = bd_seq
        self.version = 0
        self.instance = uuid.uuid4().hex[:16]
        """Random per process: two processes with one node name tell each other apart by it."""

    def envelope(self) -> dict[str, Any]:
        """The fields every description starts with; takes the next version."""
        self.version += 1
        return {
            "node": self.node,
            "session": self.bd_seq,
            "version": self.version,
            "ts": time.time(),
            "instance": self.instance,
        }

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
        payload.update(config_report(store), applied_id=store.applied_id, updated_at=store.updated_at)
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
            "session": self.bd_seq,
            "version": self.version + VERSION_BLOCK - 1,
            "ts": time.time(),
            "instance": self.instance,
            "status": "lost",
        }
        return Will(contract.node_topic(self.node, "status"), contract.encode(payload), qos=1, retain=True)


@dataclass(frozen=True, slots=True)
class OwnStatus:
    """What a node should do about a message on its own ``status`` topic.

    Attributes:
        action: ``ok`` (our birth, or nothing to do), ``previous`` (the retained
            status of an earlier run, delivered at subscribe time: our birth is
            already on its way), ``rebirth`` (something replaced our birth while
            we are alive: publish it again) or ``clash`` (another live process
            uses this node name).
        status: the ``status`` field read (None for junk or an empty payload).
        other: the other process's payload for ``clash``.
    """

    action: str
    status: Any = None
    other: dict[str, Any] | None = None


def judge_own_status(payload: Any, *, retained: bool, instance: str, started_at: float) -> OwnStatus:
    """Judge a decoded message on the node's own ``status`` topic.

    Args:
        payload: the decoded JSON (None for an empty or undecodable payload; any
            other JSON value, e.g. ``1`` or ``[1]``, is junk to repair).
        retained: the broker's retain flag (set only on the burst after a subscribe).
        instance: this process's :attr:`Descriptions.instance`.
        started_at: when this process started (Unix seconds).

    A status from another instance is a name clash when it was made after this
    process started, or when it is a live ``online`` (an older one is what a
    previous run of this node left behind). Idea: Sparkplug's bdSeq and Homie's
    ``$state`` tell a stale birth from a live one; here a per-process instance id
    and the birth time do.
    """
    fields = payload if isinstance(payload, dict) else {}
    status = fields.get("status")
    status = status if isinstance(status, str) else None
    other = fields.get("instance")
    if isinstance(other, str) and other != instance:
        ts = fields.get("ts")
        newer = isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts > started_at
        # A session taken over fires the loser's will: a "lost" of another instance made
        # after we started is as sure a sign as its birth.
        if newer or (status == "online" and not retained):
            return OwnStatus("clash", status, fields)
    if status == "online":
        return OwnStatus("previous" if retained and other != instance else "ok", status)
    return OwnStatus("previous" if retained else "rebirth", status)


def heartbeat_payload(
    node: str,
    *,
    bd_seq: int,
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
        "session": bd_seq,
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
