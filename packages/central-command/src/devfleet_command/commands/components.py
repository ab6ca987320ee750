"""``devfleet components``, ``install``, ``upgrade``, ``uninstall`` and ``component``."""

from __future__ import annotations

from . import parse_assignments
from .control import broadcast_with_progress, summarize_broadcast

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the component subcommands."""
    p = sub.add_parser("components", help="the components a node has installed, available and running")
    p.add_argument("node")
    p.set_defaults(handler=cmd_components)
    for verb, text in (
        ("install", "pip-install a component distribution on nodes (rolled back if it fails)"),
        ("upgrade", "upgrade a component distribution (rolled back if it turns unhealthy)"),
        ("uninstall", "remove a component distribution from nodes"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("target", nargs="?", metavar="NODE", help="one node")
        p.add_argument("spec", help="a requirement: name, name==1.2, name[extra]>=1.0")
        p.add_argument("--all", action="store_true", help="every node of the fleet")
        p.add_argument("--group", metavar="G", help="every node of group G")
        p.add_argument(
            "--wait", type=float, default=None, metavar="S", help="seconds to wait for pip (default 900)"
        )
        p.set_defaults(handler=cmd_install, verb=verb)
    p = sub.add_parser("component", help="run a component's command: NODE COMPONENT COMMAND [key=value ...]")
    p.add_argument("node")
    p.add_argument("component")
    p.add_argument("command")
    p.add_argument("assignments", nargs="*", metavar="key=value")
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
        from rich.pretty import Pretty

        ctx.console().print(Pretty(result))
    return 0
