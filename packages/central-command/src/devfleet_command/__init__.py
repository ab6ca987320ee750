"""devfleet central command: the fleet model, the sync and asyncio clients, the CLI.

Importing this package is cheap: the clients (and paho) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CommandFailed,
    CommandTimeout,
    ConfigConflict,
    ConnectError,
    ConsoleError,
    ConsoleTimeout,
    InvalidConfig,
    NodeNotFound,
    PurgeError,
    UsageError,
)
from .model import (
    Drift,
    Event,
    FleetModel,
    InvalidMessage,
    NodeAppeared,
    NodeChanged,
    NodeLost,
    NodeOffline,
    NodeOnline,
    NodeRemoved,
    NodeStale,
    NodeView,
)

if TYPE_CHECKING:
    from .aio import AsyncFleet, Broadcast, CommandHandle, LogRecord
    from .sync import Fleet

__version__ = "0.1.0"

__all__ = [
    "AsyncFleet",
    "Broadcast",
    "CommandFailed",
    "CommandHandle",
    "CommandTimeout",
    "ConfigConflict",
    "ConnectError",
    "ConsoleError",
    "ConsoleTimeout",
    "Drift",
    "Event",
    "Fleet",
    "FleetModel",
    "InvalidConfig",
    "InvalidMessage",
    "LogRecord",
    "NodeAppeared",
    "NodeChanged",
    "NodeLost",
    "NodeNotFound",
    "NodeOffline",
    "NodeOnline",
    "NodeRemoved",
    "NodeStale",
    "NodeView",
    "PurgeError",
    "UsageError",
    "__version__",
]

_LAZY = {
    "AsyncFleet": "aio",
    "Broadcast": "aio",
    "CommandHandle": "aio",
    "LogRecord": "aio",
    "Fleet": "sync",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
