"""``devfleet config get|set`` and ``devfleet drift``."""

from __future__ import annotations

from . import parse_assignments

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``config get``, ``config set`` and ``drift``."""
    p = sub.add_parser("config", help="read or change a node's config")
    csub = sub.nested(p, "config_command")
    g = csub.add_parser("get", help="the node's config and kept versions")
    g.add_argument("node")
    g.set_defaults(handler=cmd_get)
    s = csub.add_parser(
        "set",
        help="set config keys (key=value, dotted keys; values parsed as JSON when they parse)",
    )
    s.add_argument("node")
    s.add_argument("assignments", nargs="+", metavar="key=value")
    s.add_argument("--expect-version", type=int, help="refuse unless the node is at this config version")
    s.add_argument(
        "--desired", action="store_true", help="publish as the node's retained desired config instead"
    )
    s.set_defaults(handler=cmd_set)
    d = sub.add_parser("drift", help="nodes whose desired config is not what they report")
    d.set_defaults(handler=cmd_drift)


async def cmd_get(ctx: Context) -> int:
    """Print a node's config."""
    async with ctx.fleet() as fleet:
        result = await fleet.config_get(ctx.args.node, timeout=ctx.timeout)
    if ctx.json:
        ctx.emit_json(result)
    else:
        from .render import config_renderables

        con = ctx.console()
        for part in config_renderables(result):
            con.print(part)
    return 0


async def cmd_set(ctx: Context) -> int:
    """Set config keys on a node."""
    values = parse_assignments(ctx.args.assignments)
    async with ctx.fleet() as fleet:
        version = await fleet.config_set(
            ctx.args.node,
            values,
            expect_version=ctx.args.expect_version,
            desired=ctx.args.desired,
            timeout=ctx.timeout,
        )
    if ctx.json:
        ctx.emit_json({"node": ctx.args.node, "config_version": version, "desired": ctx.args.desired})
    elif ctx.args.desired:
        print(f"{ctx.args.node}: desired config published", file=ctx.out)
    else:
        print(f"{ctx.args.node}: config version {version}", file=ctx.out)
    return 0


async def cmd_drift(ctx: Context) -> int:
    """List drifted nodes; exit 1 when any drifted."""
    async with ctx.fleet() as fleet:
        drifts = fleet.drift()
    if ctx.json:
        ctx.emit_json(
            [
                {
                    "node": d.node,
                    "desired_id": d.desired_id,
                    "applied_id": d.applied_id,
                    "differences": {k: {"desired": a, "reported": b} for k, (a, b) in d.differences.items()},
                    "error": d.error,
                }
                for d in drifts
            ]
        )
    else:
        from .render import drift_lines

        for line in drift_lines(drifts):
            print(line, file=ctx.out)
    return 1 if drifts else 0
