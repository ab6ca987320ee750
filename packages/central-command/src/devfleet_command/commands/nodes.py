"""``devfleet ls``, ``show NODE`` and ``watch``."""

from __future__ import annotations

import time

from .argtypes import seconds_at_least

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from ..model import NodeView
    from .context import Context

__all__ = ["register", "show_renderables", "table"]

_HEALTH_STYLE = {"online": "green", "stale": "yellow", "offline": "dim", "lost": "red", "unknown": "dim"}


def register(sub: Any) -> None:
    """Add ``ls``, ``show`` and ``watch``."""
    p = sub.add_parser(
        "ls",
        description="List every node the broker holds a retained description of: health, session,"
        " config version, groups, CPU/memory/disk and heartbeat age.",
        examples=["devfleet ls", "devfleet ls --json | jq -r '.[].node'"],
    )
    p.set_defaults(handler=cmd_ls)
    p = sub.add_parser(
        "show",
        description="Everything known about one node: its row of `ls`, then meta, state, cfg,"
        " desired config and last heartbeat as JSON, with times as dates.",
        examples=["devfleet show rpi-livingroom", "devfleet show rpi-livingroom --json"],
    )
    p.add_argument("node", help="the node's name")
    p.set_defaults(handler=cmd_show)
    p = sub.add_parser(
        "watch",
        description="A live table of the fleet, redrawn as telemetry arrives, until Ctrl-C."
        ' With --json: JSON Lines, one {"ts": ..., "nodes": [...]} snapshot per line whenever'
        " something changed (at most one per --refresh).",
        examples=[
            "devfleet watch",
            "devfleet watch --once            # one table, then exit",
            "devfleet watch --json | jq -c '.nodes[] | {node, health}'",
        ],
    )
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument(
        "--refresh",
        type=seconds_at_least(0.1, 3600),
        default=1.0,
        metavar="S",
        help="seconds between redraws, 0.1 to 3600 (default 1)",
    )
    p.set_defaults(handler=cmd_watch)


def table(nodes: list[NodeView], now: float | None = None) -> Any:
    """A rich table of nodes (every cell plain text: names and groups are data)."""
    from rich.table import Table
    from rich.text import Text

    from .render import age, cell, number

    now = time.time() if now is None else now
    t = Table(box=None, pad_edge=False)
    for col in ("NODE", "HEALTH", "SESSION", "CFG", "GROUPS", "CPU%", "MEM%", "DISK%", "HEARTBEAT"):
        t.add_column(col)
    for n in nodes:

        def metric(name: str, n: NodeView = n) -> str:
            # NodeView.metric: telemetry, else the heartbeat's figure (a Wactorz node's
            # cpu_pct, mem_used_mb... mapped to percent, see wactorz.metric).
            return number(n.metric(name))

        t.add_row(
            cell(n.name),
            Text(n.health, style=_HEALTH_STYLE.get(n.health, ""))
            + (Text(" name clash", style="red") if n.name_clash is not None else Text(""))
            # A Wactorz node a signing console could not verify (no fleet key).
            + (Text(" unverified", style="yellow") if n.verified is False else Text(""))
            # Why stale: a node whose broker node died sends no will (docs/scaling.md).
            + (Text(f" ({reason})") if (reason := n.stale_reason(now)) else Text("")),
            cell(n.session if n.session is not None else "-"),
            cell(n.config_version if n.config_version is not None else "-"),
            cell(",".join(n.groups) or "-"),
            metric("cpu"),
            metric("memory"),
            metric("disk"),
            age(n.heartbeat_at, now),
        )
    return t


def show_renderables(node: NodeView) -> list[Any]:
    """What ``devfleet show NODE`` prints: the node's row, then each description."""
    from rich.text import Text

    from ..output import dated, json_text

    out: list[Any] = [table([node])]
    for title, value in (
        ("meta", node.meta),
        ("state", node.state),
        ("cfg", node.cfg),
        ("desired", node.desired),
        ("heartbeat", node.heartbeat),
    ):
        if value:  # JSON with dates, as plain text: wire data is never markup
            out += [Text(f"\n{title}:"), Text(json_text(dated(value)))]
    return out


async def _settled(ctx: Context, fleet: Any) -> None:
    """Wait (up to one heartbeat interval, with a hint) for nodes known only from a
    retained ``online`` status; those still silent are shown stale. Then the same for
    the figures of live Wactorz nodes, which come only with their (unretained) heartbeat."""
    from ..wactorz_ops import await_heartbeats

    await fleet.confirm_liveness(on_wait=None if ctx.json else ctx.waiting_hint)

    def hint(names: list[str], seconds: float) -> None:
        print(
            f"devfleet: waiting up to {seconds:g} s for the figures of {', '.join(names[:5])}"
            " (a Wactorz node's heartbeat is not retained)",
            file=ctx.err,
            flush=True,
        )

    await await_heartbeats(fleet, on_wait=None if ctx.json else hint)


def _foreign_hint(ctx: Context, fleet: Any) -> None:
    names = sorted(fleet.model.foreign_names)
    if names:
        shown = ", ".join(repr(n) for n in names[:5])
        print(
            f"devfleet: ignored {fleet.model.foreign_total} message(s) under {len(names)} node name(s)"
            f" outside the grammar: {shown} (remove them with: devfleet purge NAME)",
            file=ctx.err,
        )


async def cmd_ls(ctx: Context) -> int:
    """List nodes."""
    async with ctx.fleet() as fleet:
        await _settled(ctx, fleet)
        nodes = fleet.nodes()
        if ctx.json:
            ctx.emit_json([n.summary(time.time()) for n in nodes])
        elif not nodes:
            print(f"no nodes on {ctx.broker}", file=ctx.out)
        else:
            ctx.console().print(table(nodes))
        _foreign_hint(ctx, fleet)
    return 0


async def cmd_show(ctx: Context) -> int:
    """Show one node."""
    async with ctx.fleet() as fleet:
        await _settled(ctx, fleet)
        node = fleet.node(ctx.args.node)
        if ctx.json:
            ctx.emit_json(node.to_dict())
            return 0
        con = ctx.console()
        for part in show_renderables(node):
            con.print(part)
    return 0


async def cmd_watch(ctx: Context) -> int:
    """A live table until interrupted (``--once``: one table)."""
    import asyncio  # here, not at import: `devfleet --help` stays fast

    async with ctx.fleet() as fleet:
        if ctx.args.once:
            await _settled(ctx, fleet)
            if ctx.json:
                ctx.emit_json([n.summary(time.time()) for n in fleet.nodes()])
            else:
                ctx.console().print(table(fleet.nodes()))
            return 0
        if ctx.json:
            return await _watch_json(ctx, fleet)
        from rich.live import Live

        print("live view; Ctrl-C to stop", file=ctx.err, flush=True)
        stream = fleet.events()
        with Live(table(fleet.nodes()), console=ctx.console(), auto_refresh=False) as live:
            try:
                while True:
                    deadline = time.monotonic() + ctx.args.refresh
                    while (left := deadline - time.monotonic()) > 0:
                        try:
                            await asyncio.wait_for(stream.__anext__(), left)
                        except TimeoutError:
                            break
                    live.update(table(fleet.nodes()), refresh=True)
            except (KeyboardInterrupt, asyncio.CancelledError):
                pass
            finally:
                await stream.aclose()
    return 0


async def _watch_json(ctx: Context, fleet: Any) -> int:
    """JSON Lines: a snapshot at once, then one per ``--refresh`` in which something changed."""
    import asyncio

    from ..output import json_line

    stream = fleet.events()
    try:
        changed = True
        while True:
            if changed:
                ctx.out.write(json_line({"ts": time.time(), "nodes": [n.summary() for n in fleet.nodes()]}))
                ctx.out.flush()
            changed = False
            deadline = time.monotonic() + ctx.args.refresh
            while (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(stream.__anext__(), left)
                    changed = True
                except TimeoutError:
                    break
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await stream.aclose()
    return 0
