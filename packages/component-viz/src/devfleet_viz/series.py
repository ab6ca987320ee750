"""Bounded, downsampled time series: what the view keeps per telemetry metric.

A :class:`Series` holds at most ``capacity`` points, each the mean of the samples
that fell into one ``step``-second bucket (a burst of samples within a bucket
becomes one point). Memory per series is fixed however long the view runs; the
oldest points fall off the front. The same idea as RRDtool's consolidated
archives, cut down to one archive.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Series"]


class Series:
    """A ring buffer of ``(ts, value)`` points, one per ``step`` seconds.

    Args:
        capacity: points kept (older ones are dropped).
        step: bucket width in seconds; samples in the same bucket are averaged.
    """

    __slots__ = ("_count", "_points", "_sum", "capacity", "step")

    def __init__(self, capacity: int = 300, step: float = 1.0) -> None:
        if capacity < 1 or step <= 0:
            raise ValueError("capacity must be >= 1 and step > 0")
        self.capacity = capacity
        self.step = step
        self._points: deque[list[float]] = deque(maxlen=capacity)
        self._sum = 0.0
        self._count = 0

    def add(self, ts: float, value: float) -> tuple[float, float] | None:
        """Add one sample; return the point it opened or changed, ``(bucket_ts, mean)``.

        A sample older than the newest bucket is dropped (``None``): the series only
        moves forward, so a client that has seen a point never needs it resent.
        """
        bucket = ts - ts % self.step
        last = self._points[-1] if self._points else None
        if last is not None and bucket < last[0]:
            return None
        if last is not None and bucket == last[0]:
            self._sum += value
            self._count += 1
            last[1] = self._sum / self._count
            return (last[0], last[1])
        self._sum, self._count = value, 1
        self._points.append([bucket, value])
        return (bucket, value)

    def points(self, last: int | None = None) -> list[list[float]]:
        """The kept points, oldest first (the newest ``last`` when given), as ``[ts, value]``."""
        pts = list(self._points)
        if last is not None:
            pts = pts[-last:] if last > 0 else []
        return [[p[0], p[1]] for p in pts]

    def __len__(self) -> int:
        return len(self._points)
