"""``devfleet logs [-f] [NODE]``."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context


__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``logs``."""
    p = sub.add_parser(
        "logs",
        description="Print the log records nodes ship as they arrive: for --timeout seconds, or"
        " until Ctrl-C with -f. With --json: JSON Lines (https://jsonlines.org), one object per"
        " record with node, seq, ts (Unix seconds), level, logger and msg.",
        examples=[
            "devfleet logs -f rpi-livingroom",
            "devfleet logs --json --timeout 60 | jq -r 'select(.level==\"ERROR\") | .msg'",
        ],
    )
    p.add_argument("node", nargs="?", help="one node (default: every node)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until interrupted")
    p.set_defaults(handler=cmd_logs)


async def cmd_logs(ctx: Context) -> int:
    """Print log records as they arrive."""
    import asyncio  # here, not at import: `devfleet --help` stays fast

    from ..output import json_line, shown_url

    deadline = None if ctx.args.follow else time.monotonic() + ctx.timeout
    async with ctx.fleet() as fleet:
        if ctx.args.node is not None and ctx.args.node not in fleet.model:
            # A typo would print nothing for --timeout seconds and exit 0.
            await fleet.wait_for_known(ctx.args.node)
        stream = fleet.logs(ctx.args.node)
        whose = ctx.args.node or "every node"
        until = "Ctrl-C to stop" if deadline is None else f"for {ctx.timeout:g} s (-f: until Ctrl-C)"
        print(f"logs of {whose} on {shown_url(ctx.broker)}, {until}", file=ctx.err, flush=True)
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    rec = await asyncio.wait_for(stream.__anext__(), left)
                except TimeoutError:
                    break
                if ctx.json:
                    ctx.out.write(json_line(_rec(rec)))
                else:
                    stamp = time.strftime("%H:%M:%S", time.localtime(rec.ts)) if rec.ts else "--:--:--"
                    ctx.out.write(f"{stamp} {rec.node} {rec.level:<7} {rec.logger}: {rec.msg}\n")
                ctx.out.flush()
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    return 0


def _rec(rec: Any) -> dict[str, Any]:
    return {k: getattr(rec, k) for k in ("node", "seq", "ts", "level", "logger", "msg")}
