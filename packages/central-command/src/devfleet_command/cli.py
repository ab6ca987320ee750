"""``devfleet``: the operator's command line, a thin layer over the library.

This module alone reads the environment and files, and turns errors into
one-line messages and exit codes. Subcommands live in
:mod:`devfleet_command.commands` modules listed in ``VERBS``: a verb's parser is
built when it is looked up, so ``devfleet --help`` builds none and ``devfleet VERB``
builds VERB's module's only.
"""

from __future__ import annotations

import argparse
import os
import sys

from devfleet_base.broker_flag import BrokerListAction

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
  3  timeout or unreachable (no broker, unknown node, no answer in time);
     a node never seen fails at once (nothing sent) unless --wait-for-node S

environment (a flag wins over its variable, a variable over the profile):
  DEVFLEET_BROKER             --broker (default mqtt://127.0.0.1:1883)
  DEVFLEET_USERNAME           --username
  DEVFLEET_PASSWORD           --password
  DEVFLEET_TLS_CA             --tls-ca
  DEVFLEET_SIGNING_KEY_FILE   --signing-key-file
  DEVFLEET_WACTORZ_KEY_FILE   --wactorz-key-file
  DEVFLEET_WACTORZ_KEY        the Wactorz fleet key itself, hex (a key file wins)
  DEVFLEET_PROFILE            --profile
  DEVFLEET_CONSOLE_CONFIG     the profiles file (default ~/.config/devfleet/console.toml)

shell completion (pip install 'devfleet-central-command[completion]'):
  eval "$(register-python-argcomplete devfleet)"

Every command has --help with examples: devfleet config set --help
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser: every verb is listed (with its summary from ``commands.VERBS``);
    its parser is built, importing its command module, when argparse, argcomplete or
    a caller looks it up in the subparsers' ``choices``. Imports neither rich nor paho."""
    from .commands import VERBS

    parser = _Parser(
        prog="devfleet",
        description="Central command for a devfleet: list, watch, configure and command nodes.",
        epilog=EPILOG,
        formatter_class=_RawDescriptionFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    _add_globals(parser, suppress=False)
    action = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    verbs = _Verbs(VERBS)
    # What argparse's add_parser(verb, help=...) would leave for the listing, without the
    # parser: the pseudo-action that holds the verb and its one-line summary.
    action._choices_actions.extend(
        action._ChoicesPseudoAction(verb, (), help) for verb, (_, help) in VERBS.items()
    )
    action.choices = action._name_parser_map = verbs
    verbs.subcommands = Subcommands(action, verbs=verbs)
    return parser


class _Verbs(dict):  # type: ignore[type-arg]
    """The top-level subparsers' ``choices``: verb → parser, each verb's parser built on
    first lookup by its module's ``register`` (which builds that module's verbs).

    Keys, their order and ``in`` are the listed verbs from the start, so argparse's
    "invalid choice" message and argcomplete's verb completion see them all; every way
    of reading a value (``[]``, ``get``, ``values``, ``items``) builds it first."""

    subcommands: Subcommands

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        super().__init__(dict.fromkeys(table))  # None: not built yet
        self.table = table

    def __getitem__(self, verb: str) -> argparse.ArgumentParser:
        parser = super().__getitem__(verb)
        if parser is None:
            import importlib

            module = self.table[verb][0]
            importlib.import_module(f"{__package__}.commands.{module}").register(self.subcommands)
            parser = super().__getitem__(verb)
            if parser is None:
                raise LookupError(
                    f"commands.VERBS lists {verb!r} under {module}, whose register() does not add it"
                )
        return parser  # type: ignore[no-any-return]

    def get(self, verb: str, default: Any = None) -> Any:
        if verb not in self:
            return default
        return self[verb]  # built, unlike dict.get's

    def values(self) -> Any:
        return [self[verb] for verb in self]

    def items(self) -> Any:
        return [(verb, self[verb]) for verb in self]


class _Parser(argparse.ArgumentParser):
    """Options may come between positionals (``install NODE --wait 60 SPEC``): a
    parser without subcommands parses intermixed (argparse's own two-pass parse)."""

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into this method
        try:
            return super().parse_known_intermixed_args(args, namespace)
        except TypeError:  # a parser argparse cannot intermix (REMAINDER): parse it plainly
            return super().parse_known_args(args, namespace)
        finally:
            self._intermixing = False


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: Any, dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("devfleet-central-command")
        except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
            text = "unknown"
        print(f"devfleet {text} (devfleet-central-command, Python {sys.version.split()[0]})")
        parser.exit()


def _width() -> int:
    """argparse's own default width, ``shutil.get_terminal_size().columns - 2``, without
    importing shutil (and its zlib, bz2, lzma and fnmatch: ~2 ms of ``devfleet --help``)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _SizedFormatter(argparse.HelpFormatter):
    """argparse's formatter, its width found by :func:`_width`."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: Any = None,
        **more: Any,
    ) -> None:
        width = _width() if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width, **more)


class _RawDescriptionFormatter(_SizedFormatter, argparse.RawDescriptionHelpFormatter):
    """The top-level help: description and epilog kept line by line."""


class _HelpFormatter(_SizedFormatter):
    """A one-paragraph description is wrapped to the terminal; text with line breaks
    (the examples) is kept line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class Subcommands:
    """What a command module's ``register`` gets: ``add_parser`` (the global options
    are accepted after the subcommand too) and ``nested`` for sub-subcommands."""

    def __init__(
        self, action: Any, common: argparse.ArgumentParser | None = None, *, verbs: _Verbs | None = None
    ) -> None:
        self._action = action
        self._common = common
        self._verbs = verbs  # the top level: verbs and their summaries from commands.VERBS

    @property
    def common(self) -> argparse.ArgumentParser:
        """The global options, as a parent of every subcommand's parser (built once, on
        the first subcommand built)."""
        if self._common is None:
            self._common = argparse.ArgumentParser(add_help=False)
            _add_globals(self._common, suppress=True)
        return self._common

    def add_parser(
        self, name: str, *, examples: Sequence[str] = (), **kwargs: Any
    ) -> argparse.ArgumentParser:
        """Add a subcommand parser.

        Args:
            name: the subcommand.
            examples: command lines shown under "examples:" in its ``--help``
                (``"devfleet ls --json"``; a ``#`` comment may follow).
            kwargs: for argparse's ``add_parser``; ``description`` defaults to ``help``
                (a top-level verb's ``help`` is its summary in ``commands.VERBS``).

        Raises:
            ValueError: a top-level verb not in ``commands.VERBS``, or given ``help=``.
        """
        kwargs.setdefault("parents", [self.common])
        if self._verbs is not None:
            if name not in self._verbs.table or "help" in kwargs:
                raise ValueError(f"a top-level verb ({name!r}) and its summary belong in commands.VERBS")
            kwargs["help"] = self._verbs.table[name][1]
        if "help" in kwargs:
            kwargs.setdefault("description", kwargs["help"][:1].upper() + kwargs["help"][1:] + ".")
        if examples:
            kwargs.setdefault("epilog", "examples:\n" + "\n".join(f"  {e}" for e in examples))
        kwargs.setdefault("formatter_class", _HelpFormatter)
        if self._verbs is None:
            parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
            return parser
        # The verb is listed already (build_parser): what argparse's add_parser does
        # besides listing it, into the lazy map.
        del kwargs["help"]
        kwargs.setdefault("prog", f"{self._action._prog_prefix} {name}")
        parser = self._action._parser_class(**kwargs)
        dict.__setitem__(self._verbs, name, parser)
        return parser

    def nested(self, parser: argparse.ArgumentParser, dest: str) -> Subcommands:
        """Sub-subcommands of ``parser`` (``config get``)."""
        action = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True, parser_class=_Parser)
        return Subcommands(action, self.common)


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # Defaults are None ("not given"): cli_settings then looks at the environment and
    # the profile, so a flag always wins and --help needs no file read.
    from .commands.argtypes import seconds

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--broker",
        default=default(None),
        metavar="URL",
        action=BrokerListAction,
        help="broker URL, mqtt://host:port or mqtts://host:port (env DEVFLEET_BROKER); several"
        " (repeated, or comma-separated): the first that answers, the next when it is lost",
    )
    parser.add_argument("--username", default=default(None), help="broker user name (env DEVFLEET_USERNAME)")
    parser.add_argument("--password", default=default(None), help="broker password (env DEVFLEET_PASSWORD)")
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=default(None),
        help="CA certificate file; enables TLS (env DEVFLEET_TLS_CA)",
    )
    parser.add_argument(
        "--signing-key-file",
        metavar="FILE",
        default=default(None),
        help="this console's identity (devfleet provision --console): sign commands, verify answers "
        "(env DEVFLEET_SIGNING_KEY_FILE)",
    )
    parser.add_argument(
        "--wactorz-key-file",
        metavar="FILE",
        default=default(None),
        help="the fleet key shared with Wactorz nodes (hex, as their WACTORZ_NODE_KEY): sign control"
        " messages to them the Wactorz way, verify what they publish (env DEVFLEET_WACTORZ_KEY_FILE)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        default=default(None),
        help="settings from [NAME] of ~/.config/devfleet/console.toml (env DEVFLEET_PROFILE)",
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=default(None),
        metavar="S",
        help="seconds to wait for the broker and answers, more than 0 (default 10; 30 for spawn and migrate)",
    )
    parser.add_argument(
        "--wait-for-node",
        type=seconds,
        metavar="S",
        default=default(0.0),
        help="a node never seen: wait S seconds for its birth (provisioning) instead of exit 3 at once",
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
        InvalidRequest,
        NodeNotFound,
        PurgeError,
        UsageError,
    )

    # The library's typed refusals (InvalidRequest: InvalidURL, InvalidSpec,
    # AmbiguousActor...) are usage errors here, like the CLI's own.
    if isinstance(exc, (UsageError, InvalidRequest, InvalidConfig, ContractError, ValueError)):
        return EXIT_USAGE
    if isinstance(exc, (ConsoleTimeout, ConnectError, NodeNotFound)):
        return EXIT_UNREACHABLE
    if isinstance(exc, (CommandFailed, PurgeError)):
        return EXIT_FAILED
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``devfleet``; return the exit code."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # only when a shell asks for completions
        _complete(parser)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.CRITICAL,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    import asyncio

    from devfleet_base.errors import DevfleetError

    from .commands import Context

    settings = None
    try:
        from .cli_settings import resolve

        flags = {
            k: getattr(args, k)
            for k in ("broker", "username", "password", "tls_ca", "signing_key_file", "wactorz_key_file")
        }
        settings = resolve({**flags, "timeout": args.timeout}, os.environ, profile=args.profile)
        ctx = Context(
            args=args,
            broker=settings.broker,
            username=settings.username,
            password=settings.password,
            tls_ca=settings.tls_ca,
            signing_key_file=settings.signing_key_file,
            wactorz_key=settings.wactorz_key,
            json=args.json,
            timeout=settings.timeout,
            debug=args.debug,
            wait_for_node=args.wait_for_node,
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
        print(f"devfleet: {message}{_hint(exc, settings)}", file=sys.stderr)
        return _exit_code(exc)


def _hint(exc: BaseException, settings: Any) -> str:
    """What the operator can do about an error, when the CLI knows."""
    from devfleet_base.errors import Code

    from .errors import CommandFailed

    if isinstance(exc, CommandFailed) and exc.code == Code.BAD_SIGNATURE:
        if settings is None or settings.signing_key_file is None:
            return (
                "; the node accepts only signed commands: give this console's identity with"
                " --signing-key-file FILE (or DEVFLEET_SIGNING_KEY_FILE; devfleet provision --console makes one)"
            )
        return f"; the node does not trust the identity in {settings.signing_key_file}"
    return ""


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete, an optional dependency (the
    ``completion`` extra); without it, completion is silently unavailable."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
