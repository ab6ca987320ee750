"""Errors of the console, one base class deriving from :class:`DevfleetError`.

The library raises these; only ``cli.py`` turns them into messages and exit codes.
"""

from __future__ import annotations

from typing import Any

from devfleet_base.errors import Code, DevfleetError

__all__ = [
    "CommandFailed",
    "CommandTimeout",
    "ConfigConflict",
    "ConnectError",
    "ConsoleError",
    "ConsoleTimeout",
    "InvalidConfig",
    "NodeNotFound",
    "PurgeError",
    "UsageError",
]


class ConsoleError(DevfleetError):
    """Base of every console error."""

    code = Code.INTERNAL


class UsageError(ConsoleError):
    """The caller asked for something malformed (bad ``key=value``, bad URL)."""

    code = Code.INVALID


class ConnectError(ConsoleError):
    """The broker cannot be reached, or refused us."""

    code = Code.UNAVAILABLE


class NodeNotFound(ConsoleError):
    """The fleet model does not know this node."""

    code = Code.NOT_FOUND


class InvalidConfig(ConsoleError):
    """A config value failed client-side validation; nothing was sent."""

    code = Code.INVALID


class ConsoleTimeout(ConsoleError):
    """Something awaited did not happen in time."""

    code = Code.TIMEOUT


class CommandTimeout(ConsoleTimeout):
    """A command got no final receipt in time."""


class CommandFailed(ConsoleError):
    """A node answered a command with an ``error`` receipt.

    Attributes:
        node: the node that failed.
        verb: the command.
        receipt: the wire receipt, when one came.
    """

    code = Code.FAILED

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        node: str = "",
        verb: str = "",
        receipt: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.node = node
        self.verb = verb
        self.receipt = receipt


class ConfigConflict(CommandFailed):
    """A config write named a stale ``expect_version``."""

    code = Code.CONFLICT


class PurgeError(ConsoleError):
    """A purge was refused (node online) or left retained topics behind."""

    code = Code.FAILED
