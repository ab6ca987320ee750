"""Bridges, their per-bridge queues and statistics, and the byte-budget scheduler.

Each bridge queues at most ``queue_length`` messages (a full queue drops its
oldest message, counted as a drop) and sends at most one message per
``throttle_rate_ms``. One scheduler serves every bridge **round robin**
under a shared token bucket of ``budget_bytes_per_s``: a message is sent only
when the bucket holds its size, and a bridge whose head message does not fit
is skipped, not waited for. So a 10 Hz ``cmd_vel`` of 100 bytes goes out
within a round while a 30 Hz camera topic of ~1 MB messages gets what the
budget leaves (its own queue dropping the oldest frames): the camera can
never starve the control topic. A message larger than the whole bucket
is sent when the bucket is full (so it is rate-limited, not stuck), and one
larger than ``max_bytes`` is never queued (counted as ``oversize``).

This is deficit round robin (Shreedhar & Varghese, SIGCOMM 1995) with the
quantum replaced by a shared token bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bridge", "BridgeStats", "Item", "Scheduler"]

_LATENCIES = 1024  # samples kept per bridge for p50/p99
_RATE_WINDOW = 5.0  # seconds over which the message rate is measured


@dataclass(frozen=True, slots=True)
class Item:
    """One queued message: what to send, its size, and when it originated (epoch s)."""

    payload: Any
    size: int
    origin: float


@dataclass
class BridgeStats:
    """Counters of one bridge, kept across reconfigurations."""

    messages: int = 0
    drops: int = 0
    oversize: int = 0
    errors: int = 0
    last_error: str = ""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCIES))
    sent_times: deque[float] = field(default_factory=deque)

    def sent(self, latency_s: float, now: float) -> None:
        self.messages += 1
        self.latencies.append(latency_s)
        self.sent_times.append(now)

    def rate(self, now: float) -> float:
        """Messages per second over the last few seconds."""
        times = self.sent_times
        while times and times[0] < now - _RATE_WINDOW:
            times.popleft()
        return len(times) / _RATE_WINDOW

    def percentiles(self) -> dict[str, float | None]:
        """``{"p50": ms, "p99": ms}`` of the kept samples (None before the first)."""
        if not self.latencies:
            return {"p50": None, "p99": None}
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"p50": pick(0.50), "p99": pick(0.99)}


class Bridge:
    """One mapping's queue and send function (the component builds them from settings)."""

    def __init__(self, settings: dict[str, Any], send: Callable[[Item], Awaitable[None]]) -> None:
        self.settings = settings
        self.send = send
        self.stats = BridgeStats()
        self.queue: deque[Item] = deque(maxlen=settings["queue_length"])
        self.next_ok = 0.0  # monotonic time the throttle allows the next send
        self.paused = False  # the scheduler skips a paused bridge (mqtt2ros while disconnected)
        self.closer: Callable[[], Any] | None = None

    def retune(self, settings: dict[str, Any]) -> None:
        """Apply changed settings in place, keeping the counters and the newest messages."""
        self.settings = settings
        if self.queue.maxlen != settings["queue_length"]:
            self.queue = deque(self.queue, maxlen=settings["queue_length"])

    def offer(self, item: Item) -> bool:
        """Queue ``item``; returns False (counted) when it exceeds ``max_bytes``."""
        if item.size > self.settings["max_bytes"]:
            self.stats.oversize += 1
            self.stats.last_error = (
                f"message of {item.size} bytes exceeds max_bytes {self.settings['max_bytes']}"
            )
            return False
        if len(self.queue) == self.queue.maxlen:
            self.stats.drops += 1  # the deque drops its oldest on append
        self.queue.append(item)
        return True

    def error(self, text: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = text[:300]

    def ready(self, now: float) -> bool:
        return bool(self.queue) and not self.paused and now >= self.next_ok

    def to_state(self, now: float) -> dict[str, Any]:
        s = self.settings
        st = self.stats
        return {
            "direction": s["direction"],
            "ros_topic": s["ros_topic"],
            "ros_type": s["ros_type"],
            "mqtt_topic": s["mqtt_topic"],
            "rate_hz": round(st.rate(now), 2),
            "messages": st.messages,
            "drops": st.drops,
            "oversize": st.oversize,
            "errors": st.errors,
            "last_error": st.last_error,
            "queued": len(self.queue),
            "latency_ms": st.percentiles(),
            "max_bytes": s["max_bytes"],
            "throttle_rate_ms": s["throttle_rate_ms"],
            "queue_length": s["queue_length"],
            "bulk": s["bulk"],
        }


class Scheduler:
    """Sends queued messages of every bridge, round robin, under one byte budget."""

    def __init__(self, budget_bytes_per_s: int, log: Any) -> None:
        self.budget = budget_bytes_per_s
        self.tokens = float(budget_bytes_per_s)
        self.log = log
        self.bridges: list[Bridge] = []
        self.sent_bytes: deque[tuple[float, int]] = deque()
        self._stamp = time.monotonic()
        self._wake = asyncio.Event()
        self._turn = 0

    def set_budget(self, budget: int) -> None:
        self.budget = budget
        self.tokens = min(self.tokens, float(budget))

    def wake(self) -> None:
        self._wake.set()

    def bytes_per_s(self, now_mono: float) -> float:
        while self.sent_bytes and self.sent_bytes[0][0] < now_mono - _RATE_WINDOW:
            self.sent_bytes.popleft()
        return sum(n for _, n in self.sent_bytes) / _RATE_WINDOW

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.budget), self.tokens + (now - self._stamp) * self.budget)
        self._stamp = now

    async def run(self) -> None:
        """Serve the bridges until cancelled."""
        while True:
            now = time.monotonic()
            self._refill(now)
            bridge = self._next(now)
            if bridge is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_wait(now))
                continue
            item = bridge.queue.popleft()
            self.tokens -= item.size
            bridge.next_ok = now + bridge.settings["throttle_rate_ms"] / 1000
            self.sent_bytes.append((now, item.size))
            try:
                await bridge.send(item)
            except Exception as exc:  # a send that fails is counted, never fatal to the loop
                bridge.error(f"send failed: {type(exc).__name__}: {exc}")
                self.log.warning("bridge %s: %s", bridge.settings["ros_topic"], bridge.stats.last_error)
            else:
                bridge.stats.sent(time.time() - item.origin, now)

    def _next(self, now: float) -> Bridge | None:
        n = len(self.bridges)
        full = self.tokens >= self.budget
        for i in range(n):
            bridge = self.bridges[(self._turn + i) % n]
            if not bridge.ready(now):
                continue
            size = bridge.queue[0].size
            if size <= self.tokens or full:
                self._turn = (self._turn + i + 1) % n
                return bridge
        return None

    def _idle_wait(self, now: float) -> float | None:
        """Seconds until a queued message may become sendable; None: wait for a wake."""
        waits = []
        for bridge in self.bridges:
            if not bridge.queue or bridge.paused:
                continue
            wait = max(0.0, bridge.next_ok - now)
            need = min(bridge.queue[0].size, self.budget) - self.tokens
            if need > 0:
                wait = max(wait, need / self.budget)
            waits.append(wait)
        return max(0.001, min(waits)) if waits else None
