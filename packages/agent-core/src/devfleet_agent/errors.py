"""Errors of the agent; every one derives from :class:`devfleet_base.DevfleetError`."""

from __future__ import annotations

from devfleet_base.errors import DevfleetError

__all__ = ["AgentError", "SettingsError"]


class AgentError(DevfleetError):
    """Something the agent itself could not do."""


class SettingsError(AgentError):
    """A wrong or missing local setting (flag, environment, settings file)."""
