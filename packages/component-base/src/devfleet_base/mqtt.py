"""paho-mqtt driven from the asyncio event loop: the one module that imports paho.

Shared by the agent and the console (install ``devfleet-component-base[mqtt]``).
Components never import it: they talk through their context.

Why not paho's own ``loop_start``: it uses ``select()`` and dies silently past
1,024 file descriptors, and a thread per client costs ~35 KB. Here the socket is
registered with the event loop (epoll on Linux), so one loop can hold thousands
of sessions (the fleet simulator does).

Session discipline (Home Assistant's MQTT client is the model): on every
connect re-subscribe, then call ``on_connect`` (which publishes the birth);
reconnect with exponential back-off and full jitter; stop retrying on bad
credentials with a clear error; set TCP_NODELAY (Nagle costs ~40 ms a round trip).

Writing (issue 20): what paho queues during one turn of the event loop goes out in
one flush at the start of the next (``call_soon``): an agent's PUBACK, ``accepted``
and ``ok`` for a command leave back to back after its handler ran. paho's own
external-loop path registered the socket for writing and removed it again for
every burst (two ``epoll_ctl`` calls, and ``remove_writer`` formatting the socket's
repr when it was not registered); a writer is registered now only when the
socket's buffer is full. (Corking the burst into one segment with ``TCP_CORK`` was
tried: the round trip got slower, not faster.)

Reading (issue 20): the socket is read in chunks of up to 64 KiB, not paho's three
or more ``recv()`` calls a packet, and a QoS 0/1 PUBLISH without MQTT 5 properties is
decoded here, not through paho's per-message objects (see :class:`_BufferedClient`):
a 10,000-node retained burst takes a quarter of the time it took (``bench/ab_discovery.py``).

Persistent sessions (``ClientOptions.persistent``, off by default): the broker
keeps the client's subscriptions (and queues its QoS 1 messages) between
connections (MQTT 3.1.1 clean session 0; MQTT 5 clean start 0 with a session
expiry). On a NATS cluster this is what makes failover work: every QoS 1
subscription there is a replicated JetStream consumer, and with one of three
nodes dead NATS cannot place NEW R3 consumers, but a persistent session's
consumers already exist and keep their quorum, so a client that resumes its
session on a surviving node is served at once (measured: docs/scaling.md).
Re-subscribing to the same filters on a resumed session is granted without a new
consumer, so the session re-subscribes on every connect as before.

Several brokers (``ClientOptions.fallbacks``, e.g. the nodes of a cluster): the
session tries them in turn, the first that answers wins; when that connection
is lost it moves on to the next after a jittered delay, so a fleet whose broker
node died spreads over the survivors instead of reconnecting in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as paho
import paho.mqtt.properties as paho_properties
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .errors import DevfleetError

__all__ = [
    "ClientOptions",
    "ConnectionRefusedFatal",
    "MqttClient",
    "MqttMessage",
    "TlsCertificateError",
    "TlsOptions",
    "Will",
]

log = logging.getLogger("devfleet.mqtt")

# CONNACK reason codes that retrying will not fix (v5 codes; v3 1..5 map here too).
_CLOSED_BEFORE_CONNACK = "connection closed before CONNACK"
_FATAL_REASONS = {
    "Bad user name or password",
    "Not authorized",
    "Client identifier not valid",
    "Banned",
}


class ConnectionRefusedFatal(DevfleetError):
    """The broker refused us for a reason retrying cannot fix (bad credentials)."""

    code = "unavailable"


class TlsCertificateError(ConnectionRefusedFatal):
    """TLS cannot work with these settings whatever the broker does: its certificate
    is not signed by our CA or names another host, or our own TLS files cannot be loaded."""


# OpenSSL verify codes (X509_V_ERR_*) that no retry can fix: the CA or the name is wrong.
_CERT_NEVER_OK = {
    2: "its issuer's certificate is not in the CA file",
    7: "its signature does not verify",
    18: "it is self-signed and not in the CA file (wrong CA?)",
    19: "its chain ends in a CA that is not in the CA file (wrong CA?)",
    20: "it is not signed by the CA in the CA file (wrong CA?)",
    21: "it is not signed by the CA in the CA file (wrong CA?)",
    62: "it does not name this host (check the broker address against the certificate's names)",
    64: "it does not name this IP address (check the broker address against the certificate's names)",
}
# Validity errors can be this node's clock (a Pi has no RTC and boots in the past): retry.
_CERT_CLOCK = {9: "it is not valid yet", 10: "it has expired"}


def describe_tls_error(exc: ssl.SSLError, host: str, port: int, ca: str | None) -> tuple[str, bool]:
    """Name the certificate problem behind a failed TLS handshake.

    Returns:
        ``(message, fatal)``: fatal when retrying cannot help (unknown CA, wrong
        host name); the clock-dependent errors and unclassified ones are not fatal.
    """
    where = f"broker {host}:{port}"
    trust = f"the CA file {ca}" if ca else "the system's CA store"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _CERT_NEVER_OK:
            why = _CERT_NEVER_OK[code]
            return (f"TLS: the certificate of {where} is refused: {why} (trusting {trust}; openssl: "
                    f"{exc.verify_message})", True)  # fmt: skip
        if code in _CERT_CLOCK:
            now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            return (f"TLS: the certificate of {where} is refused: {_CERT_CLOCK[code]} "
                    f"(this node's clock says {now}; is it right?)", False)  # fmt: skip
        return f"TLS: the certificate of {where} is refused: {exc.verify_message}", False
    reason = exc.reason or str(exc)
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return f"TLS: {where} does not speak TLS on this port (plain MQTT is usually 1883, TLS 8883)", False
    return f"TLS handshake with {where} failed: {reason}", False


@dataclass(frozen=True)
class TlsOptions:
    """TLS to the broker; ``ca`` None means the system trust store."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttMessage(NamedTuple):
    """One received message (immutable; a named tuple: one is built per message, and a
    frozen dataclass cost twice as much to construct)."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    response_topic: str | None = None
    correlation: bytes | None = None
    #: MQTT 5 user properties as (name, value) pairs, in order (e.g. Wactorz's signature).
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass
class ClientOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: TlsOptions | None = None
    protocol: str = "auto"  # "5", "3.1.1" or "auto" (5, falling back to 3.1.1)
    keepalive: int = 30
    connect_timeout: float = 10.0
    backoff_min: float = 0.5
    backoff_max: float = 4.0  # reconnect within ~5 s of the broker coming back
    ack_timeout: float = 10.0
    max_queued: int = 1000
    subscriptions: list[tuple[str, int]] = field(default_factory=list)
    fallbacks: list[tuple[str, int]] = field(default_factory=list)
    """More brokers (host, port) tried in turn after ``host:port``; they share the
    credentials and TLS settings."""
    persistent: bool = False
    """Ask the broker to keep the session (subscriptions, queued QoS 1 messages)
    across connections; needs a stable ``client_id``."""
    session_expiry: int = 86400
    """Seconds an MQTT 5 broker keeps a persistent session after a disconnect (MQTT
    3.1.1 has no expiry: the broker keeps it until a clean-session connect)."""


class MqttClient:
    """One broker connection that keeps itself alive.

    Args:
        options: where and how to connect.
        on_message: called on the loop for every inbound message; exceptions are logged.
        on_connect: awaited after every (re)connect, after the subscriptions were
            sent; publish the birth here.
        will: called before every connect attempt to get the last will (it may
            carry the session counter).
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        on_message: Callable[[MqttMessage], None],
        on_connect: Callable[[], Awaitable[None]] | None = None,
        will: Callable[[], Will | None] | None = None,
    ) -> None:
        self.options = options
        self._on_message = on_message
        self._on_connect = on_connect
        self._will = will
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._connack: asyncio.Future[str] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._misc: asyncio.TimerHandle | None = None
        self._sock: socket.socket | None = None
        # Writing (see the module's docstring): a flush is scheduled; the socket is
        # registered for writing (only while its buffer is full).
        self._flush_pending = False
        self._writer_on = False
        self._stopping = False
        self._stop = asyncio.Event()
        self._attempt_failed = asyncio.Event()
        self.last_error: BaseException | None = None
        """Why the last connection attempt failed (None once connected)."""
        self.last_activity = time.monotonic()
        """When (monotonic) a connection attempt last started or ended: a session that
        is neither connected nor trying for long is wedged."""
        self.protocol_in_use: str | None = None
        self.reconnect_floor = 0.0
        """Seconds to wait at least before reconnecting after a lost connection (an
        agent that shares its node name with another process backs off with it)."""
        self.taken_over = 0
        """How often the broker said another client took this session (MQTT 5)."""
        self.connects = 0
        self.session_present = False
        """Whether the broker resumed a kept session at the last connect (CONNACK flag)."""
        self._brokers = [(options.host, options.port)]
        self._brokers += [b for b in options.fallbacks if b not in self._brokers]
        self._broker_index = 0
        self._pending_subs: dict[int, list[tuple[str, int]]] = {}
        # Reference counts and granted QoS per filter (see subscribe); the options'
        # initial subscriptions are held once by whoever made the session.
        self._refs: dict[str, int] = {}
        self._qos: dict[str, int] = {}
        for topic_filter, qos in options.subscriptions:
            self._refs[topic_filter] = self._refs.get(topic_filter, 0) + 1
            self._qos[topic_filter] = max(qos, self._qos.get(topic_filter, 0))
        options.subscriptions = list(self._qos.items())
        self.counters = {"sent": 0, "received": 0, "subscribed": 0}

    # ---- public API ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_attempt_failed(self) -> BaseException | None:
        """Wait until a connection attempt fails; return why (see :attr:`last_error`)."""
        await self._attempt_failed.wait()
        self._attempt_failed.clear()
        return self.last_error

    @property
    def broker(self) -> str:
        """``host:port`` of the broker in use (or being tried)."""
        return f"{self.options.host}:{self.options.port}"

    @property
    def brokers(self) -> list[str]:
        """Every broker this session may use, ``host:port``, in the order tried."""
        return [f"{host}:{port}" for host, port in self._brokers]

    def _next_broker(self) -> None:
        """Move on to the next broker of the list (no-op with one broker)."""
        if len(self._brokers) > 1:
            self._broker_index = (self._broker_index + 1) % len(self._brokers)
            self.options.host, self.options.port = self._brokers[self._broker_index]

    @property
    def v5(self) -> bool:
        return self.protocol_in_use == "5"

    async def run(self) -> None:
        """Connect and stay connected until :meth:`close`. Raises
        :class:`ConnectionRefusedFatal` on bad credentials."""
        self._loop = asyncio.get_running_loop()
        attempt = 0
        protocol = "5" if self.options.protocol in ("5", "auto") else "3.1.1"
        while not self._stopping:
            self.last_activity = time.monotonic()
            try:
                await self._connect_once(protocol)
            except ConnectionRefusedFatal:
                raise
            except ssl.SSLError as exc:
                message, fatal = describe_tls_error(exc, self.options.host, self.options.port, self._ca())
                if fatal:
                    raise TlsCertificateError(message + "; not retrying") from None
                attempt += 1
                await self._failed_attempt(_ConnectFailed(message), attempt)
                continue
            except _ProtocolRefused:
                if self.options.protocol == "auto" and protocol == "5":
                    log.info("broker does not speak MQTT 5; using 3.1.1")
                    protocol = "3.1.1"
                    continue
                raise ConnectionRefusedFatal(
                    f"broker {self.options.host}:{self.options.port} refused MQTT {protocol}"
                ) from None
            except (OSError, TimeoutError, _ConnectFailed) as exc:
                if isinstance(exc, _NoConnack) and self.options.protocol == "auto" and protocol == "5":
                    # Some 3.1.1-only brokers (amqtt) neither answer nor refuse an MQTT 5
                    # CONNECT. 3.1.1 works everywhere, so fall back at once.
                    log.info("no answer to an MQTT 5 CONNECT; using 3.1.1")
                    protocol = "3.1.1"
                    continue
                attempt += 1
                if self.options.tls is not None and isinstance(exc, ConnectionResetError):
                    # mosquitto resets a TLS hello on a plain listener.
                    exc = _ConnectFailed(
                        f"TLS: broker {self.options.host}:{self.options.port} reset the connection during "
                        "the TLS handshake (if it persists: is this port a TLS listener? plain MQTT is "
                        "usually 1883, TLS 8883)"
                    )
                await self._failed_attempt(exc, attempt)
                continue
            attempt = 0
            await self._lost.wait()
            self._teardown_socket()
            if not self._stopping:
                lost = self.broker
                self._next_broker()
                delay = max(random.uniform(0, self.options.backoff_min), self.reconnect_floor)
                log.warning(
                    "connection to broker %s lost; reconnecting to %s in %.1f s", lost, self.broker, delay
                )
                await self._sleep_unless_stopping(delay)

    async def _failed_attempt(self, exc: BaseException, attempt: int) -> None:
        self.last_error = exc
        self.last_activity = time.monotonic()
        self._attempt_failed.set()
        # The back-off grows once per round over every broker, not per broker.
        rounds = (attempt - 1) // len(self._brokers) + 1
        delay = random.uniform(0, min(self.options.backoff_max, self.options.backoff_min * 2**rounds))
        if isinstance(exc, _ConnectFailed) and str(exc).startswith("TLS"):
            log.warning("%s; retrying in %.1f s", exc, delay)
        else:
            log.warning(
                "cannot reach broker %s:%s (%s); retrying in %.1f s",
                self.options.host,
                self.options.port,
                exc,
                delay,
            )
        self._next_broker()
        await self._sleep_unless_stopping(delay)

    def _ca(self) -> str | None:
        return self.options.tls.ca if self.options.tls is not None else None

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        wait: bool = False,
        correlation: bytes | None = None,
        expiry: float | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Publish; return False when not connected or the client's queue is full.

        With ``wait=True`` (and qos > 0) wait for the broker's acknowledgement
        (time-boxed by ``ack_timeout``) and return whether it came.
        ``user_properties`` travel on MQTT 5 only (dropped on a 3.1.1 connection).
        """
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        props = None
        if self.v5 and (correlation is not None or expiry is not None or user_properties):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                props.CorrelationData = correlation
            if expiry is not None:
                props.MessageExpiryInterval = max(1, int(expiry))
            if user_properties:
                props.UserProperty = [(str(k), str(v)) for k, v in user_properties]
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            # MQTT_ERR_QUEUE_SIZE is returned, not raised: always check it.
            log.warning("publish to %s not queued: %s", topic, paho.error_string(info.rc))
            return False
        self.counters["sent"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "publish #%d %s (%d bytes, qos %d%s)",
                self.counters["sent"],
                topic,
                len(payload),
                qos,
                ", retained" if retain else "",
            )
        if not wait or qos == 0:
            return True
        assert self._loop is not None
        fut = self._loop.create_future()
        self._acks[info.mid] = fut
        if info.is_published():
            self._acks.pop(info.mid, None)
            return True
        # One future and one timer: wait_for(shield(fut)) made two more futures and
        # three more loop callbacks per acknowledged publish (a console's every command).
        timer = self._loop.call_later(self.options.ack_timeout, fut.cancel)
        try:
            await fut
        except asyncio.CancelledError:
            # The ack timed out, or the connection dropped (teardown cancels it): that is a
            # False, never a cancellation of our caller. A caller being cancelled is re-raised.
            task = asyncio.current_task()
            if fut.cancelled() and (task is None or not task.cancelling()):
                return False
            raise
        finally:
            timer.cancel()
            self._acks.pop(info.mid, None)
        return True

    async def subscribe(self, filters: Sequence[tuple[str, int]], *, fresh: bool = False) -> None:
        """Hold one reference to each filter: subscribed now (if connected) and on
        every reconnect until as many :meth:`unsubscribe` calls drop it.

        Subscriptions are reference-counted so that two operations listening on
        the same filter (a spawn and a stop on one node, both waiting on its
        receipts) do not end each other's: the filter is unsubscribed only when
        its last holder lets go. A filter held at two QoS levels is subscribed
        at the higher one. Prefer :meth:`subscription`, which pairs the calls.

        ``fresh``: send SUBSCRIBE even for a filter already held, so the broker
        sends its retained messages again (MQTT 3.1.1 §3.8.4, MQTT 5 §3.8.4 with
        Retain Handling 0); for a scan of what is retained.
        """
        send: list[tuple[str, int]] = []
        for topic_filter, qos in filters:
            held = self._refs.get(topic_filter, 0)
            self._refs[topic_filter] = held + 1
            granted = self._qos.get(topic_filter)
            if granted is None or qos > granted:
                self._qos[topic_filter] = qos
                send.append((topic_filter, qos))
            elif fresh:
                send.append((topic_filter, granted))
        if send:
            self.options.subscriptions = list(self._qos.items())
        if self._client is not None and self._connected.is_set() and send:
            self._send_subscribe(self._client, send)
            self.counters["subscribed"] += len(send)
            log.debug("subscribe %s", ", ".join(f for f, _ in send))

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Drop one reference to each filter; the broker is told when none is left
        (a filter nobody holds is ignored)."""
        gone: list[str] = []
        for topic_filter in filters:
            held = self._refs.get(topic_filter, 0)
            if held <= 1:
                if self._refs.pop(topic_filter, None) is not None:
                    self._qos.pop(topic_filter, None)
                    gone.append(topic_filter)
            else:
                self._refs[topic_filter] = held - 1
        if gone:
            self.options.subscriptions = list(self._qos.items())
        if self._client is not None and self._connected.is_set() and gone:
            self._client.unsubscribe(gone)

    @contextlib.asynccontextmanager
    async def subscription(
        self, filters: Sequence[tuple[str, int]], *, fresh: bool = False
    ) -> AsyncIterator[None]:
        """``async with session.subscription([(filter, qos)]):`` holds the filters
        for the block (see :meth:`subscribe`): the way to listen for a while."""
        await self.subscribe(filters, fresh=fresh)
        try:
            yield
        finally:
            await self.unsubscribe([f for f, _ in filters])

    def holders(self, topic_filter: str) -> int:
        """How many holders ``topic_filter`` has (0: not subscribed)."""
        return self._refs.get(topic_filter, 0)

    async def close(self, final: Sequence[tuple[str, bytes, int, bool]] = ()) -> None:
        """Publish ``final`` messages (waiting for their acks), then disconnect
        cleanly: the broker sends no will after a clean disconnect."""
        self._stopping = True
        self._stop.set()
        client = self._client
        if client is not None and self._connected.is_set():
            for topic, payload, qos, retain in final:
                with contextlib.suppress(Exception):
                    await self.publish(topic, payload, qos=qos, retain=retain, wait=True)
            client.disconnect()
            # Let the DISCONNECT packet go out before the socket closes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 2.0)
        self._teardown_socket()
        self._lost.set()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (as a crash would): the will fires."""
        self._stopping = True
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._teardown_socket()
        self._lost.set()

    # ---- connection ------------------------------------------------------------------

    def _make_client(self, protocol: str) -> paho.Client:
        opts = self.options
        client = (_BufferedClient if _PAHO_FITS else _Client)(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=paho.MQTTv5 if protocol == "5" else paho.MQTTv311,
            clean_session=None if protocol == "5" else not opts.persistent,
        )
        client.max_queued_messages_set(opts.max_queued)
        client.enable_logger(_PAHO_LOG)
        if isinstance(getattr(client, "_on_message_filtered", None), MQTTMatcher):
            client._on_message_filtered = _Filters()  # type: ignore[no-untyped-call]  # see _Filters
        if opts.username is not None:
            client.username_pw_set(opts.username, opts.password)
        if opts.tls is not None:
            try:
                client.tls_set(ca_certs=opts.tls.ca, certfile=opts.tls.cert, keyfile=opts.tls.key)
            except (OSError, ssl.SSLError) as exc:
                files = ", ".join(f for f in (opts.tls.ca, opts.tls.cert, opts.tls.key) if f)
                raise TlsCertificateError(
                    f"TLS: cannot load {files or 'the system CA store'}: {exc}"
                ) from None
            if opts.tls.insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_message = self._cb_message
        if isinstance(client, _BufferedClient):
            client.on_plain_message = self._cb_plain_message
        client.on_publish = self._cb_publish
        client.on_subscribe = self._cb_subscribe
        client.on_socket_open = self._cb_socket_open
        client.on_socket_close = self._cb_socket_close
        client.on_socket_register_write = self._cb_register_write
        client.on_socket_unregister_write = self._cb_unregister_write
        return client

    async def _connect_once(self, protocol: str) -> None:
        assert self._loop is not None
        client = self._make_client(protocol)
        will = self._will() if self._will else None
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client = client
        self._connected.clear()
        self._lost.clear()
        self._connack = self._loop.create_future()
        opts = self.options
        # connect() resolves the name and does the TCP/TLS handshake: keep it off the loop.
        await asyncio.wait_for(
            self._loop.run_in_executor(None, self._blocking_connect, client),
            opts.connect_timeout,
        )
        # In auto mode an MQTT 5 CONNECT gets a shorter wait (see _NoConnack).
        wait = (
            min(opts.connect_timeout, 3.0)
            if opts.protocol == "auto" and protocol == "5"
            else opts.connect_timeout
        )
        try:
            reason = await asyncio.wait_for(asyncio.shield(self._connack), wait)
        except TimeoutError:
            self._teardown_socket()
            raise _NoConnack("no CONNACK from broker") from None
        if reason != "Success":
            self._teardown_socket()
            if reason == "Unsupported protocol version":
                raise _ProtocolRefused(reason)
            if reason == _CLOSED_BEFORE_CONNACK:
                raise _NoConnack(reason)
            if reason in _FATAL_REASONS:
                raise ConnectionRefusedFatal(
                    f"broker {opts.host}:{opts.port} refused the connection: {reason}"
                    " (check username, password and ACL)"
                )
            raise _ConnectFailed(reason)
        self.protocol_in_use = protocol
        self.connects += 1
        self.last_error = None
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending_subs.clear()
        if opts.subscriptions:
            self._send_subscribe(client, list(opts.subscriptions))
            self.counters["subscribed"] += len(opts.subscriptions)
            log.debug("subscribe %s", ", ".join(f for f, _ in opts.subscriptions))
        self._connected.set()
        log.info("connected to %s:%s (MQTT %s)", opts.host, opts.port, protocol)
        if self._on_connect is not None:
            try:
                await self._on_connect()
            except Exception:
                log.exception("on_connect handler failed")

    def _send_subscribe(self, client: paho.Client, filters: list[tuple[str, int]]) -> None:
        _, mid = client.subscribe(filters)
        if mid is not None:
            self._pending_subs[mid] = filters

    def _cb_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any
    ) -> None:
        """A refused subscription is sent again later: a NATS cluster refuses new QoS 1
        subscriptions for seconds after one of its nodes died (docs/scaling.md), and an
        agent that silently lacks its command subscription is deaf."""
        filters = self._pending_subs.pop(mid, [])
        failed = [f for f, r in zip(filters, reasons, strict=False) if getattr(r, "is_failure", False)]
        if not failed or client is not self._client:
            return
        self.counters["refused"] = self.counters.get("refused", 0) + len(failed)
        delay = random.uniform(self.options.backoff_min, 2 * self.options.backoff_min)
        log.warning(
            "broker refused subscription(s) %s; retrying in %.1f s", ", ".join(f for f, _ in failed), delay
        )

        def retry() -> None:
            wanted = [f for f in failed if f in self.options.subscriptions]
            if client is self._client and self._connected.is_set() and wanted:
                self._send_subscribe(client, wanted)

        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay, retry)

    def _blocking_connect(self, client: paho.Client) -> None:
        opts = self.options
        if opts.persistent and client.protocol == paho.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = opts.session_expiry
            client.connect(
                opts.host, opts.port, keepalive=opts.keepalive, clean_start=False, properties=props
            )
        else:
            client.connect(opts.host, opts.port, keepalive=opts.keepalive)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    def _teardown_socket(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if self._sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock)
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._sock)
        self._sock = None
        self._writer_on = False
        self._connected.clear()
        for fut in self._acks.values():
            if not fut.done():
                fut.cancel()
        self._acks.clear()

    # ---- paho callbacks (all run on the loop thread, except socket_open) ------------------

    def _in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            fn(*args)
        elif not self._loop.is_closed():  # paho's __del__ may close a socket after the loop ended
            self._loop.call_soon_threadsafe(fn, *args)

    def _cb_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._register, client, sock)

    def _register(self, client: paho.Client, sock: socket.socket) -> None:
        assert self._loop is not None
        if client is not self._client:
            return
        self._sock = sock
        self._writer_on = False
        self._loop.add_reader(sock, self._on_readable, client)
        if client.want_write():
            self._write_soon(client)
        self._schedule_misc(client)

    def _schedule_misc(self, client: paho.Client) -> None:
        assert self._loop is not None
        self._misc = self._loop.call_later(1.0, self._on_misc, client)

    def _on_misc(self, client: paho.Client) -> None:
        if client is not self._client:
            return
        rc = client.loop_misc()
        if rc == paho.MQTT_ERR_SUCCESS or self._sock is not None:
            self._schedule_misc(client)

    def _on_readable(self, client: paho.Client) -> None:
        if client is not self._client or self._sock is None:
            return  # a re-armed read (below) after the session let go of this connection
        client.loop_read()  # one packet (paho reads more only while messages are in flight)
        # A burst (a broadcast's receipts, acknowledgements, a retained fleet) leaves more
        # packets waiting, in our read buffer or on the socket: read them here, not one loop
        # turn (and one epoll call) each. Bounded, so that one busy session cannot hold the loop.
        buffered = client.buffered if isinstance(client, _BufferedClient) else _nothing_buffered
        for _ in range(_READ_BURST):
            if client is not self._client or self._sock is None:
                return
            if not buffered() and not _bytes_waiting(self._sock):
                return
            client.loop_read()
        if buffered() and client is self._client and self._sock is not None:
            # The socket may have nothing more to say: the next readable event could be
            # long in coming. The buffer's packets are read on the next turn of the loop.
            assert self._loop is not None
            self._loop.call_soon(self._on_readable, client)

    def _on_writable(self, client: paho.Client) -> None:
        client.loop_write()

    def _flush(self, client: paho.Client) -> None:
        """Write what paho queued since the last flush (a loop callback, never inside
        paho: its callbacks hold a non-reentrant lock); when the socket's buffer is full
        the rest waits for it to be writable."""
        self._flush_pending = False
        if client is not self._client or self._sock is None or self._writer_on or not client.want_write():
            return
        client.loop_write()
        if client.want_write() and self._sock is not None and not self._writer_on:
            # paho still counts the socket as registered for writing (from the packet's
            # queueing), so it will not ask: register here; _cb_unregister_write removes it.
            assert self._loop is not None
            self._loop.add_writer(self._sock, self._on_writable, client)
            self._writer_on = True

    def _cb_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._unregister, client, sock)

    def _unregister(self, client: paho.Client, sock: socket.socket) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)
        if client is self._client:
            self._sock = None
            self._writer_on = False
            self._connected.clear()
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(_CLOSED_BEFORE_CONNACK)
            self._lost.set()

    def _cb_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho queued a packet (and will not call again until it wrote everything).
        self._in_loop(self._write_soon, client)

    def _write_soon(self, client: paho.Client) -> None:
        if client is self._client and not self._flush_pending:
            assert self._loop is not None
            self._flush_pending = True
            self._loop.call_soon(self._flush, client)

    def _cb_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho wrote everything. Only a socket we registered needs removing (most writes
        # never register it, and remove_writer of an unknown socket formats its repr).
        if self._writer_on:
            self._in_loop(self._remove_writer, sock)

    def _remove_writer(self, sock: socket.socket) -> None:
        assert self._loop is not None
        self._writer_on = False
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)

    def _cb_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self.session_present = bool(getattr(flags, "session_present", False))
            self._connack.set_result(str(reason))

    def _cb_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if client is self._client:
            if str(reason) == "Session taken over":
                self.taken_over += 1
            self._connected.clear()
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(str(reason))
            self._lost.set()

    def _cb_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Only publish(wait=True) registers a future; it checks is_published() right
        # after registering, and both run on the loop thread, so no ack is missed.
        if getattr(reason, "is_failure", False):
            # MQTT 5 only (3.1.1 has no reason): mosquitto drops a publish its ACL denies.
            log.warning("broker refused publish #%d: %s (check the broker's ACL)", mid, reason)
        fut = self._acks.get(mid)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _cb_plain_message(self, topic: str, payload: bytes, retain: bool, qos: int) -> None:
        """A message without MQTT 5 properties, as :class:`_BufferedClient` delivers it."""
        self._deliver(MqttMessage(topic, payload, retain, qos))

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        response_topic = correlation = None
        user: tuple[tuple[str, str], ...] = ()
        props = getattr(msg, "properties", None)
        if props is not None:
            # paho sets only the properties a packet carries, as instance attributes: a
            # dict lookup, not getattr() raising and catching AttributeError twice a message.
            present = props.__dict__
            response_topic = present.get("ResponseTopic")
            correlation = present.get("CorrelationData")
            pairs = present.get("UserProperty")
            if pairs:
                user = tuple((str(k), str(v)) for k, v in pairs)
        payload = msg.payload
        self._deliver(
            MqttMessage(
                msg.topic,
                payload if type(payload) is bytes else bytes(payload),
                bool(msg.retain),
                msg.qos,
                response_topic,
                correlation,
                user,
            )
        )

    def _deliver(self, message: MqttMessage) -> None:
        """Count ``message`` and hand it to ``on_message`` (paho's path and the plain one)."""
        counters = self.counters
        counters["received"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("receive #%d %s (%d bytes)", counters["received"], message.topic, len(message.payload))
        try:
            self._on_message(message)
        except Exception:
            log.exception("message handler failed for %s", message.topic)


_PAHO_LOG = logging.getLogger("devfleet.mqtt.paho")


class _Client(paho.Client):
    """paho's client, minus the cost of its per-packet DEBUG lines when nobody reads them.

    paho passes every packet sent and received (five or six a command on an agent) to
    its logger's ``log()``: a property, a table lookup and ``Logger.log`` each time,
    most of which ends in "not enabled". Here DEBUG lines stop at one check of the
    client's logger (``devfleet.mqtt.paho``; level changes at run time count) unless an
    ``on_log`` callback is set; everything else
    goes on to paho's own code. Should paho rename its ``_easy_log``, this override
    goes unused and paho logs as before.
    """

    def _easy_log(self, level: Any, fmt: str, *args: Any) -> None:
        if level == paho.MQTT_LOG_DEBUG and not self._debug_logged():
            return
        super()._easy_log(level, fmt, *args)

    def _debug_logged(self) -> bool:
        """Whether a DEBUG line would reach anyone: an ``on_log`` callback, or the logger."""
        logger = self._logger
        return self.on_log is not None or (logger is not None and logger.isEnabledFor(logging.DEBUG))


class _Filters(MQTTMatcher):
    """paho's table of per-topic callbacks (``message_callback_add``; devfleet adds none).

    paho asks it for every inbound PUBLISH, and its ``iter_match`` builds a recursive
    closure each time: a reference cycle (a function, its cells, the topic's parts)
    that only the cyclic collector frees, six objects a message, the first cause of
    collections on a busy session (issue 20). Empty, it answers at once."""

    def iter_match(self, topic: str) -> Any:
        root = self._root
        if root._content is None and not root._children:
            return ()
        return super().iter_match(topic)  # type: ignore[no-untyped-call]


_READ_BURST = 64
_READ_CHUNK = 65536


# paho 2.1 defines it in properties, 2.2 in exception (and imports it into properties).
_MalformedPacket: type[Exception] = paho_properties.MalformedPacket  # type: ignore[attr-defined]
# paho 2.2 renamed the time of the last bytes received (keepalive's measure).
_LAST_IN = (
    "_last_bytes_received"
    if "_last_bytes_received" in paho.Client.__init__.__code__.co_names
    else "_last_msg_in"
)
_paho_time = paho.time_func


# _BufferedClient works inside paho 2.1/2.2's reader. A paho whose reader lacks any of
# these parts gets paho's own reading (slower, never wrong) instead of an AttributeError.
_PAHO_FITS = all(hasattr(paho.Client, m) for m in (
    "_handle_publish", "_sock_recv", "_packet_read", "_packet_handle", "_send_puback", "_easy_log"
)) and {"_in_packet", "_in_callback_mutex", "_msgtime_mutex", "_manual_ack", "_protocol", "_logger", "_sock"} <= set(
    paho.Client.__init__.__code__.co_names
)  # fmt: skip


def _nothing_buffered() -> bool:
    return False


class _BufferedClient(_Client):
    """paho's client, reading the socket in chunks (issue 20: the console's discovery).

    paho reads each packet with three or more ``recv`` calls (the first byte, the
    remaining length byte by byte, the rest), each a system call, and handles it through
    its own per-packet bookkeeping. Here :meth:`_sock_recv` reads up to 64 KiB at once and
    serves paho's small reads from what it got; :meth:`_packet_read` hands a packet that is
    whole in that buffer straight to paho's handler. A packet split across two reads (or a
    socket that is not a plain or TLS socket) takes paho's own path over the same buffer,
    which keeps its state between reads as it always did.

    What the buffer holds is invisible to the event loop: whoever reads must call
    :meth:`loop_read` again while :meth:`buffered` says so (``MqttClient._on_readable``).
    Everything else (writing, TLS, closing) is paho's, on the real socket.

    A PUBLISH at QoS 0 or 1 without MQTT 5 properties (the retained burst's every
    message) goes to :attr:`on_plain_message` as ``(topic, payload, retain, qos)``: paho
    would build a Properties object (some 30 attribute probes), an MQTTMessage, and take
    two locks for it. Anything else (QoS 2, properties, a topic that is not UTF-8, paho's
    debug log on, per-topic callbacks) is paho's own ``_handle_publish``.
    """

    _rbuf: bytes = b""
    _rpos: int = 0
    _rsock: Any = None
    on_plain_message: Callable[[str, bytes, bool, int], None] | None = None

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self.on_plain_message = None  # paho's matching of per-topic callbacks from now on
        super().message_callback_add(sub, callback)

    def _handle_publish(self) -> MQTTErrorCode:
        deliver = self.on_plain_message
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet: bytes | bytearray = self._in_packet["packet"]
        if deliver is None or qos == 2 or len(packet) < 3 or self._debug_logged():
            return super()._handle_publish()
        length = packet[0] << 8 | packet[1]
        end = 2 + length
        mid = 0
        if qos:
            if len(packet) < end + 2:
                return super()._handle_publish()  # malformed: paho says so
            mid = packet[end] << 8 | packet[end + 1]
            end += 2
        if self._protocol == paho.MQTTv5:
            if len(packet) <= end or packet[end] != 0:
                return super()._handle_publish()  # properties: paho reads them
            end += 1
        if length == 0 or len(packet) < end:
            return super()._handle_publish()  # an empty topic, or malformed: paho says so
        try:
            topic = packet[2 : 2 + length].decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        payload = packet[end:]
        if type(payload) is not bytes:
            payload = bytes(payload)
        with self._in_callback_mutex:
            deliver(topic, payload, bool(header & 0x01), qos)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def buffered(self) -> bool:
        """Whether bytes read from the socket wait in the buffer (for the current socket)."""
        return self._rpos < len(self._rbuf) and self._rsock is self._sock

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos < len(buf) and self._rsock is self._sock:
            end = pos + bufsize
            self._rpos = end
            return buf[pos:end]
        sock = self._sock
        if type(sock) is not socket.socket and not isinstance(sock, ssl.SSLSocket):
            return super()._sock_recv(bufsize)  # a websocket, or none: paho's own way
        data = super()._sock_recv(max(bufsize, _READ_CHUNK))  # raises as paho expects
        if len(data) <= bufsize:
            self._rbuf = b""
            self._rpos = 0
            return data
        self._rbuf = data
        self._rpos = bufsize
        self._rsock = sock
        return data[:bufsize]

    def _packet_read(self) -> MQTTErrorCode:
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        if pos >= end or self._in_packet["command"] != 0 or self._rsock is not self._sock:
            return super()._packet_read()
        command = buf[pos]
        # The remaining length: up to four bytes, seven bits each, low first.
        i = pos + 1
        length = 0
        shift = 0
        while True:
            if i >= end or shift > 21 or command == 0:
                return super()._packet_read()  # not whole here, or malformed: paho's way
            byte = buf[i]
            i += 1
            length |= (byte & 127) << shift
            shift += 7
            if not byte & 128:
                break
        if i + length > end:
            return super()._packet_read()
        self._rpos = i + length
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": length,
            "packet": buf[i : i + length],  # type: ignore[typeddict-item]  # paho's decoders take bytes too
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except _MalformedPacket as exc:
            self._easy_log(LogLevel.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(),
            "to_process": 0,
            "pos": 0,
        }
        with self._msgtime_mutex:
            setattr(self, _LAST_IN, _paho_time())
        return rc


_FIONREAD_BUF = bytearray(4)
if sys.platform != "win32":
    import fcntl
    import termios


def _bytes_waiting(sock: Any) -> bool:
    """Whether a read would find data now (TLS: decrypted bytes held, or bytes on the
    socket); False when it cannot tell."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if sys.platform == "win32":
        return False  # no FIONREAD here: one packet per readable event, as paho reads
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, _FIONREAD_BUF)
    except (OSError, ValueError, AttributeError):
        return False
    return any(_FIONREAD_BUF)  # a count of bytes, in native order: only zero matters


class _ConnectFailed(Exception):
    pass


class _ProtocolRefused(Exception):
    pass


class _NoConnack(_ConnectFailed):
    """The broker accepted TCP but never answered the CONNECT (or closed first)."""
