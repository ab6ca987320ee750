"""The node config: what the console may set on a node, remotely and versioned.

Local settings that must never change over the wire (broker, credentials,
``allow_code``, the signing key, where data lives) are the agent's settings
file, not this.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from .contract import NAME_PATTERN
from .errors import ConfigError
from .schema import Field, Schema

__all__ = ["COMPONENT_SECTION_SCHEMA", "LOG_LEVELS", "METRICS", "NODE_CONFIG_SCHEMA", "default_node_config"]

METRICS: Final = ("cpu", "memory", "disk")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

COMPONENT_SECTION_SCHEMA: Final = Schema(
    "component",
    {
        "enabled": Field("bool", default=True, doc="Run this component."),
        "settings": Field("dict", default={}, doc="The component's settings, checked by its config_schema."),
    },
)
"""One entry of the ``components`` section."""

NODE_CONFIG_SCHEMA: Final = Schema(
    "config",
    {
        "description": Field("str", default="", max=256, doc="Free text shown in listings."),
        "groups": Field(
            "list",
            default=[],
            max=32,
            items=Field("str", pattern=NAME_PATTERN),
            doc="Group names for group commands.",
        ),
        "heartbeat": Field(
            "dict",
            schema=Schema(
                "heartbeat",
                {
                    "interval": Field(
                        "float",
                        default=10.0,
                        min=1.0,
                        max=3600.0,
                        doc="Seconds between heartbeats.",
                    )
                },
            ),
        ),
        "telemetry": Field(
            "dict",
            schema=Schema(
                "telemetry",
                {
                    "enabled": Field("bool", default=True),
                    "interval": Field(
                        "float", default=30.0, min=1.0, max=86400.0, doc="Seconds between samples."
                    ),
                    "metrics": Field(
                        "list",
                        default=list(METRICS),
                        items=Field("str", choices=METRICS),
                        doc="Which metrics.",
                    ),
                },
            ),
        ),
        "logs": Field(
            "dict",
            schema=Schema(
                "logs",
                {
                    "enabled": Field("bool", default=True),
                    "level": Field("str", default="INFO", choices=LOG_LEVELS),
                    "batch_size": Field("int", default=50, min=1, max=1000, doc="Records per batch at most."),
                    "flush_interval": Field(
                        "float", default=2.0, min=0.1, max=3600.0, doc="Seconds between batches."
                    ),
                    "buffer": Field(
                        "int", default=1000, min=10, max=100000, doc="Records kept while offline."
                    ),
                },
            ),
        ),
        "components": Field(
            "dict",
            default={},
            max=64,
            values=Field("dict", schema=COMPONENT_SECTION_SCHEMA),
            doc="Component name → {enabled: bool, settings: {...}}; settings are checked by the component.",
        ),
        "components_allowed": Field(
            "list",
            default=[],
            max=64,
            items=Field("str", pattern=r"[A-Za-z0-9*?][A-Za-z0-9._*?-]{0,99}"),
            doc="Distribution-name patterns (fnmatch, e.g. devfleet-component-*) that install/upgrade may fetch; empty refuses every install.",
        ),
    },
)


def default_node_config() -> dict[str, Any]:
    """A fresh node's config."""
    return NODE_CONFIG_SCHEMA.validate({})


def apply_dotted(config: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``{"a.b": v}`` style updates applied.

    A ``None`` value removes the key (so a component section can be dropped).
    """
    out = copy.deepcopy(config)
    for dotted, value in updates.items():
        if not isinstance(dotted, str) or not dotted or len(dotted) > 256:
            raise ConfigError(f"bad config key {dotted!r}")
        parts = dotted.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"bad config key {dotted!r}")
        node: dict[str, Any] = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{dotted}: {part!r} is not a section")
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = copy.deepcopy(value)
    return out
