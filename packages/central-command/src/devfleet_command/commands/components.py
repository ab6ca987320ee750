"""``devfleet components``, ``install``, ``upgrade``, ``uninstall`` and ``component``."""

from __future__ import annotations

from . import VERBS, parse_assignments
from .argtypes import seconds_at_least
from .control import broadcast_with_progress, summarize_broadcast

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the component subcommands."""
    p = sub.add_parser(
        "components",
        description="The components a node has: each one's state, health, version and"
        " distribution, and any that failed to load.",
        examples=["devfleet components rpi-livingroom", "devfleet components rpi-livingroom --json"],
    )
    p.add_argument("node", help="the node's name")
    p.set_defaults(handler=cmd_components)
    for verb, example in (
        ("install", "devfleet install rpi-livingroom devfleet-component-ledstrip"),
        ("upgrade", "devfleet upgrade rpi-livingroom 'devfleet-component-ledstrip>=0.2'"),
        ("uninstall", "devfleet uninstall rpi-livingroom devfleet-component-ledstrip"),
    ):
        text = VERBS[verb][1]  # the one-line summary of the top-level --help
        p = sub.add_parser(
            verb,
            description=f"{text[0].upper()}{text[1:]}. The node must run with --allow-install and"
            " list the distribution in its components_allowed config. Options may come anywhere.",
            examples=[example, f"devfleet {verb} --group lobby --wait 300 devfleet-component-ledstrip"],
        )
        p.add_argument("target", nargs="?", metavar="NODE", help="one node (or give --all or --group)")
        p.add_argument("spec", metavar="SPEC", help="a requirement: name, name==1.2, name[extra]>=1.0")
        p.add_argument("--all", action="store_true", help="every node of the fleet")
        p.add_argument("--group", metavar="G", help="every node of group G")
        p.add_argument(
            "--wait",
            type=seconds_at_least(1, 86400),
            default=None,
            metavar="S",
            help="seconds to wait for pip (default 900)",
        )
        p.set_defaults(handler=cmd_install, verb=verb)
    p = sub.add_parser(
        "component",
        description="Run one of a component's declared commands and print its answer as JSON."
        " A value is JSON when it parses, a bare word is a string.",
        examples=[
            "devfleet component rpi-livingroom ledstrip set_effect effect=rainbow",
            "devfleet component rpi-livingroom ledstrip brightness value=128",
        ],
    )
    p.add_argument("node", help="the node's name")
    p.add_argument("component", help="the component's name (see `devfleet components NODE`)")
    p.add_argument("command", help="one of the component's commands")
    p.add_argument("assignments", nargs="*", metavar="key=value", help="the command's arguments")
    p.set_defaults(handler=cmd_component)


async def cmd_components(ctx: Context) -> int:
    """List a node's components."""
    async with ctx.fleet() as fleet:
        info = await fleet.components(ctx.args.node, timeout=ctx.timeout)
    if ctx.json:
        ctx.emit_json(info)
        return 0
    from .render import components_renderables

    con = ctx.console()
    for part in components_renderables(info):
        con.print(part)
    return 0


async def cmd_install(ctx: Context) -> int:
    """Install, upgrade or uninstall on one node, a group or the fleet."""
    from ..aio import INSTALL_TIMEOUT
    from ..errors import UsageError

    a = ctx.args
    verb = a.verb
    if sum(bool(x) for x in (a.target, a.all, a.group)) != 1:
        raise UsageError(f"{verb}: name one NODE, or --all, or --group G (then the SPEC)")
    wait = a.wait if a.wait is not None else INSTALL_TIMEOUT
    async with ctx.fleet() as fleet:
        if a.target:
            with ctx.console(stderr=True).status(f"{verb} {a.spec} on {a.target} ..."):
                if verb == "uninstall":
                    result = await fleet.uninstall(a.target, a.spec, timeout=wait)
                else:
                    result = await fleet.install(a.target, a.spec, upgrade=verb == "upgrade", timeout=wait)
            if ctx.json:
                ctx.emit_json({"node": a.target, "result": result})
            else:
                version = result.get("version")
                print(
                    f"{a.target}: {verb} {result.get('dist', a.spec)} {version or ''} ok".replace("  ", " "),
                    file=ctx.out,
                )
            return 0
        bc = await broadcast_with_progress(ctx, fleet, verb, {"spec": a.spec}, timeout=wait)
    summarize_broadcast(ctx, bc)
    return ctx.broadcast_exit(bc)


async def cmd_component(ctx: Context) -> int:
    """A component command with key=value arguments."""
    args = parse_assignments(ctx.args.assignments)
    async with ctx.fleet() as fleet:
        result = await fleet.component_command(
            ctx.args.node, ctx.args.component, ctx.args.command, args, timeout=ctx.timeout
        )
    if ctx.json:
        ctx.emit_json({"node": ctx.args.node, "result": result})
    else:
        ctx.emit_result(result)
    return 0
