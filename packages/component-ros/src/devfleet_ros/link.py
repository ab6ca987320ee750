"""The rosbridge connection: roslibpy's asyncio transport, driven from the agent's loop.

roslibpy (2.1+) runs its asyncio transport on one background thread of its
own, shared by every ``Ros`` in the process; its callbacks arrive there. This
module hops every callback onto the agent's event loop
(``call_soon_threadsafe``), so the component and its neighbours never see
another thread. The twisted transport is never used: its reactor cannot be
restarted (roslibpy issues #56, #94).

What roslibpy leaves to us, and this module adds:

- **Restoration on reconnect.** Every advertise and subscription is re-sent
  from the ``ready`` event of each new connection, at once (roslibpy's own
  ``Topic`` waits a fixed second after the close, then queues).
- **Capped, jittered back-off.** roslibpy's reconnect grows its delay up to
  an hour; the factory instance is given a cap (``reconnect_max_s``, 1 s by
  default) and a jitter of ±25 %, so a returning server is back within the cap.
- **Nothing queued while disconnected.** roslibpy queues sends on a
  disconnected ``Ros`` (one listener per message, unbounded); here a publish
  or call while disconnected fails at once (``ComponentError`` /
  ``CommandError(unavailable)``), and pending service calls fail on close.
- **A second connection for bulk topics.** One websocket is one ordered byte
  stream: a 10 Hz Twist behind a queue of 1.2 MB camera frames waits for all
  of them (head-of-line blocking), however the frames are scheduled after
  they arrive. Subscriptions made with ``bulk=True`` (the component makes
  images, point clouds and scans bulk) get a connection of their own, so
  control topics never queue behind them.
- **Service errors with codes** (``not_found``, ``failed``, ``timeout``) and
  ``status`` messages logged (roslibpy 2.1 has no handler for them).

roslibpy is imported in :meth:`RosbridgeLink.start`, never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from devfleet_base.errors import Code, CommandError, ComponentError

from .api import MessageCallback
from .msgtypes import check_message

__all__ = ["RosbridgeLink"]

_JITTER = 0.25
_FIRST_DELAY = 0.1


class _LinkSubscription:
    """One local subscriber; several may share a topic (one rosbridge id each)."""

    def __init__(
        self,
        channel: _Channel,
        topic: str,
        type_: str,
        callback: MessageCallback,
        throttle_ms: int,
        queue: int,
    ) -> None:
        self.channel = channel
        self.topic = topic
        self.type = type_
        self.callback = callback
        self.throttle_s = throttle_ms / 1000
        self.throttle_ms = throttle_ms
        self.queue_length = queue
        self.id = f"subscribe:{topic}:{next(channel.link._ids)}"
        self.closed = False
        self._last = 0.0

    def deliver(self, msg: Any) -> None:
        if self.closed:
            return
        if self.throttle_s:  # rosbridge throttles per topic with the smallest rate of all ids
            now = time.monotonic()
            if now - self._last < self.throttle_s:
                return
            self._last = now
        self.callback(msg)

    def wire(self) -> dict[str, Any]:
        return {
            "op": "subscribe",
            "id": self.id,
            "topic": self.topic,
            "type": self.type,
            "throttle_rate": self.throttle_ms,
            "queue_length": self.queue_length,
        }

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.channel.unsubscribe(self)


class _Channel:
    """One roslibpy connection, its subscriptions, and its restoration on every connect."""

    def __init__(self, link: RosbridgeLink, name: str, roslibpy: Any) -> None:
        self.link = link
        self.name = name
        self.connected = False
        self.connects = 0
        self.subs: dict[str, list[_LinkSubscription]] = {}
        self._dispatchers: dict[str, Callable[[Any], None]] = {}
        self._message = roslibpy.Message
        # port=None: roslibpy takes the host argument as the whole URL.
        ros = roslibpy.Ros(link.url, None, transport="asyncio")
        factory = ros.factory
        factory.initialDelay = _FIRST_DELAY  # instance attributes: other Ros objects keep theirs
        factory.maxDelay = link.reconnect_max_s
        factory.factor = 2.0
        factory.jitter = _JITTER
        self._ready_lock = threading.Lock()
        self._ready_proto: Any = None  # the connection last reported ready (one report each)
        self.ros: Any = ros
        ros.on("ready", self._ready_thread)
        ros.on("close", self._close_thread)
        # roslibpy's Ros() starts connecting at once, on its own thread: a connection that was
        # ready before the listener above existed would never be reported, and the link would
        # say "connecting" forever (seen: 1 robot in ~40 foraging starts). on_ready fires now
        # when it is up, else once at the next ready; _ready_thread reports each connection once.
        # (A callable of its own: roslibpy keys listeners by function, so passing
        # _ready_thread again would replace the lasting listener with a one-shot.)
        self._catch_up = lambda proto: self._ready_thread(proto)
        ros.factory.on_ready(self._catch_up)

    def send(self, message: dict[str, Any]) -> None:
        if self.ros is not None:
            self.ros.send_on_ready(self._message(message))

    def subscribe(self, sub: _LinkSubscription) -> None:
        subs = self.subs.setdefault(sub.topic, [])
        if not subs:
            dispatcher = self._dispatchers[sub.topic] = self._dispatcher_for(sub.topic)
            self.ros.on(sub.topic, dispatcher)
        subs.append(sub)
        if self.connected:
            self.send(sub.wire())

    def unsubscribe(self, sub: _LinkSubscription) -> None:
        subs = self.subs.get(sub.topic)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if self.connected:
            self.send({"op": "unsubscribe", "id": sub.id, "topic": sub.topic})
        if not subs:
            del self.subs[sub.topic]
            dispatcher = self._dispatchers.pop(sub.topic, None)
            if self.ros is not None and dispatcher is not None:
                self.ros.off(sub.topic, dispatcher)

    def close(self) -> None:
        """Close and stop reconnecting (a retry already in flight closes at once)."""
        ros, self.ros = self.ros, None
        if ros is None:
            return
        factory = ros.factory
        factory.maxRetries = 0  # a scheduled retry gives up instead of reconnecting
        ros.off("ready", self._ready_thread)
        ros.off("close", self._close_thread)
        with contextlib.suppress(KeyError):  # fired already (the usual case): nothing to remove
            ros.off("ready", self._catch_up)
        for topic, dispatcher in self._dispatchers.items():
            ros.off(topic, dispatcher)
        self._dispatchers.clear()
        if self.connected:
            factory.on_ready(_close_at_once)  # connected: runs now
        ros.on("ready", _close_at_once)
        self.connected = False
        self.subs.clear()

    # ---- roslibpy's thread → the loop -----------------------------------------------

    def _ready_thread(self, proto: Any) -> None:
        with self._ready_lock:
            if proto is self._ready_proto:
                return
            self._ready_proto = proto
        # roslibpy 2.1 raises on 'status' (no handler); take them, to log and count.
        handlers = getattr(proto, "_message_handlers", None)
        if isinstance(handlers, dict):
            handlers["status"] = self._status_thread
        self.link._call_soon(self._on_ready)

    def _close_thread(self, proto: Any) -> None:
        self.link._call_soon(self._on_close)

    def _status_thread(self, message: Any) -> None:
        self.link._call_soon(self.link._on_status, dict(message))

    def _dispatcher_for(self, topic: str) -> Callable[[Any], None]:
        def dispatch(msg: Any) -> None:  # on roslibpy's thread
            self.link._call_soon(self._deliver, topic, msg)

        return dispatch

    # ---- on the loop -------------------------------------------------------------------

    def _deliver(self, topic: str, msg: Any) -> None:
        # A non-object is handed over as is: the bridge's type check counts and reports it.
        for sub in list(self.subs.get(topic, ())):
            try:
                sub.deliver(msg)
            except Exception:
                self.link.log.exception("subscriber of %s failed", topic)

    def _on_ready(self) -> None:
        if self.ros is None:
            return
        self.connected = True
        self.connects += 1
        for subs in self.subs.values():
            for sub in subs:
                self.send(sub.wire())
        self.link._channel_up(self)

    def _on_close(self) -> None:
        was, self.connected = self.connected, False
        self.link._channel_down(self, was)


class RosbridgeLink:
    """A :class:`~devfleet_ros.api.RosLink` over rosbridge v2 connections to one server.

    Args:
        url: ``ws://host:port`` of the rosbridge server.
        log: where connection changes and protocol errors are logged.
        reconnect_max_s: the cap of the reconnect back-off, seconds.
        on_change: called (on the loop) after every connect and disconnect.
    """

    def __init__(
        self,
        url: str,
        *,
        log: logging.Logger,
        reconnect_max_s: float = 1.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.log = log
        self.reconnect_max_s = reconnect_max_s
        self.on_change = on_change
        self.reason = "not started"
        """Why the link is not connected (empty while connected)."""
        self.status_errors = 0
        self._roslibpy: Any = None
        self._main: _Channel | None = None
        self._bulk: _Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up: asyncio.Event | None = None
        self._advertised: dict[str, str] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._ids = itertools.count(1)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Import roslibpy and start connecting (returns at once; see :meth:`wait_connected`)."""
        import roslibpy  # here, not at import time: it pulls in autobahn and txaio

        self._roslibpy = roslibpy
        self._loop = asyncio.get_running_loop()
        self._up = asyncio.Event()
        self.reason = f"connecting to {self.url}"
        self._main = _Channel(self, "main", roslibpy)

    async def stop(self) -> None:
        """Close the connections and stop reconnecting; pending calls fail. Idempotent."""
        main, self._main = self._main, None
        bulk, self._bulk = self._bulk, None
        if main is None:
            return
        for channel in (main, bulk):
            if channel is not None:
                channel.close()
        self._set_down("stopped", notify=True)
        self._advertised.clear()

    @property
    def connects(self) -> int:
        """Connections made by the main channel since start (1 + reconnects)."""
        return self._main.connects if self._main is not None else 0

    @property
    def bulk_connected(self) -> bool | None:
        """Whether the bulk connection is up; None when no bulk subscription exists."""
        return None if self._bulk is None else self._bulk.connected

    # ---- RosLink --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._main is not None and self._main.connected

    async def wait_connected(self, timeout: float) -> None:
        if self.connected:
            return
        if self._up is None:
            raise ComponentError("the ROS link is not started")
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            raise ComponentError(
                f"rosbridge at {self.url} not connected after {timeout:g} s ({self.reason})"
            ) from None

    def subscribe(
        self,
        topic: str,
        type: str,
        callback: MessageCallback,
        *,
        throttle_rate_ms: int = 0,
        queue_length: int = 1,
        bulk: bool = False,
    ) -> _LinkSubscription:
        """See :meth:`RosLink.subscribe`; ``bulk=True`` uses the second connection (large messages)."""
        if self._main is None:
            raise ComponentError("the ROS link is not started")
        channel = self._main
        if bulk:
            if self._bulk is None:
                self._bulk = _Channel(self, "bulk", self._roslibpy)
            channel = self._bulk
        sub = _LinkSubscription(
            channel, topic, type, callback, max(0, throttle_rate_ms), max(1, queue_length)
        )
        channel.subscribe(sub)
        return sub

    async def publish(self, topic: str, type: str, msg: dict[str, Any]) -> None:
        check_message(type, msg)
        main = self._main
        if main is None or not main.connected:
            raise ComponentError(f"not connected to rosbridge ({self.reason})")
        if self._advertised.get(topic) != type:
            self._advertised[topic] = type
            main.send({"op": "advertise", "id": f"advertise:{topic}", "topic": topic, "type": type})
        main.send({"op": "publish", "topic": topic, "msg": msg})

    async def call_service(
        self,
        service: str,
        args: dict[str, Any] | None = None,
        *,
        type: str | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        main = self._main
        if main is None or not main.connected or self._loop is None:
            raise CommandError(f"not connected to rosbridge ({self.reason})", code=Code.UNAVAILABLE)
        loop = self._loop
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.add(fut)

        def settle(ok: bool, values: Any) -> None:
            if not fut.done():
                fut.set_result((ok, values))

        message: dict[str, Any] = {
            "op": "call_service",
            "id": f"call_service:{service}:{next(self._ids)}",
            "service": service,
            "args": args or {},
        }
        if type:
            message["type"] = type
        main.ros.call_async_service(
            self._roslibpy.Message(message),
            lambda values: loop.call_soon_threadsafe(settle, True, values),
            lambda values: loop.call_soon_threadsafe(settle, False, values),
        )
        try:
            ok, values = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CommandError(
                f"service {service}: no response after {timeout:g} s", code=Code.TIMEOUT
            ) from None
        finally:
            self._pending.discard(fut)
        if ok:
            return dict(values) if isinstance(values, Mapping) else {"values": values}
        text = str(values)
        if "does not exist" in text:  # rosbridge's words for a service nobody offers
            raise CommandError(f"service {service} does not exist", code=Code.NOT_FOUND)
        raise CommandError(f"service {service} failed: {text}", code=Code.FAILED)

    # ---- channel events (on the loop) ---------------------------------------------------

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(fn, *args)

    def _channel_up(self, channel: _Channel) -> None:
        if channel is not self._main:
            self.log.info("bulk connection to rosbridge at %s up", self.url)
            self._changed()
            return
        self.reason = ""
        if self._up is not None:
            self._up.set()
        for topic, type_ in self._advertised.items():
            channel.send({"op": "advertise", "id": f"advertise:{topic}", "topic": topic, "type": type_})
        restored = sum(len(s) for s in channel.subs.values())
        self.log.info(
            "connected to rosbridge at %s (restored %d subscriptions, %d advertisements)",
            self.url,
            restored,
            len(self._advertised),
        )
        self._changed()

    def _channel_down(self, channel: _Channel, was_connected: bool) -> None:
        if channel is not self._main:
            if was_connected:
                self._changed()
            return
        if not was_connected:
            self.reason = f"cannot reach rosbridge at {self.url}"
            return
        self.log.warning("rosbridge at %s: connection lost; reconnecting", self.url)
        self._set_down(f"connection to {self.url} lost; reconnecting", notify=True)

    def _set_down(self, reason: str, *, notify: bool) -> None:
        self.reason = reason
        if self._up is not None:
            self._up.clear()
        for fut in list(self._pending):
            if not fut.done():
                fut.set_exception(
                    CommandError(f"rosbridge connection lost ({reason})", code=Code.UNAVAILABLE)
                )
        self._pending.clear()
        if notify:
            self._changed()

    def _on_status(self, message: dict[str, Any]) -> None:
        self.status_errors += message.get("level") == "error"
        self.log.warning("rosbridge status %s: %s", message.get("level"), message.get("msg"))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _close_at_once(proto: Any) -> None:
    proto.send_close()
