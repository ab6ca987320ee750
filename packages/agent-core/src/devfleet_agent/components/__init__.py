"""Components on the node: the registry, the host subsystem, install with rollback."""

from __future__ import annotations

from .context import AgentComponentContext, ComponentRunnable
from .host import CHILD_PREFIX, COMPONENT_COMMAND_SCHEMA, ComponentHost, ComponentStatus
from .install import PROTECTED_DISTS, Installer, installed_version
from .registry import (
    ComponentEntry,
    ComponentRegistry,
    LoadError,
    distribution_modules,
    normalize_dist,
    purge_modules,
)

__all__ = [
    "CHILD_PREFIX",
    "COMPONENT_COMMAND_SCHEMA",
    "PROTECTED_DISTS",
    "AgentComponentContext",
    "ComponentEntry",
    "ComponentHost",
    "ComponentRegistry",
    "ComponentRunnable",
    "ComponentStatus",
    "Installer",
    "LoadError",
    "distribution_modules",
    "installed_version",
    "normalize_dist",
    "purge_modules",
]
