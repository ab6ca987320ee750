"""A serial transport over pyserial, and an asyncio client that never blocks the loop.

:class:`SerialTransport` is synchronous: it writes a command and reads until
the protocol says the answer is complete, or the deadline passes. It opens the
port with ``serial.serial_for_url``, so device paths, pty paths, ``loop://`` and
``socket://host:port`` all work. pyserial is imported on first open, never at
import time.

:class:`ProjectorClient` runs each exchange in a worker thread
(``asyncio.to_thread``) under an asyncio lock, one exchange at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from .errors import ProjectorTimeout, ProtocolError, TransportError
from .protocols import Op, Protocol, Reply, Request

__all__ = ["MAX_ANSWER", "ProjectorClient", "SerialTransport"]

MAX_ANSWER = 4096
"""Answers longer than this are garbage, not a projector talking."""

_READ_SLICE = 0.02


class SerialTransport:
    """One serial port, opened lazily, reopened after a failure.

    Args:
        url: a device path or pyserial URL (``/dev/ttyUSB0``, ``loop://``, a pty path).
        baudrate: line speed.
        write_timeout: seconds a write may block.
    """

    def __init__(self, url: str, *, baudrate: int = 9600, write_timeout: float = 1.0) -> None:
        self.url = url
        self.baudrate = baudrate
        self.write_timeout = write_timeout
        self._port: Any = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port (a no-op when open); TransportError on failure."""
        if self._port is not None:
            return
        import serial  # lazy: pyserial is only needed once we talk to hardware

        try:
            self._port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                timeout=_READ_SLICE,
                write_timeout=self.write_timeout,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {self.url}: {exc}") from None

    def close(self) -> None:
        """Close the port; idempotent."""
        port, self._port = self._port, None
        if port is not None:
            # closing a vanished device can fail; there is nothing left to do then
            with contextlib.suppress(Exception):
                port.close()

    def exchange(self, payload: bytes, complete: Callable[[bytes], bool], timeout: float) -> bytes:
        """Send ``payload``, read until ``complete(buffer)`` or ``timeout`` seconds.

        Stale bytes (a late answer to an earlier command) are discarded first.

        Raises:
            ProjectorTimeout: no complete answer in time (the partial bytes are in the message).
            TransportError: the port cannot be opened or failed.
            ProtocolError: the answer grew past :data:`MAX_ANSWER` bytes.
        """
        self.open()
        port = self._port
        deadline = time.monotonic() + timeout
        buffer = bytearray()
        try:
            port.reset_input_buffer()
            port.write(payload)
            port.flush()
            while True:
                waiting = port.in_waiting
                chunk = port.read(waiting if waiting > 0 else 1)
                if chunk:
                    buffer += chunk
                    if complete(bytes(buffer)):
                        return bytes(buffer)
                    if len(buffer) > MAX_ANSWER:
                        raise ProtocolError(f"answer longer than {MAX_ANSWER} bytes")
                if time.monotonic() >= deadline:
                    got = f"partial answer {bytes(buffer)[:40]!r}" if buffer else "no answer"
                    raise ProjectorTimeout(
                        f"projector on {self.url}: {got} to {payload.strip()!r} within {timeout:g} s"
                    )
        except (ProjectorTimeout, ProtocolError):
            raise
        except Exception as exc:  # serial.SerialException, OSError (EIO on a vanished pty)
            self.close()
            raise TransportError(f"serial port {self.url} failed: {exc}") from None


class ProjectorClient:
    """Asynchronous request/reply over a :class:`SerialTransport`.

    Args:
        protocol: the codec.
        transport: the serial port.
        timeout: seconds to wait for an ordinary answer.
        power_timeout: seconds to wait for the answer to power on/off (some
            projectors answer only once the lamp is lit).
    """

    def __init__(
        self,
        protocol: Protocol,
        transport: SerialTransport,
        *,
        timeout: float = 2.0,
        power_timeout: float = 45.0,
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.timeout = timeout
        self.power_timeout = power_timeout
        self._lock = asyncio.Lock()

    async def call(self, request: Request) -> Reply:
        """Send one request and decode its answer (see :meth:`SerialTransport.exchange`)."""
        payload = self.protocol.encode(request)
        timeout = self.power_timeout if request.op in (Op.POWER_ON, Op.POWER_OFF) else self.timeout

        def done(buffer: bytes) -> bool:
            return self.protocol.complete(payload, buffer)

        async with self._lock:
            raw = await asyncio.to_thread(self.transport.exchange, payload, done, timeout)
        return self.protocol.decode(request, raw)

    async def close(self) -> None:
        """Close the port once no exchange is running."""
        async with self._lock:
            self.transport.close()
