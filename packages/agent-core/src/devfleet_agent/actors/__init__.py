"""Dynamic actors: the spawn payload, the compiled actor and its ``agent`` API."""

from __future__ import annotations

from .dynamic import (
    ALERT_SEVERITIES,
    DEFAULT_STATE_DIR,
    ActorAgent,
    ActorBus,
    CompileError,
    DynamicActor,
    StateStore,
    StateStoreError,
    dynamic_factory,
)
from .spec import ACTOR_NAME_PATTERN, DEFAULT_POLL_INTERVAL, MAX_CODE_BYTES, SPAWN_SCHEMA, SpawnSpec

__all__ = [
    "ACTOR_NAME_PATTERN",
    "ALERT_SEVERITIES",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_STATE_DIR",
    "MAX_CODE_BYTES",
    "SPAWN_SCHEMA",
    "ActorAgent",
    "ActorBus",
    "CompileError",
    "DynamicActor",
    "SpawnSpec",
    "StateStore",
    "StateStoreError",
    "dynamic_factory",
]
