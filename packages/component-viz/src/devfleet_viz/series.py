"""Bounded, downsampled time series: what the view keeps per telemetry metric.

A :class:`Series` holds at most ``capacity`` points, each the mean of the samples
that fell into one ``step``-second bucket (a burst of samples within a bucket
becomes one point). Memory per series is fixed however long the view runs (two
``array('d')`` rings: 16 bytes a point, so 300 points of 3,000 series take
~14 MB); the oldest points are overwritten. The same idea as RRDtool's
consolidated archives, cut down to one archive.
"""

from __future__ import annotations

from array import array

__all__ = ["Series"]


class Series:
    """A ring buffer of ``(ts, value)`` points, one per ``step`` seconds.

    Args:
        capacity: points kept (older ones are overwritten).
        step: bucket width in seconds; samples in the same bucket are averaged.

    Raises:
        ValueError: ``capacity`` < 1 or ``step`` <= 0.
    """

    __slots__ = ("_count", "_head", "_sum", "_ts", "_val", "capacity", "step")

    def __init__(self, capacity: int = 300, step: float = 1.0) -> None:
        if capacity < 1 or step <= 0:
            raise ValueError("capacity must be >= 1 and step > 0")
        self.capacity = capacity
        self.step = step
        self._ts = array("d")
        self._val = array("d")
        self._head = 0  # index of the oldest point once the ring is full
        self._sum = 0.0
        self._count = 0

    def _last(self) -> int:
        return (self._head - 1) % len(self._ts)

    def add(self, ts: float, value: float) -> tuple[float, float] | None:
        """Add one sample; return the point it opened or changed, ``(bucket_ts, mean)``.

        A sample older than the newest bucket is dropped (``None``): the series only
        moves forward, so a client that has seen a point never needs it resent.
        """
        bucket = ts - ts % self.step
        if self._ts:
            last = self._last()
            if bucket < self._ts[last]:
                return None
            if bucket == self._ts[last]:
                self._sum += value
                self._count += 1
                self._val[last] = self._sum / self._count
                return (bucket, self._val[last])
        self._sum, self._count = value, 1
        if len(self._ts) < self.capacity:
            self._ts.append(bucket)
            self._val.append(value)  # filling: the oldest stays at index 0
        else:
            self._ts[self._head] = bucket
            self._val[self._head] = value
            self._head = (self._head + 1) % self.capacity
        return (bucket, value)

    def points(self, last: int | None = None) -> list[list[float]]:
        """The kept points, oldest first (the newest ``last`` when given), as ``[ts, value]``."""
        n = len(self._ts)
        order = [(self._head + i) % n for i in range(n)] if n == self.capacity else list(range(n))
        if last is not None:
            order = order[-last:] if last > 0 else []
        return [[self._ts[i], self._val[i]] for i in order]

    def __len__(self) -> int:
        return len(self._ts)
