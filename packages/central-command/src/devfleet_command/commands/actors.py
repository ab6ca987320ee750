"""``devfleet spawn``, ``stop``, ``stop-all``, ``actors``, ``migrate`` and ``task`` (Wactorz actors)."""

from __future__ import annotations

from . import parse_value

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the actor subcommands."""
    p = sub.add_parser(
        "spawn",
        description="Spawn a Wactorz dynamic actor on a node (it must run with --allow-code)."
        " The spawn is retained, so an offline node runs it when it returns (--no-retain: not).",
        examples=[
            "devfleet spawn rpi-livingroom examples/temp-sensor.json",
            "devfleet spawn rpi-livingroom --name blinker --code blink.py --poll-interval 0.5",
        ],
    )
    p.add_argument("node", help="the node's name")
    p.add_argument("spec", nargs="?", metavar="FILE.json", help="the Wactorz spawn config ('-' for stdin)")
    p.add_argument("--name", help="actor name (with --code)")
    p.add_argument("--code", metavar="FILE.py", help="the actor's code: async def setup/process(agent)")
    p.add_argument("--poll-interval", type=float, help="seconds between process() calls")
    p.add_argument(
        "--install", action="append", default=[], metavar="REQ", help="pip requirement (repeatable)"
    )
    p.add_argument("--replace", action="store_true", help="replace a running actor of that name")
    p.add_argument("--no-retain", action="store_true", help="do not leave the spawn for an offline node")
    p.set_defaults(handler=cmd_spawn)
    p = sub.add_parser(
        "stop",
        description="Stop an actor on a node; a deliberate stop is never restarted.",
        examples=["devfleet stop rpi-livingroom temp-sensor-agent"],
    )
    p.add_argument("node", help="the node's name")
    p.add_argument("name", help="the actor's name")
    p.add_argument("--delete", action="store_true", help="also remove its state file and retained topics")
    p.add_argument(
        "--keep-topics",
        action="store_true",
        help="with --delete: keep its retained topics (it lives elsewhere)",
    )
    p.set_defaults(handler=cmd_stop)
    p = sub.add_parser(
        "stop-all",
        description="Stop every actor on a node, then its agent or Wactorz runner shuts down"
        " (Wactorz stop_all); it says offline. Start it again on the device.",
        examples=["devfleet stop-all rpi-livingroom"],
    )
    p.add_argument("node", help="the node's name")
    p.set_defaults(handler=cmd_stop_all)
    p = sub.add_parser(
        "actors",
        description="The actors in the fleet's retained state: node, name, state, restarts, last error.",
        examples=["devfleet actors", "devfleet actors rpi-livingroom --json"],
    )
    p.add_argument("node", nargs="?", help="only this node's actors")
    p.set_defaults(handler=cmd_actors)
    p = sub.add_parser(
        "migrate",
        description="Move an actor with its persisted state to another node; if that fails it"
        " keeps running where it was.",
        examples=["devfleet migrate temp-sensor-agent --to rpi-bedroom"],
    )
    p.add_argument("name", help="the actor's name")
    p.add_argument("--to", required=True, metavar="NODE", help="the node to move it to")
    p.add_argument("--from", dest="source", metavar="NODE", help="the source (default: where it runs)")
    p.set_defaults(handler=cmd_migrate)
    p = sub.add_parser(
        "task",
        description="Send a task to an actor by name (Wactorz send_to) and print its handle_task"
        " answer as JSON. PAYLOAD is JSON; a bare word is a string; text that starts like JSON"
        ' ({ [ ") must be valid JSON. `devfleet task submit --skill S` auctions a task instead'
        " (docs/trading.md): the cheapest capable actor runs it.",
        examples=[
            "devfleet task temp-sensor-agent '{\"read\": true}'",
            "devfleet task greeter hello",
            "devfleet task submit --skill sql-optimiser --inputs '{\"q\": 1}' --accredit gdpr",
        ],
    )
    p.add_argument("name", help="the actor's name (or `submit`)")
    p.add_argument("payload", nargs="?", help="the task: JSON (or a bare word)")
    from .trading import add_submit_options

    add_submit_options(p)
    p.set_defaults(handler=cmd_task)


def _read(path: str, what: str) -> str:
    import sys

    from ..errors import UsageError

    try:
        from pathlib import Path

        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from None


def _spec(ctx: Context) -> dict[str, Any]:
    import json

    from ..errors import UsageError

    a = ctx.args
    if a.spec and a.code:
        raise UsageError("spawn: give FILE.json or --code, not both")
    if a.spec:
        try:
            spec = json.loads(_read(a.spec, "spawn config"))
        except ValueError as exc:
            raise UsageError(f"spawn: {a.spec} is not JSON: {exc}") from None
        if not isinstance(spec, dict):
            raise UsageError(f"spawn: {a.spec} must hold a JSON object")
    elif a.code:
        if not a.name:
            raise UsageError("spawn: --code needs --name")
        spec = {"name": a.name, "code": _read(a.code, "code")}
    else:
        raise UsageError("spawn: give FILE.json or --name and --code")
    if a.name:
        spec["name"] = a.name
    if a.poll_interval is not None:
        spec["poll_interval"] = a.poll_interval
    if a.install:
        spec["install"] = [*spec.get("install", []), *a.install]
    return spec


async def cmd_spawn(ctx: Context) -> int:
    """Spawn an actor."""
    spec = _spec(ctx)
    async with ctx.fleet() as fleet:
        result = await fleet.spawn(
            ctx.args.node,
            spec,
            replace=True if ctx.args.replace else None,
            retain=not ctx.args.no_retain,
            timeout=ctx.timeout_or(30.0),
        )
    if ctx.json:
        ctx.emit_json({"node": ctx.args.node, "name": spec.get("name"), "result": result})
    else:
        state = result.get("state") if isinstance(result, dict) else None
        print(f"{ctx.args.node}: spawned {spec.get('name')}{f' ({state})' if state else ''}", file=ctx.out)
    return 0


async def cmd_stop(ctx: Context) -> int:
    """Stop an actor."""
    async with ctx.fleet() as fleet:
        result = await fleet.stop_actor(
            ctx.args.node,
            ctx.args.name,
            delete=ctx.args.delete,
            keep_topics=ctx.args.keep_topics,
            timeout=ctx.timeout,
        )
    if ctx.json:
        ctx.emit_json({"node": ctx.args.node, "name": ctx.args.name, "result": result})
    else:
        print(f"{ctx.args.node}: stopped {ctx.args.name}", file=ctx.out)
    return 0


async def cmd_stop_all(ctx: Context) -> int:
    """Stop every actor on a node and shut it down."""
    async with ctx.fleet() as fleet:
        result = await fleet.stop_all(ctx.args.node, timeout=ctx.timeout)
    if ctx.json:
        ctx.emit_json({"node": ctx.args.node, "result": result})
    else:
        print(f"{ctx.args.node}: stopped every actor; it is shutting down", file=ctx.out)
    return 0


async def cmd_actors(ctx: Context) -> int:
    """List actors from the retained state."""
    from ..wactorz_ops import refresh_lists

    async with ctx.fleet() as fleet:
        await refresh_lists(fleet)  # Wactorz nodes' actors: asked, their heartbeats are not retained
        rows = fleet.actors(ctx.args.node)
    if ctx.json:
        ctx.emit_json(rows)
        return 0
    from .render import actors_table

    ctx.console().print(actors_table(rows))
    return 0


async def cmd_migrate(ctx: Context) -> int:
    """Migrate an actor."""
    async with ctx.fleet() as fleet:
        with ctx.console(stderr=True).status(f"migrating {ctx.args.name} to {ctx.args.to} ..."):
            result = await fleet.migrate(
                ctx.args.name, ctx.args.to, source=ctx.args.source, timeout=ctx.timeout_or(30.0)
            )
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(
            f"{ctx.args.name}: migrated from {result.get('from_node')} to {result.get('to_node')}",
            file=ctx.out,
        )
    return 0


async def cmd_task(ctx: Context) -> int:
    """Send a task and print the answer (``task submit``: auction one, see commands.trading)."""
    if ctx.args.name == "submit" and ctx.args.payload is None:
        from .trading import cmd_submit

        return await cmd_submit(ctx)
    if ctx.args.payload is None:
        from ..errors import UsageError

        raise UsageError("task: give NAME PAYLOAD, or submit --skill S")
    payload = parse_value(ctx.args.payload)  # before connecting: a typo costs no round trip
    async with ctx.fleet() as fleet:
        answer = await fleet.task(ctx.args.name, payload, timeout=ctx.timeout)
    if ctx.json:
        ctx.emit_json(answer)
    else:
        ctx.emit_result(answer)
    return 0
