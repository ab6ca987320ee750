"""The chunked read path (``_BufferedClient``): the same bytes give the same messages and
the same acknowledgements as paho's own client, wherever the reads split them; a
session reads a burst to its end, plain and over TLS (real mosquitto)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devfleet_base.mqtt import (
    ClientOptions,
    MqttClient,
    MqttMessage,
    TlsOptions,
    _BufferedClient,
    _bytes_waiting,
)

# ---- the same bytes through both clients --------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 127, n >> 7
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def _publish(
    topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, mid: int = 1, v5: bool = True,
    correlation: bytes | None = None, user: list[tuple[str, str]] | None = None,
) -> bytes:  # fmt: skip
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if correlation is not None:
            props.CorrelationData = correlation
        if user:
            props.UserProperty = user
        body += props.pack()  # type: ignore[no-untyped-call]
    body += payload
    return bytes([0x30 | qos << 1 | int(retain)]) + _varint(len(body)) + body


def _pubrel(mid: int) -> bytes:
    return bytes([0x62, 2]) + struct.pack("!H", mid)


class _Wire:
    """A client of either kind reading one end of a socket pair; what it delivers and
    what it writes back (acknowledgements) are recorded."""

    def __init__(self, cls: type[paho.Client], v5: bool) -> None:
        self.client = cls(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5 if v5 else paho.MQTTv311
        )
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.client._sock = self.ours  # as connect() leaves it
        self.got: list[tuple[Any, ...]] = []
        self.client.on_message = self._paho
        if isinstance(self.client, _BufferedClient):
            self.client.on_plain_message = lambda t, p, r, q: self.got.append((t, p, r, q, None, ()))

    def _paho(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        present = msg.properties.__dict__ if msg.properties is not None else {}
        user = tuple(present.get("UserProperty", ()))
        self.got.append(
            (msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, present.get("CorrelationData"), user)
        )

    def feed(self, chunk: bytes) -> None:
        self.theirs.sendall(chunk)
        # As MqttClient._on_readable reads: while the buffer or the socket holds bytes.
        client = self.client
        while (isinstance(client, _BufferedClient) and client.buffered()) or _bytes_waiting(self.ours):
            client.loop_read()

    def acks(self) -> bytes:
        self.theirs.setblocking(False)
        out = b""
        try:
            while chunk := self.theirs.recv(65536):
                out += chunk
        except BlockingIOError:
            pass
        self.theirs.setblocking(True)
        return out

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


def _both(stream: bytes, cuts: list[int], v5: bool) -> tuple[_Wire, _Wire]:
    """paho's client and ours, fed ``stream`` in the chunks ``cuts`` makes."""
    wires = (_Wire(paho.Client, v5), _Wire(_BufferedClient, v5))
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    for wire in wires:
        for a, b in itertools.pairwise(bounds):
            wire.feed(stream[a:b])
    return wires


_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")  # MQTT strings
_packet = st.builds(
    lambda topic, payload, qos, retain, mid, corr, user: (topic, payload, qos, retain, mid, corr, user),
    st.text(_text, min_size=1, max_size=40),
    st.binary(max_size=600),
    st.integers(0, 2),
    st.booleans(),
    st.integers(1, 65535),
    st.none() | st.binary(max_size=16),
    st.none()
    | st.lists(st.tuples(st.text(_text, max_size=8), st.text(_text, max_size=8)), min_size=1, max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_packet, min_size=1, max_size=12), st.lists(st.integers(0, 8000), max_size=10), st.booleans())
def test_any_split_gives_what_paho_gives(packets: list[Any], cuts: list[int], v5: bool) -> None:
    stream = b""
    for topic, payload, qos, retain, mid, corr, user in packets:
        if not v5:
            corr = user = None
        stream += _publish(
            topic, payload, qos=qos, retain=retain, mid=mid, v5=v5, correlation=corr, user=user
        )
        if qos == 2:
            stream += _pubrel(mid)
    theirs, ours = _both(stream, cuts, v5)
    try:
        assert ours.got == theirs.got
        assert len(ours.got) >= sum(1 for p in packets if p[2] < 2)
        assert ours.acks() == theirs.acks()  # PUBACK, PUBREC, PUBCOMP alike
        assert not ours.client.buffered()
    finally:
        theirs.close()
        ours.close()


@pytest.mark.parametrize("v5", [True, False])
def test_packets_across_chunk_borders_and_a_large_one(v5: bool) -> None:
    big = bytes(range(256)) * 400  # 102,400 bytes: more than one read of the socket
    stream = b"".join(
        [
            _publish("a/1", b"x" * 200, qos=1, mid=7, v5=v5),
            _publish("a/big", big, retain=True, v5=v5),  # three bytes of remaining length
            _publish("a/\u00e9", b"", v5=v5),
            *(_publish(f"n/{i}/status", b'{"s":1}', retain=True, v5=v5) for i in range(300)),
        ]
    )
    # Every border of the first few packets: the command byte, inside the length, inside the topic.
    for cut in (1, 2, 3, 5, 200, 210, 211, 212, 213, 300, 65536, 65537, 100_000):
        theirs, ours = _both(stream, [cut, cut + 65536], v5)
        try:
            assert [m[:4] for m in ours.got] == [m[:4] for m in theirs.got]
            assert len(ours.got) == 303 and ours.got[1][1] == big
            acks = ours.acks()
            assert acks == theirs.acks() and acks[:1] == b"\x40"  # one PUBACK, alike
        finally:
            theirs.close()
            ours.close()


def test_a_malformed_length_is_paho_s_protocol_error() -> None:
    theirs, ours = _both(b"\x30\xff\xff\xff\xff\x01", [], True)
    try:
        assert ours.client._sock is None and theirs.client._sock is None  # both closed the connection
    finally:
        theirs.close()
        ours.close()


def test_paho_handles_a_publish_when_its_debug_log_or_a_topic_callback_is_on(caplog: Any) -> None:
    stream = _publish("a/b", b"one", qos=1, mid=5)
    wire = _Wire(_BufferedClient, True)
    try:
        wire.client.enable_logger(logging.getLogger("test.paho"))
        with caplog.at_level(logging.DEBUG, logger="test.paho"):
            wire.feed(stream)
        assert wire.got == [("a/b", b"one", False, 1, None, ())]  # through paho's on_message
        assert "Received PUBLISH" in caplog.text
        wire.client.disable_logger()
        filtered: list[str] = []
        wire.client.message_callback_add("a/#", lambda c, u, m: filtered.append(m.topic))
        wire.feed(stream)
        assert filtered == ["a/b"] and len(wire.got) == 1  # paho's per-topic matching
    finally:
        wire.close()


# ---- sessions on a real broker --------------------------------------------------------------


async def _burst(
    broker: Any, prefix: str, n: int, tls: TlsOptions | None, protocol: str
) -> list[MqttMessage]:
    """Publish ``n`` retained messages (every tenth with MQTT 5 properties), then a fresh
    session subscribes and must get all of them: the burst arrives faster than it is read,
    so most of it waits in the session's buffer with nothing more coming on the socket."""

    def options(**kw: Any) -> ClientOptions:
        return ClientOptions(host=broker.host, port=broker.port, tls=tls, protocol=protocol, **kw)

    publisher = MqttClient(options(), on_message=lambda m: None)
    task = asyncio.create_task(publisher.run())
    inbox: list[MqttMessage] = []
    reader = MqttClient(options(subscriptions=[(f"{prefix}/#", 1)]), on_message=inbox.append)
    reader_task: asyncio.Task[None] | None = None
    try:
        await publisher.wait_connected(10)
        for i in range(n):
            props = {"correlation": f"c{i}".encode()} if i % 10 == 0 else {}
            assert await publisher.publish(f"{prefix}/{i}", b"p" * 500 + str(i).encode(), qos=1, retain=True,
                                           wait=(i == n - 1), **props)  # fmt: skip
        reader_task = asyncio.create_task(reader.run())
        async with asyncio.timeout(20):
            while len(inbox) < n:
                await asyncio.sleep(0.01)
        return inbox
    finally:
        for session, t in ((reader, reader_task), (publisher, task)):
            await session.close()
            if t is not None:
                await asyncio.wait_for(t, 5)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_session_reads_a_retained_burst_to_its_end(mqtt_broker: Any, protocol: str) -> None:
    prefix = f"buffered/{protocol}"
    inbox = await _burst(mqtt_broker, prefix, 1000, None, protocol)
    assert sorted(m.topic for m in inbox) == sorted(f"{prefix}/{i}" for i in range(1000))
    assert all(m.retain and m.payload.startswith(b"p" * 500) for m in inbox)
    if protocol == "5":
        with_props = {m.topic: m.correlation for m in inbox if m.correlation is not None}
        assert with_props == {f"{prefix}/{i}": f"c{i}".encode() for i in range(0, 1000, 10)}


async def test_a_tls_session_reads_a_retained_burst_to_its_end(mqtt_broker_tls: Any) -> None:
    tls = TlsOptions(ca=str(mqtt_broker_tls.ca_path))
    inbox = await _burst(mqtt_broker_tls, "buffered/tls", 500, tls, "5")
    assert len({m.topic for m in inbox}) == 500
    assert sum(m.correlation is not None for m in inbox) == 50


async def test_a_paho_without_the_reader_parts_is_read_paho_s_way(
    mqtt_broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paho release whose reader lacks the parts the buffered reader works inside gets
    paho's own reading: every message still arrives, with its properties."""
    import devfleet_base.mqtt as mqtt_module

    monkeypatch.setattr(mqtt_module, "_PAHO_FITS", False)
    made: list[type] = []
    original = MqttClient._make_client

    def make(self: MqttClient, protocol: str) -> Any:
        client = original(self, protocol)
        made.append(type(client))
        return client

    monkeypatch.setattr(MqttClient, "_make_client", make)
    inbox = await _burst(mqtt_broker, "unbuffered", 200, None, "5")
    assert made and not any(issubclass(c, mqtt_module._BufferedClient) for c in made)
    assert sorted(m.topic for m in inbox) == sorted(f"unbuffered/{i}" for i in range(200))
    assert sum(m.correlation is not None for m in inbox) == 20
