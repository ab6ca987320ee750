"""The floor: bare paho-mqtt clients driven from asyncio, with none of devfleet's layers.

paho's own ``loop_start`` uses ``select()`` (dead past 1,024 descriptors), so even
the floor registers each socket with the event loop (epoll): ``loop_read`` when
readable, ``loop_write`` when paho has something to send, ``loop_misc`` once a
second. TCP_NODELAY is set as devfleet sets it. Nothing else: no envelopes,
no JSON, no model.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["RawClient"]


class RawClient:
    """One bare paho client on the running loop.

    Args:
        client_id: MQTT client id.
        on_message: ``on_message(topic, payload, retain)`` for every message.
        v5: MQTT 5 (as devfleet uses when the broker offers it), else 3.1.1.
    """

    def __init__(
        self,
        client_id: str,
        on_message: Callable[[str, bytes, bool], None] | None = None,
        *,
        v5: bool = True,
    ) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        self.client.max_queued_messages_set(0)
        self._user = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._misc: asyncio.TimerHandle | None = None
        self._sock: Any = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_socket_register_write = lambda cl, ud, sock: self._loop.add_writer(sock, cl.loop_write)  # type: ignore[union-attr]
        c.on_socket_unregister_write = lambda cl, ud, sock: self._loop.remove_writer(sock)  # type: ignore[union-attr]
        self._suback: asyncio.Future[None] | None = None

    async def connect(self, host: str, port: int, keepalive: int = 60) -> RawClient:
        """Connect and wait for the CONNACK."""
        self._loop = asyncio.get_running_loop()
        self._connack = self._loop.create_future()
        self.client.connect(host, port, keepalive=keepalive)
        sock = self.client.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._loop.add_reader(sock, self.client.loop_read)
        if self.client.want_write():
            self._loop.add_writer(sock, self.client.loop_write)
        self._tick()
        await asyncio.wait_for(self._connack, 30)
        return self

    def _tick(self) -> None:
        assert self._loop is not None
        self.client.loop_misc()
        self._misc = self._loop.call_later(1.0, self._tick)

    async def subscribe(self, filters: list[tuple[str, int]]) -> None:
        """Subscribe and wait for the SUBACK."""
        assert self._loop is not None
        self._suback = self._loop.create_future()
        self.client.subscribe(filters)
        await asyncio.wait_for(self._suback, 30)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        """Queue a publish; return its message id (raises if paho refused it)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish refused: {paho.error_string(info.rc)}")
        return info.mid

    async def publish_acked(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK."""
        assert self._loop is not None
        fut = self._loop.create_future()
        mid = self.publish(topic, payload, qos=1, retain=retain)
        self._acks[mid] = fut
        await asyncio.wait_for(fut, 60)

    def close(self) -> None:
        """Disconnect and forget the socket."""
        if self._misc is not None:
            self._misc.cancel()
        if self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
        self.client.disconnect()
        self._sock = None

    # paho callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(None)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        if self._suback is not None and not self._suback.done():
            self._suback.set_result(None)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._user is not None:
            self._user(msg.topic, msg.payload, bool(msg.retain))
