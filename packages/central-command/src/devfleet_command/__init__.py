"""devfleet central command: the fleet model, the sync and asyncio clients, the CLI.

Importing this package is cheap: every name (the clients and paho, the model, the
errors) loads from its module on first use, so ``devfleet --help`` stays fast.
"""

from __future__ import annotations

from devfleet_base.lazy import lazy_attributes

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms at start-up
if TYPE_CHECKING:
    from .aio import AsyncFleet, Broadcast, CommandHandle, LogRecord
    from .errors import (
        AmbiguousActor,
        CommandFailed,
        CommandTimeout,
        ConfigConflict,
        ConnectError,
        ConsoleError,
        ConsoleTimeout,
        InvalidConfig,
        InvalidName,
        InvalidRequest,
        InvalidSpec,
        InvalidURL,
        NodeNotFound,
        PurgeError,
        UnverifiedNode,
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
    from .sync import Fleet

__version__ = "0.1.0"

__all__ = [
    "AmbiguousActor",
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
    "InvalidName",
    "InvalidRequest",
    "InvalidSpec",
    "InvalidURL",
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
    "UnverifiedNode",
    "UsageError",
    "__version__",
]

_LAZY = {
    "AmbiguousActor": "errors",
    "CommandFailed": "errors",
    "CommandTimeout": "errors",
    "ConfigConflict": "errors",
    "ConnectError": "errors",
    "ConsoleError": "errors",
    "ConsoleTimeout": "errors",
    "InvalidConfig": "errors",
    "InvalidName": "errors",
    "InvalidRequest": "errors",
    "InvalidSpec": "errors",
    "InvalidURL": "errors",
    "NodeNotFound": "errors",
    "PurgeError": "errors",
    "UnverifiedNode": "errors",
    "UsageError": "errors",
    "Drift": "model",
    "Event": "model",
    "FleetModel": "model",
    "InvalidMessage": "model",
    "NodeAppeared": "model",
    "NodeChanged": "model",
    "NodeLost": "model",
    "NodeOffline": "model",
    "NodeOnline": "model",
    "NodeRemoved": "model",
    "NodeStale": "model",
    "NodeView": "model",
    "AsyncFleet": "aio",
    "Broadcast": "aio",
    "CommandHandle": "aio",
    "LogRecord": "aio",
    "Fleet": "sync",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
