"""The CLI's subcommands, one module each group, found through :data:`MODULES`.

A module exposes ``register(subparsers)``: it adds its parsers and sets
``handler`` (an ``async def handler(ctx: Context) -> int``) on each. Later
features (components, install, spawn, actors, migrate, task) add a module here
and a line to :data:`MODULES`; nothing else changes. Modules import rich and the
clients inside their handlers, so ``devfleet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import UsageError

if TYPE_CHECKING:
    from ..aio import AsyncFleet, Broadcast

__all__ = ["MODULES", "Context", "parse_assignments", "parse_value"]

MODULES: tuple[str, ...] = (
    "devfleet_command.commands.nodes",
    "devfleet_command.commands.config",
    "devfleet_command.commands.control",
    "devfleet_command.commands.logs",
    "devfleet_command.commands.components",
    "devfleet_command.commands.actors",
)
"""Subcommand modules, in the order their commands appear in ``--help``."""


@dataclass
class Context:
    """What a subcommand handler gets: parsed arguments and how to reach the fleet.

    ``cli.py`` builds it (it alone reads the environment and files).
    """

    args: argparse.Namespace
    broker: str
    username: str | None
    password: str | None
    tls_ca: str | None
    signing_key: bytes | None
    json: bool
    timeout: float
    debug: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def fleet(self, **kwargs: Any) -> AsyncFleet:
        """An unstarted client: ``async with ctx.fleet() as fleet``."""
        from ..aio import AsyncFleet

        return AsyncFleet.connect(
            self.broker,
            username=self.username,
            password=self.password,
            tls_ca=self.tls_ca,
            signing_key=self.signing_key,
            connect_timeout=self.timeout,
            **kwargs,
        )

    def emit_json(self, obj: Any) -> None:
        """Print one JSON document."""
        json.dump(obj, self.out, indent=2, sort_keys=True, default=str)
        self.out.write("\n")
        self.out.flush()

    def console(self, stderr: bool = False) -> Any:
        """A rich console on stdout (or stderr)."""
        from rich.console import Console

        return Console(file=self.err if stderr else self.out, highlight=False)

    def broadcast_exit(self, bc: Broadcast) -> int:
        """Exit code for a finished broadcast: 1 if a node failed, 3 if one timed out."""
        if bc.failed:
            return 1
        if bc.timed_out:
            return 3
        return 0


def parse_value(text: str) -> Any:
    """JSON when it parses (``5``, ``true``, ``["a"]``), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a.b": 1, "c": "x"}``.

    Raises:
        UsageError: an item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        out[key] = parse_value(value)
    return out
