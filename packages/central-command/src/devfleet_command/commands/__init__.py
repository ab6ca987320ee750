"""The CLI's subcommands, one module each group, found through :data:`MODULES`.

A module exposes ``register(subparsers)``: it adds its parsers and sets
``handler`` (an ``async def handler(ctx: Context) -> int``) on each. Later
features (components, install, spawn, actors, migrate, task) add a module here
and a line to :data:`MODULES`; nothing else changes. Modules import rich and the
clients inside their handlers, so ``devfleet --help`` stays fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the help path need not import typing
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["MODULES", "Context", "parse_assignments", "parse_value"]

MODULES: tuple[str, ...] = (
    "devfleet_command.commands.nodes",
    "devfleet_command.commands.config",
    "devfleet_command.commands.control",
    "devfleet_command.commands.logs",
    "devfleet_command.commands.components",
    "devfleet_command.commands.actors",
    "devfleet_command.commands.jobs",
    "devfleet_command.commands.trading",
    "devfleet_command.commands.provision",
    "devfleet_command.commands.deploy",
    "devfleet_command.commands.viz",
)
"""Subcommand modules, in the order their commands appear in ``--help``."""


def __getattr__(name: str) -> object:
    if name == "Context":  # loaded on first use: handlers need it, --help does not
        from .context import Context

        return Context
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_value(text: str) -> Any:
    """JSON when it parses (``5``, ``true``, ``["a"]``), a bare word as a string;
    text that starts like JSON but is not valid JSON raises ``UsageError``
    (see :mod:`devfleet_command.commands.values`)."""
    from .values import parse_value as parse

    return parse(text)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a.b": 1, "c": "x"}`` (see
    :func:`devfleet_command.commands.values.assignments`).

    Raises:
        UsageError: an item has no ``=`` or an empty key, or malformed JSON.
    """
    from .values import assignments

    return assignments(items)
