"""Ship the agent's log records over MQTT in batches.

Records wait in a bounded buffer (newest kept, oldest dropped and counted)
while the broker is away; a batch leaves the buffer only after the broker
acknowledged it (QoS 1), so nothing acknowledged is lost and nothing
unacknowledged is forgotten before the buffer overflows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .clock import wait_event

__all__ = ["LogShipper"]

# The transport's own records are not shipped: shipping them would log again.
_QUIET_PREFIXES = ("devfleet.mqtt",)


class LogShipper(logging.Handler):
    """A logging handler plus the task that publishes its batches.

    Args:
        publish: ``await publish(batch_payload) -> bool`` (True once acknowledged).
        node: the node name, carried in every batch.
    """

    def __init__(self, publish: Callable[[dict[str, Any]], Awaitable[bool]], node: str) -> None:
        super().__init__(logging.INFO)
        self._publish = publish
        self.node = node
        self.enabled = True
        self.batch_size = 50
        self.flush_interval = 2.0
        self._buffer: deque[dict[str, Any]] = deque(maxlen=1000)
        self._seq = 0
        self.dropped = 0
        self.shipped = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def configure(self, section: dict[str, Any]) -> None:
        """Apply the node config's ``logs`` section."""
        self.enabled = bool(section["enabled"])
        self.setLevel(section["level"])
        self.batch_size = int(section["batch_size"])
        self.flush_interval = float(section["flush_interval"])
        if self._buffer.maxlen != section["buffer"]:
            self._buffer = deque(self._buffer, maxlen=int(section["buffer"]))

    def emit(self, record: logging.LogRecord) -> None:
        if not self.enabled or record.name.startswith(_QUIET_PREFIXES):
            return
        try:
            msg = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                msg = f"{msg}\n{logging.Formatter().formatException(record.exc_info)}"
        except Exception:
            msg = str(record.msg)
        self._seq += 1
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(
            {
                "seq": self._seq,
                "ts": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                "msg": msg[:8192],
            }
        )
        if len(self._buffer) >= self.batch_size and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def run(self) -> None:
        """Publish batches until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            await wait_event(self._wake, self.flush_interval)
            self._wake.clear()
            await self.ship()

    async def ship(self) -> bool:
        """Send everything buffered, batch by batch; stop at the first failure."""
        while self._buffer:
            batch = list(self._buffer)[: self.batch_size]
            dropped = self.dropped
            payload = {"node": self.node, "records": batch, "dropped": dropped}
            if not await self._publish(payload):
                return False
            last = batch[-1]["seq"]
            while self._buffer and self._buffer[0]["seq"] <= last:
                self._buffer.popleft()
            self.shipped += len(batch)
            self.dropped -= dropped  # reported once
        return True
