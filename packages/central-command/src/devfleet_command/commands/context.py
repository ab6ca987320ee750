"""The context a subcommand handler gets (a module of its own: building the parser for
``devfleet --help`` does not need dataclasses)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from devfleet_base.signing import Identity

    from ..aio import AsyncFleet, Broadcast

__all__ = ["Context"]


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
    signing_key_file: str | None
    json: bool
    timeout: float
    debug: bool
    wait_for_node: float = 0.0
    wactorz_key: bytes | None = field(default=None, repr=False)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _identity: Identity | None = field(default=None, repr=False)

    def fleet(self, **kwargs: Any) -> AsyncFleet:
        """An unstarted client: ``async with ctx.fleet() as fleet``."""
        from ..aio import AsyncFleet

        return AsyncFleet.connect(
            self.broker,
            username=self.username,
            password=self.password,
            tls_ca=self.tls_ca,
            identity=self.identity(),
            wactorz_key=self.wactorz_key,
            connect_timeout=self.timeout,
            wait_for_node=self.wait_for_node,
            **kwargs,
        )

    def identity(self) -> Identity | None:
        """This console's signing identity (``--signing-key-file``), read once.

        Raises:
            SignatureError: the file is unreadable or not an identity.
        """
        if not self.signing_key_file:
            return None
        if self._identity is None:
            from devfleet_base.signing import Identity

            self._identity = Identity.load(self.signing_key_file)
        return self._identity

    def timeout_or(self, default: float) -> float:
        """``--timeout`` when given, else this command's own ``default``."""
        given = getattr(self.args, "timeout", None)
        return float(given) if given is not None else default

    def waiting_hint(self, names: list[str], seconds: float) -> None:
        """A progress hint on stderr while a one-shot command waits for heartbeats."""
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        print(
            f"devfleet: waiting up to {seconds:g} s for a heartbeat from {shown}"
            " (the broker's retained status says online)",
            file=self.err,
            flush=True,
        )

    def emit_json(self, obj: Any) -> None:
        """Print one JSON document (what JSON cannot carry, as text: see ``output.json_text``)."""
        from ..output import json_text

        print(json_text(obj), file=self.out, flush=True)

    def emit_result(self, obj: Any) -> None:
        """Print a node's answer as JSON, never a Python repr, so it can be pasted back
        (``config set``, ``task``); one line when short, indented when long."""
        from ..output import json_text

        text = json_text(obj, indent=None)
        print(text if len(text) <= 100 else json_text(obj), file=self.out, flush=True)

    def console(self, stderr: bool = False) -> Any:
        """A rich console on stdout (or stderr); not wrapped at 80 columns for a pipe."""
        from ..output import console

        return console(self.err if stderr else self.out)

    def broadcast_exit(self, bc: Broadcast) -> int:
        """Exit code for a finished broadcast: 1 if a node failed, 3 if one timed out."""
        if bc.failed:
            return 1
        if bc.timed_out:
            return 3
        return 0
