"""Time as a dependency, so back-off and health cycles are tested without waiting.

The supervisor and the actors never call :func:`time.monotonic` or
:func:`asyncio.sleep` directly; they are handed a :class:`Clock`. Production
uses :class:`SystemClock`; tests use :class:`FakeClock`, whose ``sleep`` returns
at once (after yielding to the event loop), moves virtual time forward, and
records the duration asked for, so a test can assert the exact back-off
sequence (3, 6, 12, 24, 48, 60) in milliseconds of real time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock", "wait_event"]


@runtime_checkable
class Clock(Protocol):
    """The time source the supervisor and actors use."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps on the wire)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time`, :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        """See :meth:`Clock.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """See :meth:`Clock.time`."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """See :meth:`Clock.sleep`."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A virtual clock for tests.

    ``sleep(s)`` records ``s`` in :attr:`sleeps`, advances virtual time by ``s``
    and yields to the event loop once, so other tasks still run but nobody waits.

    Args:
        start: the initial wall-clock value returned by :meth:`time`.

    Attributes:
        sleeps: every duration passed to :meth:`sleep`, in call order.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._offset = 0.0
        self._start = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Virtual seconds elapsed since the clock was made."""
        return self._offset

    def time(self) -> float:
        """``start`` plus the virtual seconds elapsed."""
        return self._start + self._offset

    def advance(self, seconds: float) -> None:
        """Move virtual time forward without recording a sleep."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._offset += seconds

    async def sleep(self, seconds: float) -> None:
        """Record ``seconds``, advance virtual time, and yield to the loop once."""
        self.sleeps.append(seconds)
        self._offset += max(0.0, seconds)
        await asyncio.sleep(0)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set, at most ``seconds``; True if it is set.

    Cancellation always reaches the caller. ``asyncio.wait_for`` on Python 3.11
    returns the inner result when the event is set in the same loop turn as the
    waiting task is cancelled, so a ``while True`` loop around it never ends
    (CPython gh-86296, fixed in 3.12 by building ``wait_for`` on
    :func:`asyncio.timeout`, which this uses).
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
