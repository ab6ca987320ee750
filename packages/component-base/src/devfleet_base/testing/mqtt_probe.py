"""A small synchronous MQTT client for tests: subscribe, publish, and wait on conditions.

:class:`MqttProbe` wraps paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``) with its
network loop on a background thread. Every wait is on a condition with a
timeout; a timeout raises :class:`ProbeTimeout` (an ``AssertionError`` and a
``TimeoutError``) that names what was awaited and what was seen instead::

    with MqttProbe.connect_to(broker) as probe:
        probe.subscribe("nodes/+/status")
        probe.publish("nodes/n1/cmd", {"id": "c1", "op": "ping"})
        msg = probe.wait_for("nodes/n1/status", lambda m: m.json()["state"] == "online")

paho is imported when a probe is created, not when this module is imported.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    import paho.mqtt.client as paho_client
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from .broker import LocalBroker

__all__ = [
    "Message",
    "MqttProbe",
    "ProbeConnectError",
    "ProbeError",
    "ProbeTimeout",
    "ProtocolVersion",
    "filter_covers",
    "topic_matches",
]

ProtocolVersion = Literal[5, 4, "5", "3.1.1"]
_SEEN_IN_ERRORS = 10
_ids = itertools.count(1)


class ProbeError(AssertionError):
    """The broker refused something the probe asked for (subscribe, publish)."""


class ProbeConnectError(ProbeError, ConnectionError):
    """The probe could not connect, or the broker refused the connection."""


class ProbeTimeout(ProbeError, TimeoutError):
    """A wait ran out of time; the message says what was awaited and what was seen."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT ``topic_filter``: paho's ``topic_matches_sub``
    (``+``, ``#``, and no wildcard at the first level matches a ``$SYS``-style topic).

    paho is imported at the first call, like the probe's own import of it.
    """
    from paho.mqtt.client import topic_matches_sub

    return topic_matches_sub(topic_filter, topic)


def filter_covers(outer: str, inner: str) -> bool:
    """Whether every topic matched by filter ``inner`` is also matched by filter ``outer``.

    Args:
        outer: The broader filter, e.g. ``nodes/#``.
        inner: The narrower filter, e.g. ``nodes/+/status``.
    """
    o_parts = outer.split("/")
    i_parts = inner.split("/")
    for i, part in enumerate(o_parts):
        if part == "#":
            return True
        if i >= len(i_parts) or i_parts[i] == "#":
            return False
        if part != "+" and (i_parts[i] == "+" or part != i_parts[i]):
            return False
    return len(o_parts) == len(i_parts)


@dataclass(frozen=True)
class Message:
    """One message the probe received.

    Attributes:
        topic: The topic it arrived on.
        payload: The raw payload bytes.
        retain: The retain flag as delivered (True for messages sent because
            of a subscription to a retained topic).
        qos: The QoS it was delivered with.
        properties: MQTT 5 properties by paho's names (``ResponseTopic``,
            ``CorrelationData``, ``UserProperty``, ...); empty under 3.1.1.
        received_at: ``time.monotonic()`` when it arrived.
    """

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0
    properties: Mapping[str, Any] = field(default_factory=dict)
    received_at: float = 0.0

    def json(self) -> Any:
        """The payload decoded as JSON.

        Raises:
            ValueError: the payload is not valid JSON (the message names the topic).
        """
        try:
            return json.loads(self.payload)
        except ValueError as exc:
            raise ValueError(f"payload on {self.topic!r} is not JSON: {self.payload[:200]!r}") from exc

    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode()

    def __str__(self) -> str:
        body = self.payload[:120].decode(errors="replace")
        more = "..." if len(self.payload) > 120 else ""
        return f"{self.topic} {'(retained) ' if self.retain else ''}{body}{more}"


def _encode(payload: Any) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()


def _properties_dict(props: Properties | None) -> dict[str, Any]:
    if props is None:
        return {}
    out: dict[str, Any] = {}
    for name in props.names:
        key = name.replace(" ", "")
        if hasattr(props, key):
            out[key] = getattr(props, key)
    return out


def _set_nodelay(client: paho_client.Client) -> None:
    sock = client.socket()
    if sock is not None and hasattr(sock, "setsockopt"):
        with contextlib.suppress(OSError):  # the socket may close under us
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttProbe:
    """A synchronous paho-mqtt test client that records every message it receives.

    Messages are kept in arrival order for the probe's lifetime (see
    :meth:`mark` and :meth:`clear`). After a reconnect (broker restart) the
    probe re-subscribes to everything it had subscribed to.

    Args:
        host: Broker address (loopback).
        port: Broker port.
        protocol: ``5`` (MQTT 5, the default) or ``"3.1.1"`` (also ``4``).
        client_id: MQTT client id; a unique ``probe-...`` id if omitted.
        username: Username for brokers with authentication.
        password: Password for brokers with authentication.
        ca_path: CA certificate to trust; turns TLS on.
        client_cert: Client certificate for mutual TLS (with ``client_key``).
        client_key: Client private key for mutual TLS.
        keepalive: MQTT keepalive in seconds.
        timeout: Default timeout in seconds for connect, subscribe, publish and waits.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        protocol: ProtocolVersion = 5,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_path: Path | str | None = None,
        client_cert: Path | str | None = None,
        client_key: Path | str | None = None,
        keepalive: int = 30,
        timeout: float = 5.0,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if protocol not in (5, 4, "5", "3.1.1"):
            raise ValueError(f"protocol must be 5 or '3.1.1', not {protocol!r}")
        self.host = host
        self.port = port
        self.v5 = protocol in (5, "5")
        self.client_id = client_id or f"probe-{os.getpid()}-{next(_ids)}"
        self.timeout = timeout
        self.keepalive = keepalive
        self._conn_args: dict[str, Any] = {
            "protocol": protocol,
            "username": username,
            "password": password,
            "ca_path": ca_path,
            "client_cert": client_cert,
            "client_key": client_key,
            "keepalive": keepalive,
            "timeout": timeout,
        }
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self._subscriptions: dict[str, int] = {}
        self._suback: dict[int, list[ReasonCode]] = {}
        self._puback: dict[int, ReasonCode] = {}
        self._connack: ReasonCode | None = None
        self._lost_before_connack: str | None = None
        self._connected = False
        self._connects = 0
        self._disconnects = 0
        self._started = False
        self._sentinels = itertools.count(1)

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if ca_path is not None:
            client.tls_set(
                ca_certs=str(ca_path),
                certfile=str(client_cert) if client_cert else None,
                keyfile=str(client_key) if client_key else None,
            )
        # paho annotates the delays as int but sleeps on floats; reconnect fast in tests.
        client.reconnect_delay_set(0.05, 1)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        self._client = client

    # -- construction helpers ------------------------------------------
    @classmethod
    def connect_to(
        cls,
        broker: LocalBroker,
        *,
        protocol: ProtocolVersion = 5,
        client_cert: bool = False,
        **kwargs: Any,
    ) -> MqttProbe:
        """Create a probe for a test broker and connect it.

        Trusts the broker's CA when it runs TLS.

        Args:
            broker: A started broker (``MosquittoBroker``, ``EmbeddedBroker``).
            protocol: ``5`` or ``"3.1.1"``.
            client_cert: Present the broker's generated client certificate (mutual TLS).
            **kwargs: Further :class:`MqttProbe` arguments (``username``, ``password``, ...).

        Returns:
            A connected probe; use it as a context manager or call :meth:`close`.
        """
        tls = getattr(broker, "tls", None)
        if broker.ca_path is not None:
            kwargs.setdefault("ca_path", broker.ca_path)
            if client_cert and tls is not None:
                kwargs.setdefault("client_cert", tls.client_cert)
                kwargs.setdefault("client_key", tls.client_key)
        probe = cls(broker.host, broker.port, protocol=protocol, **kwargs)
        probe.connect()
        return probe

    def _clone(self) -> MqttProbe:
        args = dict(self._conn_args)
        return MqttProbe(self.host, self.port, client_id=f"{self.client_id}-aux", **args)

    # -- paho callbacks (network thread) --------------------------------
    def _on_connect(
        self,
        client: paho_client.Client,
        userdata: Any,
        flags: paho_client.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._connack = reason_code
            if reason_code.is_failure:
                self._cond.notify_all()
                return
            _set_nodelay(client)
            self._connected = True
            self._connects += 1
            resubscribe = self._connects > 1 and not flags.session_present
            subs = list(self._subscriptions.items())
            self._cond.notify_all()
        if resubscribe and subs:
            client.subscribe([(topic, qos) for topic, qos in subs])

    def _on_disconnect(
        self,
        client: paho_client.Client,
        userdata: Any,
        flags: paho_client.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if self._connected:
                self._disconnects += 1
            elif self._connack is None:
                self._lost_before_connack = str(reason_code)
            self._connected = False
            self._cond.notify_all()

    def _on_message(self, client: paho_client.Client, userdata: Any, msg: paho_client.MQTTMessage) -> None:
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            qos=msg.qos,
            properties=_properties_dict(getattr(msg, "properties", None)),
            received_at=time.monotonic(),
        )
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    def _on_subscribe(
        self,
        client: paho_client.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._suback[mid] = list(reason_codes)
            self._cond.notify_all()

    def _on_publish(
        self,
        client: paho_client.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._puback[mid] = reason_code
            self._cond.notify_all()

    # -- waiting --------------------------------------------------------
    def _wait(self, predicate: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        """Wait until ``predicate()`` (run under the lock); on timeout raise naming ``what()``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProbeTimeout(what())
                self._cond.wait(remaining)

    # -- connection -----------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the probe holds an accepted connection right now."""
        with self._cond:
            return self._connected

    @property
    def connect_count(self) -> int:
        """How many times the connection was accepted (reconnects included)."""
        with self._cond:
            return self._connects

    def connect(self, timeout: float | None = None) -> None:
        """Connect and wait for the CONNACK.

        Args:
            timeout: Seconds to wait; the probe's default if omitted.

        Raises:
            ProbeConnectError: the TCP/TLS connection failed or the broker
                refused the connection (the reason code is in the message).
            ProbeTimeout: no CONNACK in time.
        """
        timeout = self.timeout if timeout is None else timeout
        where = f"{self.host}:{self.port}"
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            raise ProbeConnectError(f"probe {self.client_id} cannot connect to {where}: {exc}") from exc
        _set_nodelay(self._client)
        self._client.loop_start()
        self._started = True
        try:
            self._wait(
                lambda: self._connack is not None or self._lost_before_connack is not None,
                timeout,
                lambda: f"no CONNACK from {where} within {timeout}s",
            )
        except ProbeTimeout:
            self.close()
            raise
        if self._connack is None:
            self.close()
            raise ProbeConnectError(
                f"broker at {where} closed the connection of probe {self.client_id} before "
                f"CONNACK ({self._lost_before_connack}); wrong TLS settings or missing client "
                "certificate?"
            )
        rc = self._connack
        if rc is not None and rc.is_failure:
            self.close()
            raise ProbeConnectError(
                f"broker at {where} refused probe {self.client_id}: {rc} (reason code {rc.value})"
            )

    def wait_connected(self, timeout: float | None = None, *, after: int = 0) -> None:
        """Wait until connected, and until at least ``after`` + 1 connections were accepted.

        Use ``after=probe.connect_count`` before restarting a broker to wait for
        the reconnect (re-subscriptions are sent before this returns).

        Raises:
            ProbeTimeout: not (re)connected in time.
        """
        timeout = self.timeout if timeout is None else timeout
        self._wait(
            lambda: self._connected and self._connects > after,
            timeout,
            lambda: (
                f"probe {self.client_id} not reconnected to {self.host}:{self.port} within "
                f"{timeout}s (connections so far: {self._connects}, connected: {self._connected})"
            ),
        )

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
        with self._cond:
            self._connected = False

    def __enter__(self) -> Self:
        if not self._started:
            self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- subscribe / publish -------------------------------------------
    def subscribe(self, topic_filter: str, qos: int = 1, *, timeout: float | None = None) -> list[int]:
        """Subscribe and wait for the SUBACK.

        Args:
            topic_filter: The MQTT topic filter.
            qos: Maximum QoS requested.
            timeout: Seconds to wait; the probe's default if omitted.

        Returns:
            The granted QoS values (one per filter).

        Raises:
            ProbeError: the broker refused the subscription (e.g. an ACL).
            ProbeTimeout: no SUBACK in time.
        """
        timeout = self.timeout if timeout is None else timeout
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != 0 or mid is None:
            raise ProbeError(f"subscribe to {topic_filter!r} not sent: {rc!r}")
        self._wait(
            lambda: mid in self._suback,
            timeout,
            lambda: f"no SUBACK for {topic_filter!r} within {timeout}s",
        )
        with self._cond:
            codes = self._suback.pop(mid)
        failed = [c for c in codes if c.is_failure]
        if failed:
            raise ProbeError(f"broker refused subscription to {topic_filter!r}: {failed[0]}")
        with self._cond:
            self._subscriptions[topic_filter] = qos
        return [c.value for c in codes]

    def unsubscribe(self, topic_filter: str) -> None:
        """Unsubscribe from ``topic_filter`` (not awaited; later messages may still arrive)."""
        with self._cond:
            self._subscriptions.pop(topic_filter, None)
        self._client.unsubscribe(topic_filter)

    def publish(
        self,
        topic: str,
        payload: Any = None,
        qos: int = 1,
        retain: bool = False,
        *,
        properties: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Publish and wait until the broker acknowledged it (QoS 1/2) or it was sent (QoS 0).

        Args:
            topic: Topic name.
            payload: ``bytes`` are sent as they are, ``str`` as UTF-8, ``None`` as an
                empty payload (which clears a retained topic), anything else as JSON.
            qos: 0, 1 or 2.
            retain: Set the retain flag.
            properties: MQTT 5 properties by paho name, e.g.
                ``{"ResponseTopic": "r/1", "CorrelationData": b"1",
                "UserProperty": [("k", "v")], "MessageExpiryInterval": 30}``.
            timeout: Seconds to wait; the probe's default if omitted.

        Raises:
            ProbeError: paho could not queue it, or (MQTT 5) the broker answered
                with a failure reason code such as "Not authorized".
            ProbeTimeout: no acknowledgement in time.
        """
        timeout = self.timeout if timeout is None else timeout
        props = self._make_properties(properties) if properties else None
        info = self._client.publish(topic, _encode(payload), qos=qos, retain=retain, properties=props)
        if info.rc != 0:
            raise ProbeError(f"publish to {topic!r} not queued by paho: rc={info.rc!r}")
        mid = info.mid
        self._wait(
            lambda: mid in self._puback,
            timeout,
            lambda: f"no {'PUBACK' if qos else 'send'} for publish to {topic!r} within {timeout}s",
        )
        with self._cond:
            rc = self._puback.pop(mid)
        if rc.is_failure:
            raise ProbeError(f"broker refused publish to {topic!r}: {rc} (reason code {rc.value})")

    def _make_properties(self, values: Mapping[str, Any]) -> Properties:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if not self.v5:
            raise ValueError("MQTT properties need protocol 5")
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        for key, value in values.items():
            setattr(props, key, value)
        return props

    # -- reading --------------------------------------------------------
    def mark(self) -> int:
        """A cursor: pass it as ``since=`` to consider only messages received after now."""
        with self._cond:
            return len(self._messages)

    def clear(self) -> None:
        """Forget every message received so far (cursors from :meth:`mark` become invalid)."""
        with self._cond:
            self._messages.clear()

    def messages(self, topic_filter: str = "#", *, since: int = 0) -> list[Message]:
        """Messages received so far whose topic matches ``topic_filter``, oldest first.

        Args:
            topic_filter: An MQTT filter (``+`` and ``#`` allowed).
            since: A cursor from :meth:`mark`.
        """
        with self._cond:
            return [m for m in self._messages[since:] if topic_matches(topic_filter, m.topic)]

    def _ensure_subscribed(self, topic_filter: str) -> None:
        with self._cond:
            covered = any(filter_covers(sub, topic_filter) for sub in self._subscriptions)
        if not covered:
            self.subscribe(topic_filter)

    def wait_for(
        self,
        topic_filter: str,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float | None = None,
        *,
        since: int = 0,
    ) -> Message:
        """Return the first message on ``topic_filter`` satisfying ``predicate``, waiting if needed.

        Messages already received count (from ``since``, a :meth:`mark` cursor),
        so a message that arrived before the call is not missed. Subscribes to
        ``topic_filter`` first if no current subscription covers it.

        Args:
            topic_filter: An MQTT filter.
            predicate: A test on the message; any message on the filter if omitted.
                A predicate that raises (e.g. ``KeyError`` on other JSON) counts as False.
            timeout: Seconds to wait; the probe's default if omitted.
            since: Only consider messages received after this cursor.

        Returns:
            The matching message.

        Raises:
            ProbeTimeout: nothing matched in time; lists what arrived on the filter.
        """
        timeout = self.timeout if timeout is None else timeout
        self._ensure_subscribed(topic_filter)
        found: list[Message] = []
        scanned = since

        def check() -> bool:
            nonlocal scanned
            for msg in self._messages[scanned:]:
                scanned += 1
                if topic_matches(topic_filter, msg.topic) and _safe(predicate, msg):
                    found.append(msg)
                    return True
            return False

        def describe() -> str:
            seen = [m for m in self._messages[since:] if topic_matches(topic_filter, m.topic)]
            what = f"a message on {topic_filter!r}" + (f" satisfying {_name(predicate)}" if predicate else "")
            return (
                f"timed out after {timeout}s waiting for {what}; "
                f"{_describe_seen(seen, len(self._messages) - since)}"
            )

        self._wait(check, timeout, describe)
        return found[0]

    def retained(self, topic_filter: str, *, timeout: float | None = None) -> dict[str, Message]:
        """Collect the retained messages currently held by the broker under ``topic_filter``.

        Uses a second, short-lived connection: it subscribes to the filter and
        to a probe-unique sentinel topic (``devfleet-probe/{client id}/...``; an
        ACL must allow it, e.g. ``pattern readwrite devfleet-probe/%c/#``),
        publishes a marker to the sentinel and collects until the marker comes
        back. The broker queues retained messages on subscribe, so they all
        arrive before the marker; nothing sleeps. Both subscriptions use QoS 0
        so that all deliveries share one ordered queue.

        Args:
            topic_filter: An MQTT filter.
            timeout: Seconds to wait for the marker; the probe's default if omitted.

        Returns:
            ``{topic: message}`` for every retained message under the filter.

        Raises:
            ProbeTimeout: the marker did not come back in time.
        """
        timeout = self.timeout if timeout is None else timeout
        aux = self._clone()
        sentinel = f"devfleet-probe/{aux.client_id}/sentinel/{next(self._sentinels)}"
        aux.connect(timeout)
        try:
            aux.subscribe(topic_filter, qos=0, timeout=timeout)
            aux.subscribe(sentinel, qos=0, timeout=timeout)
            aux.publish(sentinel, b"marker", qos=0, timeout=timeout)
            aux.wait_for(sentinel, timeout=timeout)
            with aux._cond:
                received = list(aux._messages)
        finally:
            aux.close()
        out: dict[str, Message] = {}
        for msg in received:
            if msg.topic == sentinel:
                break
            if msg.retain and topic_matches(topic_filter, msg.topic):
                out[msg.topic] = msg
        return out

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        version = "5" if self.v5 else "3.1.1"
        return f"<MqttProbe {self.client_id} v{version} {self.host}:{self.port} {state}>"


def _safe(predicate: Callable[[Message], bool] | None, msg: Message) -> bool:
    if predicate is None:
        return True
    try:
        return bool(predicate(msg))
    except Exception:
        return False


def _name(predicate: Callable[[Message], bool] | None) -> str:
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    return name


def _describe_seen(seen: Iterable[Message], total: int) -> str:
    seen = list(seen)
    if not seen:
        return f"saw nothing on that filter ({total} message(s) on other topics)"
    shown = "\n  ".join(str(m) for m in seen[-_SEEN_IN_ERRORS:])
    more = f" (last {_SEEN_IN_ERRORS})" if len(seen) > _SEEN_IN_ERRORS else ""
    return f"saw {len(seen)} message(s) on that filter{more}:\n  {shown}"
