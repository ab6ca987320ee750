"""``devfleet``: the operator's command line, a thin layer over the library.

This module alone reads the environment and files, and turns errors into
one-line messages and exit codes. Subcommands live in
:mod:`devfleet_command.commands` modules listed in ``MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from devfleet_base.broker_url import BrokerListAction

# Not ``from typing import ...``: typing, logging and pathlib cost ~10 ms of imports that
# ``devfleet --help`` does not need (mypy reads this block, Python skips it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "Subcommands", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EPILOG = """\
exit codes:
  0  success
  1  a node reported failure (error receipt, drift found, purge incomplete)
  2  usage error (bad arguments, invalid config value: nothing was sent)
  3  timeout or unreachable (no broker, unknown node, no answer in time)

environment:
  DEVFLEET_BROKER    default for --broker (mqtt://127.0.0.1:1883)
  DEVFLEET_USERNAME, DEVFLEET_PASSWORD   defaults for --username/--password
"""


def build_parser() -> argparse.ArgumentParser:
    """The full parser (imports the command modules, not rich or paho)."""
    from .commands import MODULES

    parser = argparse.ArgumentParser(
        prog="devfleet",
        description="Central command for a devfleet: list, watch, configure and command nodes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_globals(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_globals(common, suppress=True)
    sub = Subcommands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True), common)
    for name in MODULES:
        importlib.import_module(name).register(sub)
    return parser


class Subcommands:
    """What a command module's ``register`` gets: ``add_parser`` (the global options
    are accepted after the subcommand too) and ``nested`` for sub-subcommands."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self._action = action
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """Add a subcommand parser."""
        kwargs.setdefault("parents", [self._common])
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        return parser

    def nested(self, parser: argparse.ArgumentParser, dest: str) -> Subcommands:
        """Sub-subcommands of ``parser`` (``config get``)."""
        action = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
        return Subcommands(action, self._common)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 86400")
    return value


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--broker",
        default=default(os.environ.get("DEVFLEET_BROKER", "mqtt://127.0.0.1:1883")),
        action=BrokerListAction,
        help="broker URL, mqtt://host:port or mqtts://host:port (env DEVFLEET_BROKER); several"
        " (repeated, or comma-separated): the first that answers, the next when it is lost",
    )
    parser.add_argument(
        "--username", default=default(os.environ.get("DEVFLEET_USERNAME")), help="broker user name"
    )
    parser.add_argument(
        "--password",
        default=default(os.environ.get("DEVFLEET_PASSWORD")),
        help="broker password (env DEVFLEET_PASSWORD)",
    )
    parser.add_argument(
        "--tls-ca", metavar="FILE", default=default(None), help="CA certificate file; enables TLS"
    )
    parser.add_argument(
        "--signing-key-file", metavar="FILE", default=default(None), help="sign commands with this shared key"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default(10.0),
        help="seconds to wait for the broker and answers (default 10)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="log the MQTT traffic and show tracebacks",
    )


def _exit_code(exc: BaseException) -> int:
    from devfleet_base.errors import ContractError

    from .errors import (
        CommandFailed,
        ConnectError,
        ConsoleTimeout,
        InvalidConfig,
        NodeNotFound,
        PurgeError,
        UsageError,
    )

    if isinstance(exc, (UsageError, InvalidConfig, ContractError, ValueError)):
        return EXIT_USAGE
    if isinstance(exc, (ConsoleTimeout, ConnectError, NodeNotFound)):
        return EXIT_UNREACHABLE
    if isinstance(exc, (CommandFailed, PurgeError)):
        return EXIT_FAILED
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``devfleet``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.CRITICAL,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    import asyncio

    from devfleet_base.errors import DevfleetError

    from .commands import Context

    try:
        key = None
        if args.signing_key_file:
            from pathlib import Path

            try:
                key = Path(args.signing_key_file).expanduser().read_bytes().strip()
            except OSError as exc:
                from .errors import UsageError

                raise UsageError(f"cannot read the signing key: {exc.strerror}: {exc.filename}") from None
        ctx = Context(
            args=args,
            broker=args.broker,
            username=args.username,
            password=args.password,
            tls_ca=args.tls_ca,
            signing_key=key,
            json=args.json,
            timeout=args.timeout,
            debug=args.debug,
        )
        return int(asyncio.run(args.handler(ctx)))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``devfleet ls --json | head``): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (DevfleetError, ValueError) as exc:
        if args.debug:
            raise
        message = exc.message if isinstance(exc, DevfleetError) else str(exc)
        print(f"devfleet: {message}", file=sys.stderr)
        return _exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
