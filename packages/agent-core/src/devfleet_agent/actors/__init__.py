"""Dynamic actors: the spawn payload, the compiled actor and its ``agent`` API."""

from __future__ import annotations

from .control import check_requirements
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
    state_file,
)
from .host import ActorHost
from .spec import ACTOR_NAME_PATTERN, DEFAULT_POLL_INTERVAL, MAX_CODE_BYTES, SPAWN_SCHEMA, SpawnSpec
from .tasks import SendTimeoutError

__all__ = [
    "ACTOR_NAME_PATTERN",
    "ALERT_SEVERITIES",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_STATE_DIR",
    "MAX_CODE_BYTES",
    "SPAWN_SCHEMA",
    "ActorAgent",
    "ActorBus",
    "ActorHost",
    "CompileError",
    "DynamicActor",
    "SendTimeoutError",
    "SpawnSpec",
    "StateStore",
    "StateStoreError",
    "check_requirements",
    "dynamic_factory",
    "state_file",
]
