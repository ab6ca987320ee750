"""``devfleet ls``, ``show NODE`` and ``watch``."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from ..model import NodeView
    from .context import Context

__all__ = ["register", "table"]

_HEALTH_STYLE = {"online": "green", "stale": "yellow", "offline": "dim", "lost": "red", "unknown": "dim"}


def register(sub: Any) -> None:
    """Add ``ls``, ``show`` and ``watch``."""
    p = sub.add_parser("ls", help="list the nodes of the fleet")
    p.set_defaults(handler=cmd_ls)
    p = sub.add_parser("show", help="everything known about one node")
    p.add_argument("node")
    p.set_defaults(handler=cmd_show)
    p = sub.add_parser("watch", help="a live table of the fleet with telemetry")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between redraws (default 1)")
    p.set_defaults(handler=cmd_watch)


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    return f"{max(0.0, now - ts):.0f}s"


def table(nodes: list[NodeView], now: float | None = None) -> Any:
    """A rich table of nodes."""
    from rich.table import Table

    now = time.time() if now is None else now
    t = Table(box=None, pad_edge=False)
    for col in ("NODE", "HEALTH", "SESSION", "CFG", "GROUPS", "CPU%", "MEM%", "DISK%", "HEARTBEAT"):
        t.add_column(col)
    for n in nodes:
        hb = n.heartbeat or {}

        def metric(name: str, hb: dict[str, Any] = hb, n: NodeView = n) -> str:
            sample = n.telemetry.get(name)
            value = sample.value if sample is not None else hb.get(name)
            return f"{value:.1f}" if isinstance(value, (int, float)) else "-"

        t.add_row(
            n.name,
            f"[{_HEALTH_STYLE.get(n.health, '')}]{n.health}[/]"
            + (" [red]name clash[/]" if n.name_clash is not None else "")
            # Why stale: a node whose broker node died sends no will (docs/scaling.md).
            + (f" ({reason})" if (reason := n.stale_reason(now)) else ""),
            str(n.session if n.session is not None else "-"),
            str(n.config_version if n.config_version is not None else "-"),
            ",".join(n.groups) or "-",
            metric("cpu"),
            metric("memory"),
            metric("disk"),
            _age(n.heartbeat_at, now),
        )
    return t


async def cmd_ls(ctx: Context) -> int:
    """List nodes."""
    async with ctx.fleet() as fleet:
        nodes = fleet.nodes()
        if ctx.json:
            ctx.emit_json([n.summary(time.time()) for n in nodes])
        else:
            ctx.console().print(table(nodes))
    return 0


async def cmd_show(ctx: Context) -> int:
    """Show one node."""
    async with ctx.fleet() as fleet:
        node = fleet.node(ctx.args.node)
        if ctx.json:
            ctx.emit_json(node.to_dict())
            return 0
        from rich.pretty import Pretty

        con = ctx.console()
        con.print(table([node]))
        for title, value in (
            ("meta", node.meta),
            ("state", node.state),
            ("cfg", node.cfg),
            ("desired", node.desired),
            ("heartbeat", node.heartbeat),
        ):
            if value:
                con.rule(title)
                con.print(Pretty(value))
    return 0


async def cmd_watch(ctx: Context) -> int:
    """A live table until interrupted (``--once``: one table)."""
    import asyncio  # here, not at import: `devfleet --help` stays fast

    async with ctx.fleet() as fleet:
        if ctx.args.once:
            if ctx.json:
                ctx.emit_json([n.summary(time.time()) for n in fleet.nodes()])
            else:
                ctx.console().print(table(fleet.nodes()))
            return 0
        from rich.live import Live

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
