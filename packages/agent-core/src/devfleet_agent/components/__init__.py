"""Components on the node: the registry, the host subsystem, the install/upgrade/uninstall
lifecycle of their distributions (verified, rolled back on failure)."""

from __future__ import annotations

from .context import AgentComponentContext, ComponentRunnable
from .host import CHILD_PREFIX, COMPONENT_COMMAND_SCHEMA, ComponentHost
from .lifecycle import PROTECTED_DISTS, DistributionLifecycle, RunningComponents, installed_version
from .registry import (
    ComponentEntry,
    ComponentRegistry,
    LoadError,
    distribution_modules,
    purge_modules,
)
from .status import ComponentStatus

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
    "DistributionLifecycle",
    "LoadError",
    "RunningComponents",
    "distribution_modules",
    "installed_version",
    "purge_modules",
]
