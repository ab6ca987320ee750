"""``devfleet viz``: serve the live fleet web view (needs devfleet-component-viz)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep typing off the --help path
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

__all__ = ["register"]

MISSING = "devfleet viz needs the devfleet-component-viz package (pip install devfleet-component-viz)"


def register(sub: Any) -> None:
    """Add ``viz``."""
    p = sub.add_parser(
        "viz",
        description="Serve the live fleet web view (needs the devfleet-component-viz package) and print"
        " its address; runs until Ctrl-C or SIGTERM. It listens on 127.0.0.1 unless --bind says"
        " otherwise; any other address needs --token, or the page is read-only and commands are"
        " refused.",
        examples=[
            "devfleet viz",
            "devfleet viz --broker mqtt://broker.lan:1883 --port 9000",
            "DEVFLEET_VIZ_TOKEN=$(cat ~/.viz-token) devfleet viz --bind 0.0.0.0",
        ],
    )
    p.add_argument(
        "--bind", default="127.0.0.1", help="listen address (default 127.0.0.1; others need --token)"
    )
    p.add_argument("--port", type=int, default=8766, help="TCP port (default 8766; 0 picks a free one)")
    p.add_argument(
        "--token",
        default=os.environ.get("DEVFLEET_VIZ_TOKEN", ""),
        help="secret the page needs to send commands (env DEVFLEET_VIZ_TOKEN); "
        "without it a non-loopback view is read-only",
    )
    p.set_defaults(handler=cmd_viz)


async def cmd_viz(ctx: Context) -> int:
    """Serve until interrupted."""
    import asyncio
    import contextlib
    import signal

    from ..errors import UsageError

    try:
        from devfleet_viz.view import FleetView
    except ImportError:
        raise UsageError(MISSING) from None
    if not 0 <= ctx.args.port <= 65535:
        raise UsageError(f"--port {ctx.args.port} is not a TCP port")
    # The view keeps its own downsampled series: the model needs only the newest samples.
    view = FleetView(ctx.fleet(history=10), bind=ctx.args.bind, port=ctx.args.port, token=ctx.args.token)
    try:
        await view.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {ctx.args.bind}:{ctx.args.port}: {exc.strerror or exc}") from None
    try:
        ctx.out.write(f"devfleet viz: serving the fleet at {view.url}\n")
        if view.readonly:
            ctx.out.write("devfleet viz: read-only (not loopback and no --token): commands are refused\n")
        ctx.out.flush()
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # SIGTERM (systemd): a clean stop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()  # until SIGTERM or Ctrl-C
    except asyncio.CancelledError:
        pass
    finally:
        await view.close()
    return 0
