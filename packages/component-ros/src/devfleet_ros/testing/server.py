"""A rosbridge v2 protocol server on ``websockets``: the robot side, in-process.

No ROS distribution installs here, so the bridge is tested against the wire
protocol of rosbridge_suite (``ROSBRIDGE_PROTOCOL.md``, v2.0), not against a
mock of roslibpy. The server plays both the rosbridge node and the ROS graph
behind it: in-process callers act as ROS publishers, subscribers and service
servers (:meth:`RosbridgeServer.publish`, :meth:`~RosbridgeServer.on_publish`,
:meth:`~RosbridgeServer.advertise_service`); websocket clients use the ops
``advertise``, ``unadvertise``, ``publish``, ``subscribe``, ``unsubscribe``,
``advertise_service``, ``unadvertise_service``, ``call_service``,
``service_response`` and ``set_level``, and receive ``status`` messages for
errors, as from rosbridge. ``/rosapi/topics``, ``/rosapi/topic_type`` and
``/rosapi/services`` answer as rosapi does.

As rosbridge does, a publish whose message does not fit a known type
(:mod:`devfleet_ros.msgtypes`) is refused with a ``status`` error and not
delivered, and a call to a service nobody offers gets a failed
``service_response`` whose values read ``Service /x does not exist``.

Per subscription, ``throttle_rate`` (ms between messages) and
``queue_length`` (messages buffered, the oldest dropped first) are honoured;
``fragment_size`` and ``compression`` are accepted and ignored (messages are
always sent whole, as JSON text).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..msgtypes import check_message, normalise_type

__all__ = ["RosbridgeServer", "ServiceHandler"]

log = logging.getLogger("devfleet.ros.testing")

ServiceHandler = Callable[[dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]
"""A ROS service server: request args in, response values out (raise to fail)."""

_DEFAULT_QUEUE = 100  # frames buffered per subscription with queue_length 0 (rosbridge: unbounded)


@dataclass(eq=False)
class _Subscription:
    """One client's subscription to one topic (rosbridge merges ids per topic)."""

    client: _Client
    topic: str
    ids: set[str | None]
    throttle_ms: int
    queue: deque[str]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        """Send queued frames in order, at most one per ``throttle_ms``."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                frame = self.queue.popleft()
                if not await self.client.send(frame):
                    return
                if self.throttle_ms > 0:
                    await asyncio.sleep(self.throttle_ms / 1000)


@dataclass(eq=False)
class _Client:
    """One websocket connection and what it subscribed, advertised and offers."""

    ws: ServerConnection
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    advertised: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)

    async def send(self, frame: str) -> bool:
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            return False
        return True


class RosbridgeServer:
    """A rosbridge v2 server bound to ``host:port`` (port 0: a free one).

    Use as ``async with RosbridgeServer() as srv:`` or with :meth:`start` and
    :meth:`stop`; it can be started again after a stop (the same port is
    reused), which is how tests take a robot's rosbridge away and back.

    Args:
        host: address to listen on (tests use loopback only).
        port: TCP port; 0 picks a free one at the first start.
        compression: ``"deflate"`` to accept a client's permessage-deflate offer
            (roslibpy offers it); ``None`` (default) refuses it, as rosbridge_server
            does unless configured to compress (its handler's ``use_compression``
            is off by default). Deflating a 1.2 MB camera frame costs ~30 ms in Python.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, compression: str | None = None) -> None:
        self.host = host
        self.port = port
        self.compression = compression
        self._server: Server | None = None
        self._clients: set[_Client] = set()
        self._topics: dict[str, str] = {}
        self._ros_subscribers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._ros_services: dict[str, tuple[str, ServiceHandler]] = {}
        self._client_services: dict[str, _Client] = {}
        self._pending: dict[str, asyncio.Future[tuple[bool, Any]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        """Websocket connections accepted since construction (reconnects included)."""

    # ---- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port`` of the running (or last) server."""
        return f"ws://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        """Websocket clients connected now."""
        return len(self._clients)

    async def start(self) -> None:
        """Listen; returns once connections are accepted. Idempotent while running."""
        if self._server is not None:
            return
        self._server = await serve(
            self._handle, self.host, self.port, max_size=None, compression=self.compression
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._install_rosapi()

    async def stop(self) -> None:
        """Close every client connection and stop listening. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        await server.wait_closed()
        for client in list(self._clients):
            self._drop_client(client)
        for task in list(self._tasks):
            task.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result((False, "rosbridge server stopped"))
        self._pending.clear()

    async def __aenter__(self) -> RosbridgeServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- the ROS side (in-process publishers, subscribers, services) --------------

    def advertise_topic(self, topic: str, type: str) -> None:
        """Declare a ROS publisher of ``type`` on ``topic`` (shown by rosapi)."""
        self._topics[topic] = normalise_type(type)

    def publish(self, topic: str, type: str, msg: dict[str, Any]) -> None:
        """Publish ``msg`` as a ROS node would: to every client subscribed to ``topic``.

        Raises:
            ContractError: ``msg`` does not fit ``type`` (a ROS publisher could not send it).
        """
        check_message(type, msg)
        self._topics.setdefault(topic, normalise_type(type))
        self._deliver(topic, msg)

    def on_publish(self, topic: str, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(msg)`` for every message a client publishes on ``topic``."""
        self._ros_subscribers.setdefault(topic, []).append(callback)

    def advertise_service(self, name: str, type: str, handler: ServiceHandler) -> None:
        """Offer a ROS service; ``handler(args)`` returns the response values.

        A handler that raises makes a failed ``service_response`` carrying the
        error text, as rosbridge reports a failed service call.
        """
        self._ros_services[name] = (type, handler)

    def topics(self) -> dict[str, str]:
        """Every topic known to the graph, with its type."""
        return dict(self._topics)

    def subscribers(self, topic: str) -> int:
        """How many websocket clients subscribe to ``topic`` now."""
        return sum(1 for c in self._clients if topic in c.subscriptions)

    def advertisers(self, topic: str) -> int:
        """How many websocket clients advertise ``topic`` now."""
        return sum(1 for c in self._clients if topic in c.advertised)

    async def call_service(self, name: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        """Call a service (a ROS client would): returns values; raises RuntimeError if it failed."""
        ok, values = await asyncio.wait_for(self._call(name, args or {}), timeout)
        if not ok:
            raise RuntimeError(str(values))
        return values

    # ---- connection handling ---------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients.add(client)
        self.connections += 1
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    await self._status(client, "error", "binary frames (CBOR/BSON) are not supported")
                    continue
                await self._on_frame(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self._drop_client(client)

    def _drop_client(self, client: _Client) -> None:
        self._clients.discard(client)
        for sub in client.subscriptions.values():
            if sub.task is not None:
                sub.task.cancel()
        client.subscriptions.clear()
        for name in client.services:
            if self._client_services.get(name) is client:
                del self._client_services[name]
        client.services.clear()

    async def _on_frame(self, client: _Client, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            await self._status(client, "error", f"invalid JSON: {exc}")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            await self._status(client, "error", "a message must be a JSON object with an 'op'")
            return
        handler = self._OPS.get(msg["op"])
        if handler is None:
            await self._status(client, "error", f"Unknown operation: {msg['op']}", msg.get("id"))
            return
        try:
            await handler(self, client, msg)
        except (KeyError, TypeError, ValueError) as exc:
            await self._status(client, "error", f"{msg['op']}: malformed message ({exc!r})", msg.get("id"))

    async def _status(self, client: _Client, level: str, text: str, msg_id: Any = None) -> None:
        frame: dict[str, Any] = {"op": "status", "level": level, "msg": text}
        if msg_id is not None:
            frame["id"] = msg_id
        log.debug("status to client: %s", text)
        await client.send(json.dumps(frame))

    # ---- ops ------------------------------------------------------------------------

    async def _op_advertise(self, client: _Client, msg: dict[str, Any]) -> None:
        topic, type_ = _text(msg, "topic"), normalise_type(_text(msg, "type"))
        known = self._topics.get(topic)
        if known is not None and known != type_:
            text = f"Tried to register topic {topic} with type {type_} but it is already established with type {known}"
            await self._status(client, "error", text, msg.get("id"))
            return
        self._topics[topic] = type_
        client.advertised.add(topic)

    async def _op_unadvertise(self, client: _Client, msg: dict[str, Any]) -> None:
        client.advertised.discard(_text(msg, "topic"))

    async def _op_publish(self, client: _Client, msg: dict[str, Any]) -> None:
        topic, body = _text(msg, "topic"), msg.get("msg", {})
        type_ = self._topics.get(topic)
        try:
            check_message(type_ or "unknown", body)
        except Exception as exc:
            await self._status(client, "error", f"publish to {topic}: {exc}", msg.get("id"))
            return
        for callback in list(self._ros_subscribers.get(topic, ())):
            try:
                callback(body)
            except Exception:
                log.exception("ROS subscriber of %s raised", topic)
        self._deliver(topic, body)

    async def _op_subscribe(self, client: _Client, msg: dict[str, Any]) -> None:
        topic = _text(msg, "topic")
        if msg.get("type"):
            self._topics.setdefault(topic, normalise_type(_text(msg, "type")))
        throttle = int(msg.get("throttle_rate", 0) or 0)
        queue_length = int(msg.get("queue_length", 0) or 0)
        sub = client.subscriptions.get(topic)
        if sub is None:
            sub = _Subscription(client, topic, set(), throttle, deque(maxlen=queue_length or _DEFAULT_QUEUE))
            sub.task = asyncio.create_task(sub.pump())
            client.subscriptions[topic] = sub
        else:  # rosbridge: the smallest throttle and the largest queue of all ids win
            sub.throttle_ms = min(sub.throttle_ms, throttle)
            if queue_length > (sub.queue.maxlen or 0):
                sub.queue = deque(sub.queue, maxlen=queue_length)
        sub.ids.add(msg.get("id"))

    async def _op_unsubscribe(self, client: _Client, msg: dict[str, Any]) -> None:
        topic = _text(msg, "topic")
        sub = client.subscriptions.get(topic)
        if sub is None:
            return
        if "id" in msg:
            sub.ids.discard(msg["id"])
        else:
            sub.ids.clear()
        if not sub.ids:
            del client.subscriptions[topic]
            if sub.task is not None:
                sub.task.cancel()

    async def _op_advertise_service(self, client: _Client, msg: dict[str, Any]) -> None:
        name = _text(msg, "service")
        self._client_services[name] = client
        client.services.add(name)

    async def _op_unadvertise_service(self, client: _Client, msg: dict[str, Any]) -> None:
        name = _text(msg, "service")
        if self._client_services.get(name) is client:
            del self._client_services[name]
        client.services.discard(name)

    async def _op_call_service(self, client: _Client, msg: dict[str, Any]) -> None:
        name, args = _text(msg, "service"), msg.get("args") or {}
        if isinstance(args, list):  # rosbridge accepts positional args; we know no field order
            args = {}
        msg_id = msg.get("id")

        async def answer() -> None:
            ok, values = await self._call(name, args)
            frame: dict[str, Any] = {
                "op": "service_response",
                "service": name,
                "values": values,
                "result": ok,
            }
            if msg_id is not None:
                frame["id"] = msg_id
            await client.send(json.dumps(frame))

        # Answer concurrently, as rosbridge does: a slow service must not block the connection.
        task = asyncio.create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _op_service_response(self, client: _Client, msg: dict[str, Any]) -> None:
        fut = self._pending.pop(str(msg.get("id")), None)
        if fut is not None and not fut.done():
            fut.set_result((msg.get("result", True) is not False, msg.get("values", {})))

    async def _op_set_level(self, client: _Client, msg: dict[str, Any]) -> None:
        return None  # status level: every status is sent anyway

    _OPS: dict[str, Callable[[RosbridgeServer, _Client, dict[str, Any]], Awaitable[None]]] = {
        "advertise": _op_advertise,
        "unadvertise": _op_unadvertise,
        "publish": _op_publish,
        "subscribe": _op_subscribe,
        "unsubscribe": _op_unsubscribe,
        "advertise_service": _op_advertise_service,
        "unadvertise_service": _op_unadvertise_service,
        "call_service": _op_call_service,
        "service_response": _op_service_response,
        "set_level": _op_set_level,
    }

    # ---- delivery and services ---------------------------------------------------------

    def _deliver(self, topic: str, msg: dict[str, Any]) -> None:
        frame: str | None = None
        for client in self._clients:
            sub = client.subscriptions.get(topic)
            if sub is None:
                continue
            if frame is None:
                frame = json.dumps({"op": "publish", "topic": topic, "msg": msg})
            sub.queue.append(frame)  # a full deque drops its oldest frame
            sub.wake.set()

    async def _call(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        provider = self._client_services.get(name)
        if provider is not None:
            call_id = f"srv:{next(self._ids)}"
            fut: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
            self._pending[call_id] = fut
            frame = {"op": "call_service", "id": call_id, "service": name, "args": args}
            if not await provider.send(json.dumps(frame)):
                self._pending.pop(call_id, None)
                return False, f"Service {name} provider disconnected"
            try:
                return await fut
            finally:
                self._pending.pop(call_id, None)
        entry = self._ros_services.get(name)
        if entry is None:
            return False, f"Service {name} does not exist"
        try:
            values = entry[1](args)
            if inspect.isawaitable(values):
                values = await values
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, values

    def _install_rosapi(self) -> None:
        self._ros_services.setdefault(
            "/rosapi/topics",
            ("rosapi/Topics", lambda _: {"topics": list(self._topics), "types": list(self._topics.values())}),
        )
        self._ros_services.setdefault(
            "/rosapi/topic_type",
            ("rosapi/TopicType", lambda args: {"type": self._topics.get(str(args.get("topic", "")), "")}),
        )
        self._ros_services.setdefault(
            "/rosapi/services",
            (
                "rosapi/Services",
                lambda _: {"services": sorted({*self._ros_services, *self._client_services})},
            ),
        )


def _text(msg: dict[str, Any], key: str) -> str:
    value = msg[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value
