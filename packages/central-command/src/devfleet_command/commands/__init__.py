"""The CLI's subcommands, one module each group, found through :data:`VERBS`.

A module exposes ``register(subparsers)``: it adds its parsers and sets
``handler`` (an ``async def handler(ctx: Context) -> int``) on each. Later
features add a module here and their verbs to :data:`VERBS`; nothing else
changes. ``devfleet --help`` lists :data:`VERBS` without importing a module, and
``devfleet VERB`` imports only VERB's; modules import rich and the clients inside
their handlers, so both stay fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the help path need not import typing
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["VERBS", "Context", "parse_assignments", "parse_value"]

VERBS: dict[str, tuple[str, str]] = {
    "ls": ("nodes", "list the nodes of the fleet"),
    "show": ("nodes", "everything known about one node"),
    "watch": ("nodes", "a live table of the fleet with telemetry"),
    "config": ("config", "read or change a node's config"),
    "drift": ("config", "nodes whose desired config is not what they report"),
    "ping": ("control", "check that nodes answer commands"),
    "restart": ("control", "restart the agent of nodes"),
    "cmd": ("control", "send any command: devfleet cmd NODE VERB [key=value ...]"),
    "purge": ("control", "clear every retained topic of a gone node"),
    "logs": ("logs", "print the log records nodes ship (for --timeout seconds, or forever with -f)"),
    "components": ("components", "the components a node has installed, available and running"),
    "install": ("components", "pip-install a component distribution on nodes (rolled back if it fails)"),
    "upgrade": ("components", "upgrade a component distribution (rolled back if it turns unhealthy)"),
    "uninstall": ("components", "remove a component distribution from nodes"),
    "component": ("components", "run a component's command: NODE COMPONENT COMMAND [key=value ...]"),
    "spawn": ("actors", "spawn a dynamic actor: NODE FILE.json, or NODE --name N --code FILE.py"),
    "stop": ("actors", "stop an actor: NODE NAME"),
    "stop-all": ("actors", "stop every actor on a node and shut its agent (or Wactorz runner) down: NODE"),
    "actors": ("actors", "the actors running in the fleet (or on one node)"),
    "migrate": ("actors", "move an actor, with its persisted state, to another node"),
    "task": (
        "actors",
        "send a task to an actor wherever it runs: NAME PAYLOAD (JSON); or auction one: submit --skill S",
    ),
    "rollout": (
        "jobs",
        "run an operation over nodes in stages (canary, batches) gated by health; abort and revert",
    ),
    "job": ("jobs", "fleet jobs: ls, show, watch, abort, resume"),
    "resumes": ("trading", "capability résumés of the fleet's actors (agents/+/resume)"),
    "acl": ("trading", "broker ACL generated from résumés (acl generate)"),
    "provision": (
        "provision",
        "write a node's identity, broker password and agent.toml (or a console's identity)",
    ),
    "deploy": ("deploy", "install, provision and start the agent on a device over SSH"),
    "undeploy": ("deploy", "stop and remove the agent from a device, and clear its retained topics"),
    "viz": ("viz", "serve the live fleet web view and print its address"),
}
"""Every top-level verb, in ``--help`` order: the module of this package whose
``register`` adds its parser, and its one-line summary (the ``help`` of the top-level
listing; the verb's ``description`` defaults to it). A module's ``register`` adds the
verbs listed here for it, and no others, without ``help=``."""


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
