"""``devfleet ping``, ``restart``, ``cmd`` and ``purge``."""

from __future__ import annotations

from . import parse_assignments

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    from ..aio import AsyncFleet, Broadcast
    from .context import Context

__all__ = ["broadcast_with_progress", "register", "run_targeted", "summarize_broadcast"]


def _targets(p: Any) -> None:
    p.add_argument("node", nargs="?", help="one node (or give --all or --group)")
    p.add_argument("--all", action="store_true", help="every node of the fleet")
    p.add_argument("--group", metavar="G", help="every node of group G")


def register(sub: Any) -> None:
    """Add ``ping``, ``restart``, ``cmd`` and ``purge``."""
    p = sub.add_parser(
        "ping",
        description="Send ping to one node (prints its round-trip time and answer), a group or"
        " the fleet (progress on stderr, then one line per node and a summary; Ctrl-C prints"
        " the summary so far).",
        examples=[
            "devfleet ping rpi-livingroom",
            "devfleet ping --all",
            "devfleet ping --group lobby --json",
        ],
    )
    _targets(p)
    p.set_defaults(handler=cmd_ping)
    p = sub.add_parser(
        "restart",
        description="Restart the agent process of one node, a group or the fleet (the node says"
        " offline, then is born again with a new session).",
        examples=["devfleet restart rpi-livingroom", "devfleet restart --group lobby"],
    )
    _targets(p)
    p.set_defaults(handler=cmd_restart)
    p = sub.add_parser(
        "cmd",
        description="Send any command verb with key=value arguments and print the node's answer as"
        " JSON. A value is JSON when it parses (5, true, [1]), a bare word is a string, and text"
        ' that starts like JSON ({ [ ") must be valid JSON.',
        examples=["devfleet cmd rpi-livingroom rebirth", "devfleet cmd rpi-livingroom config_get --json"],
    )
    p.add_argument("node", help="the node's name")
    p.add_argument("verb", help="the command (the node's meta lists the verbs it knows)")
    p.add_argument("assignments", nargs="*", metavar="key=value", help="the command's arguments")
    p.set_defaults(handler=cmd_cmd)
    p = sub.add_parser(
        "purge",
        description="Clear every retained topic of a node that is gone for good, then verify none"
        " remains (no ghost in listings). Refused while the node says it is online unless --force.",
        examples=["devfleet purge old-node", "devfleet purge old-node --force   # even if it says online"],
    )
    p.add_argument("node", help="the node's name")
    p.add_argument("--force", action="store_true", help="purge even if the node says it is online")
    p.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="stay S seconds and clear the will of a connection the broker still holds"
        " (a frozen node's: it fires up to 1.5 keepalives later, 45 s by default)",
    )
    p.set_defaults(handler=cmd_purge)


async def broadcast_with_progress(
    ctx: Context, fleet: AsyncFleet, verb: str, args: dict[str, Any], *, timeout: float | None = None
) -> Broadcast:
    """Broadcast to ``--group`` or the fleet with a progress bar on stderr; wait for it."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    group = ctx.args.group
    if group is not None and not fleet.model.in_group(group):
        await _group_known(ctx, fleet, group)
    bc: Broadcast | None = None
    try:
        with Progress(
            TextColumn(f"{verb} {'group ' + group if group else 'fleet'}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=ctx.console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task(verb, total=None, detail="")

            def on_progress(bc: Broadcast) -> None:
                t = bc.tally  # O(1) per receipt: no lists sorted for a progress bar
                total = len(bc.outcomes)
                failed = t.get("error", 0) + t.get("expired", 0)
                progress.update(
                    task,
                    total=total,
                    completed=total - t.get("pending", 0) - t.get("accepted", 0),
                    detail=f"ok {t.get('ok', 0)} failed {failed} offline {len(bc.offline)}",
                )

            bc = await fleet.broadcast(
                verb, args, group=group, timeout=timeout or ctx.timeout, on_progress=on_progress
            )
            await bc.wait()
    except (KeyboardInterrupt, asyncio.CancelledError):
        if bc is not None:  # Ctrl-C: what came back so far is still worth seeing
            summarize_broadcast(ctx, bc, interrupted=True)
        raise
    return bc


async def _group_known(ctx: Context, fleet: AsyncFleet, group: str) -> None:
    """A group no known node is in is a typo: exit 3 at once (or after --wait-for-node)."""
    from ..errors import ConsoleTimeout, NodeNotFound

    if ctx.wait_for_node > 0:
        try:
            await fleet.wait_for(lambda m: bool(m.in_group(group)), ctx.wait_for_node)
            return
        except ConsoleTimeout:
            pass
    raise NodeNotFound(f"no node of group {group!r} is known to the broker at {ctx.broker} (nothing sent)")


def summarize_broadcast(ctx: Context, bc: Broadcast, *, interrupted: bool = False) -> None:
    """Print each node's outcome and a one-line summary (or the JSON); ``interrupted``:
    the summary so far, with the nodes still pending."""
    if ctx.json:
        ctx.emit_json({**bc.to_dict(), **({"interrupted": True} if interrupted else {})})
        return
    for name, outcome in sorted(bc.outcomes.items()):
        receipt = outcome.receipt or {}
        detail = receipt.get("message") or receipt.get("code") or "" if outcome.state != "ok" else ""
        if outcome.state == "ok" and outcome.finished_at is not None:
            detail = f"in {_ms(outcome.finished_at - bc.sent_at)}"
        elif receipt.get("code") == "bad_signature":
            detail += " (give the fleet's key with --signing-key-file)"
        print(f"{name}: {outcome.state}{' ' + detail if detail else ''}", file=ctx.out)
    for name in bc.offline:
        print(f"{name}: offline (not waited on)", file=ctx.out)
    pending = f", {len(bc.pending)} still pending (interrupted)" if interrupted else ""
    print(
        f"{len(bc.succeeded)} ok, {len(bc.failed)} failed, {len(bc.timed_out)} timed out,"
        f" {len(bc.offline)} offline{pending}",
        file=ctx.out,
        flush=True,
    )


def _ms(seconds: float) -> str:
    return f"{max(seconds, 0.0) * 1000:.1f} ms"


async def run_targeted(
    ctx: Context, verb: str, args: dict[str, Any], *, wactorz: Callable[..., Awaitable[Any]] | None = None
) -> int:
    """Send ``verb`` to one node, a group or the fleet, print the outcome, return the
    exit code. ``wactorz(node, timeout=)``: what one Wactorz node (no command topics)
    gets instead."""
    a = ctx.args
    chosen = sum(bool(x) for x in (a.node, a.all, a.group))
    if chosen != 1:
        from ..errors import UsageError

        raise UsageError(f"{verb}: name one NODE, or --all, or --group G")
    async with ctx.fleet() as fleet:
        if a.node:
            from ..output import json_text
            from ..wactorz import is_wactorz

            if wactorz is not None and (view := fleet.model.get(a.node)) and is_wactorz(view):
                result = await wactorz(fleet, a.node, timeout=ctx.timeout)
                if ctx.json:
                    ctx.emit_json({"node": a.node, "verb": verb, "result": result})
                else:
                    print(f"{a.node}: {verb} ok {json_text(result, indent=None)}", file=ctx.out)
                return 0
            handle = await fleet.send(a.node, verb, args, timeout=ctx.timeout)
            result = await handle.result()
            rtt = (handle.finished_at or handle.sent_at) - handle.sent_at
            if ctx.json:
                ctx.emit_json({**handle.to_dict(), "rtt_ms": round(rtt * 1000, 3)})
            else:
                answer = "" if result is None else " " + json_text(result, indent=None)
                print(f"{a.node}: ok in {_ms(rtt)}{answer}", file=ctx.out)
            return 0
        bc = await broadcast_with_progress(ctx, fleet, verb, args)
    summarize_broadcast(ctx, bc)
    return ctx.broadcast_exit(bc)


async def cmd_ping(ctx: Context) -> int:
    """Ping."""
    return await run_targeted(ctx, "ping", {})


async def cmd_restart(ctx: Context) -> int:
    """Restart agents."""
    from ..wactorz_ops import restart

    return await run_targeted(ctx, "restart", {}, wactorz=restart)


async def cmd_cmd(ctx: Context) -> int:
    """Any verb with key=value arguments."""
    args = parse_assignments(ctx.args.assignments)
    async with ctx.fleet() as fleet:
        handle = await fleet.send(ctx.args.node, ctx.args.verb, args, timeout=ctx.timeout)
        result = await handle.result()
    if ctx.json:
        ctx.emit_json(handle.to_dict())
    else:
        ctx.emit_result(result)
    return 0


async def cmd_purge(ctx: Context) -> int:
    """Purge a node's retained topics."""
    from ..errors import PurgeError

    a = ctx.args
    async with ctx.fleet() as fleet:
        view = fleet.model.get(a.node)
        # Its last word was "online": no will fired yet, so the broker may still hold one.
        will_pending = view is not None and view.status == "online"
        if will_pending and a.linger > 0 and not ctx.json:
            print(
                f"devfleet: staying {a.linger:g} s to clear {a.node}'s will if the broker fires it",
                file=ctx.err,
            )
        try:
            cleared = await fleet.purge(a.node, force=a.force, timeout=ctx.timeout, linger=a.linger)
        except PurgeError as exc:
            if a.force or view is None or not view.online:
                raise
            raise PurgeError(f"{exc.message}; to purge it anyway: devfleet purge {a.node} --force") from None
    if ctx.json:
        ctx.emit_json({"node": a.node, "cleared": cleared, "will_may_follow": will_pending and a.linger <= 0})
    else:
        print(f"{a.node}: purged {len(cleared)} retained topic(s)", file=ctx.out)
    if will_pending and a.linger <= 0:
        print(
            f"devfleet: warning: {a.node} was last seen online; if the broker still holds its connection"
            " (a frozen node) it publishes the will up to 1.5 keepalives later and the node reappears as"
            " lost: purge again then, or use --linger 50",
            file=ctx.err,
        )
    return 0
