"""Host metrics (CPU, memory, disk percentages) sampled with psutil.

psutil's ``cpu_percent(None)`` measures since the previous call and never
blocks, so sampling costs microseconds and idle CPU stays near zero.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

__all__ = ["Sampler"]


class Sampler:
    """Samples the host; the first CPU figure is primed at construction."""

    def __init__(self, disk_path: str = "/") -> None:
        import psutil  # lazily: psutil costs ~20 ms to import on a Pi Zero

        self._psutil = psutil
        self._disk_path = disk_path
        self._process = psutil.Process(os.getpid())
        psutil.cpu_percent(None)
        self._process.cpu_percent(None)

    def sample(self, metrics: tuple[str, ...] | list[str] = ("cpu", "memory", "disk")) -> dict[str, float]:
        ps = self._psutil
        out: dict[str, float] = {}
        if "cpu" in metrics:
            out["cpu"] = round(float(ps.cpu_percent(None)), 1)
        if "memory" in metrics:
            out["memory"] = round(float(ps.virtual_memory().percent), 1)
        if "disk" in metrics:
            with contextlib.suppress(OSError):
                out["disk"] = round(float(ps.disk_usage(self._disk_path).percent), 1)
        return out

    def agent_usage(self) -> dict[str, Any]:
        """The agent process's own RSS (MB) and CPU percent."""
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            cpu = self._process.cpu_percent(None)
        return {"rss_mb": round(rss / 1_048_576, 1), "cpu": round(float(cpu), 2)}
