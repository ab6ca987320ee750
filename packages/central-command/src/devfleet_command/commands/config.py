"""``devfleet config get|set`` and ``devfleet drift``."""

from __future__ import annotations

from .argtypes import non_negative_int

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``config get``, ``config set`` and ``drift``."""
    p = sub.add_parser(
        "config",
        description="Read (get) or change (set) a node's versioned config; `drift` lists nodes"
        " whose desired config differs.",
        examples=[
            "devfleet config get rpi-livingroom",
            "devfleet config set rpi-livingroom telemetry.interval=5",
        ],
    )
    csub = sub.nested(p, "config_command")
    g = csub.add_parser(
        "get",
        help="the node's config and kept versions",
        description="The node's config as it answers, as JSON (values paste back into `config set`),"
        " with its version and the versions kept for rollback.",
        examples=["devfleet config get rpi-livingroom", "devfleet config get rpi-livingroom --json"],
    )
    g.add_argument("node", help="the node's name")
    g.set_defaults(handler=cmd_get)
    s = csub.add_parser(
        "set",
        help="set config keys (key=value, dotted keys)",
        description="Set config keys on a node. Keys are dotted paths of the node config"
        ' (docs/contract.md). A value is JSON (5, true, ["a"], {"enabled": true}) where the'
        ' schema wants a number, list or object, and is refused as "not valid JSON" when it'
        " does not parse; where the schema wants a string the text is taken as it is"
        " (description=lab bench). Validated before anything is sent.",
        examples=[
            "devfleet config set rpi-livingroom telemetry.interval=5 --expect-version 3",
            "devfleet config set rpi-livingroom 'groups=[\"lobby\"]' description=by the door",
            "devfleet config set rpi-livingroom components.ledstrip='{\"enabled\": true}'",
        ],
    )
    s.add_argument("node", help="the node's name")
    s.add_argument(
        "assignments", nargs="+", metavar="key=value", help="a dotted config key and its value (repeatable)"
    )
    s.add_argument(
        "--expect-version",
        type=non_negative_int,
        metavar="N",
        help="refuse unless the node is at config version N (see `config get`)",
    )
    s.add_argument(
        "--desired", action="store_true", help="publish as the node's retained desired config instead"
    )
    s.set_defaults(handler=cmd_set)
    d = sub.add_parser(
        "drift",
        description="Nodes whose retained desired config (config set --desired) is not what they"
        " report; exit 1 when any drifted.",
        examples=["devfleet drift", "devfleet drift --json"],
    )
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
    from .values import config_assignments

    values = config_assignments(ctx.args.assignments)
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
