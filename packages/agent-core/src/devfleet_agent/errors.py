"""Errors of the agent; every one derives from :class:`devfleet_base.DevfleetError`."""

from __future__ import annotations

from devfleet_base.errors import DevfleetError

__all__ = ["AgentError", "ConnectionRefusedFatal", "SettingsError"]


class AgentError(DevfleetError):
    """Something the agent itself could not do."""


class SettingsError(AgentError):
    """A wrong or missing local setting (flag, environment, settings file)."""


class ConnectionRefusedFatal(AgentError):
    """The broker refused us for a reason retrying cannot fix (bad credentials)."""
