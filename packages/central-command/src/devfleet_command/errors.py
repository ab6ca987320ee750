"""Errors of the console, one base class deriving from :class:`DevfleetError`.

The library raises these; only ``cli.py`` turns them into messages and exit codes.
"""

from __future__ import annotations

from typing import Any

from devfleet_base.errors import Code, DevfleetError

__all__ = [
    "AmbiguousActor",
    "CommandFailed",
    "CommandTimeout",
    "ConfigConflict",
    "ConnectError",
    "ConsoleError",
    "ConsoleTimeout",
    "InvalidConfig",
    "InvalidName",
    "InvalidRequest",
    "InvalidSpec",
    "InvalidURL",
    "NodeNotFound",
    "PurgeError",
    "UnverifiedNode",
    "UsageError",
]


class ConsoleError(DevfleetError):
    """Base of every console error."""

    code = Code.INTERNAL


class UsageError(ConsoleError):
    """The command line asked for something malformed (bad ``key=value``, a bad
    profile): raised by the CLI edge (``cli_settings``, ``commands``), never by the
    library, whose refusals are :class:`InvalidRequest`."""

    code = Code.INVALID


class InvalidRequest(ConsoleError):
    """The caller asked the library for something malformed; nothing was sent."""

    code = Code.INVALID


class InvalidURL(InvalidRequest):
    """A broker URL that does not parse (or TLS and plain brokers mixed)."""


class InvalidSpec(InvalidRequest):
    """A spawn spec the contract's schema refuses."""


class InvalidName(InvalidRequest):
    """A node, pool or topic-level name outside the grammar."""


class AmbiguousActor(InvalidRequest):
    """An actor name that runs on several nodes where one was needed.

    Attributes:
        actor: the actor's name.
        nodes: the nodes running it, sorted.
    """

    def __init__(self, message: str, *, actor: str = "", nodes: list[str] | None = None) -> None:
        super().__init__(message)
        self.actor = actor
        self.nodes = sorted(nodes or [])


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


class UnverifiedNode(ConsoleError):
    """A console that signs was asked to command a node whose presence it could not
    verify (a Wactorz node not signing with the fleet key this console holds).

    Attributes:
        node: the node.
    """

    code = Code.BAD_SIGNATURE

    def __init__(self, message: str, *, node: str = "") -> None:
        super().__init__(message)
        self.node = node


class PurgeError(ConsoleError):
    """A purge was refused (node online) or left retained topics behind."""

    code = Code.FAILED
