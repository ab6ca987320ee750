"""The web server: one page, one Server-Sent Events stream, a command endpoint, CSV.

Starlette routes served by uvicorn on the caller's event loop (an agent's, or
``devfleet viz``'s). Why these: of the stacks measured here, starlette + uvicorn
imports fastest and smallest (82 ms / 29 MiB, aiohttp.web 146 ms / 36 MiB), and
the page only needs server → browser pushes plus a few POSTs, which SSE gives
without a websocket library; the browser's ``EventSource`` reconnects by itself.

Access (see :class:`Access`): commands need the token when one is set; without a
token they are allowed only on a loopback bind (then the Host must be a loopback
name, against DNS rebinding). Every POST must be ``application/json`` from the
page's own origin, so another site cannot post a command through the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from devfleet_base import contract
from devfleet_base.errors import ContractError, DevfleetError

from .hub import FleetHub

__all__ = ["Access", "VizServer", "is_loopback"]

log = logging.getLogger("devfleet.viz")

MAX_BODY = 64 * 1024
"""The largest command request accepted, in bytes."""

KEEPALIVE = 15.0
"""Seconds between SSE comments on an idle stream (proxies drop silent connections)."""

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` (an address or ``localhost``) is reachable from this host only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """Who may send commands.

    Args:
        bind: the address the server listens on.
        token: the shared secret for commands ('' for none).
    """

    bind: str
    token: str = ""

    @property
    def readonly(self) -> bool:
        """No commands at all: a non-loopback bind without a token."""
        return not self.token and not is_loopback(self.bind)

    def refusal(self, headers: Any, port: int) -> str:
        """Why a command request must be refused ('' when it may go through)."""
        if self.readonly:
            return "read-only: this view listens beyond loopback without a token"
        if self.token:
            given = str(headers.get("authorization", "")).removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "a valid token is needed to send commands"
        else:
            host = str(headers.get("host", ""))
            if host not in {f"{name}:{port}" for name in _LOOPBACK_NAMES}:
                return f"unexpected Host {host[:80]!r} for a loopback view"
        if not str(headers.get("content-type", "")).startswith("application/json"):
            return "commands must be sent as application/json"
        origin = headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != headers.get("host"):
            return "commands are accepted from the view's own page only"
        return ""


class VizServer:
    """The view's HTTP server over a :class:`FleetHub`.

    Args:
        hub: the (started) hub.
        bind: listen address (default loopback).
        port: TCP port (0: any free one; :attr:`port` tells which after start).
        token: the shared secret for commands ('' for none).
    """

    def __init__(self, hub: FleetHub, *, bind: str = "127.0.0.1", port: int = 8766, token: str = "") -> None:
        self.hub = hub
        self.bind = bind
        self.port = port
        self.access = Access(bind, token)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The page's address (with the token, for the operator to open)."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        if host in ("0.0.0.0", "[::]"):  # noqa: S104 - a wildcard bind is reached through loopback here
            host = "127.0.0.1"
        suffix = f"?token={self.access.token}" if self.access.token else ""
        return f"http://{host}:{self.port}/{suffix}"

    async def start(self) -> None:
        """Listen; returns once the socket is bound.

        Raises:
            OSError: the address is taken or cannot be bound.
        """
        import uvicorn  # here: a component's web stack loads when it starts, not at import

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the host process owns its signals
                yield

        config = uvicorn.Config(
            self.app(),
            host=self.bind,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="devfleet-viz-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
                raise OSError(f"cannot listen on {self.bind}:{self.port}")
            await asyncio.sleep(0.01)
        sock = self._server.servers[0].sockets[0]
        self.port = int(sock.getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end the streams."""
        for page in list(self.hub.pages):
            self.hub._end(page)
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5.0)
            self._task = None

    # ---- the application ---------------------------------------------------------------

    def app(self) -> Any:
        """The starlette application."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/", self._index),
                Route("/static/{name}", self._static),
                Route("/api/stream", self._stream),
                Route("/api/info", self._info),
                Route("/api/command", self._command, methods=["POST"]),
                Route("/api/nodes/{node}/telemetry.csv", self._csv),
            ]
        )

    async def _index(self, request: Any) -> Any:
        return _file_response("index.html")

    async def _static(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        name = request.path_params["name"]
        if name not in _STATIC or name == "index.html":
            return PlainTextResponse("not found", status_code=404)
        return _file_response(name)

    async def _info(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"readonly": self.access.readonly, "token_required": bool(self.access.token)})

    async def _stream(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse, StreamingResponse

        focus = request.query_params.get("node") or None
        if focus is not None:
            try:
                contract.check_name(focus, "node")
            except ContractError as exc:
                return PlainTextResponse(exc.message, status_code=400)
        page, snapshot = self.hub.attach(focus)
        info = {"readonly": self.access.readonly, "token_required": bool(self.access.token)}
        snap = snapshot[:-1] + ',"access":' + json.dumps(info) + "}"
        return StreamingResponse(
            _events(self.hub, page, snap),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **_security_headers()},
        )

    async def _command(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        refusal = self.access.refusal(request.headers, self.port)
        if refusal:
            return JSONResponse({"error": "forbidden", "message": refusal}, status_code=403)
        try:
            raw = await _read_capped(request, MAX_BODY)
            if raw is None:
                return JSONResponse(
                    {"error": "invalid", "message": f"a command is at most {MAX_BODY} bytes"}, status_code=413
                )
            body = json.loads(raw)
            node, verb, args = _command_of(body)
            cmd_id = await self.hub.command(node, verb, args)
        except RecursionError:
            return JSONResponse({"error": "invalid", "message": "JSON nested too deeply"}, status_code=400)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": "invalid", "message": str(exc)[:300]}, status_code=400)
        except DevfleetError as exc:
            return JSONResponse({"error": "failed", "message": exc.message[:300]}, status_code=502)
        return JSONResponse({"id": cmd_id}, status_code=202)

    async def _csv(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse, Response

        node = request.path_params["node"]
        try:
            contract.check_name(node, "node")
            text = self.hub.telemetry_csv(node)
        except DevfleetError as exc:
            return PlainTextResponse(exc.message, status_code=404)
        return Response(
            text,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{node}-telemetry.csv"'},
        )


async def _read_capped(request: Any, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _command_of(body: Any) -> tuple[str, str, dict[str, Any]]:
    """``(node, verb, args)`` from a page's request: ``{node, verb, args}`` or, for a
    component's command, ``{node, component, command, args}``.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(body, dict) or not isinstance(body.get("node"), str):
        raise ValueError("expected {node, verb, args} or {node, component, command, args}")
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise ValueError("args must be an object")
    try:
        node = contract.check_name(body["node"], "node")
        if "component" in body:
            component = contract.check_name(body.get("component"), "component")
            command = contract.check_name(body.get("command"), "command")
            return node, "component", {"component": component, "command": command, "args": args}
        return node, contract.check_name(body.get("verb"), "command"), args
    except ContractError as exc:
        raise ValueError(exc.message) from None


async def _events(hub: FleetHub, page: Any, snapshot: str) -> AsyncIterator[str]:
    try:
        yield f"retry: 1000\nevent: snapshot\ndata: {snapshot}\n\n"
        while not page.dropped:
            try:
                item = await asyncio.wait_for(page.queue.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if item is None:
                return
            yield f"event: delta\ndata: {item}\n\n"
    finally:
        hub.detach(page)


def _security_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


_FILES: dict[str, bytes] = {}


def _file_response(name: str) -> Any:
    from starlette.responses import Response

    body = _FILES.get(name)
    if body is None:
        body = _FILES[name] = resources.files("devfleet_viz").joinpath("static", name).read_bytes()
    return Response(
        body, media_type=_STATIC[name], headers={"Cache-Control": "no-cache", **_security_headers()}
    )
