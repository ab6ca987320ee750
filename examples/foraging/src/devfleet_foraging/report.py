"""A run's numbers: the per-tick CSV (as ARGoS's loop functions log it) and the end summary."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import IO, Any

from .arena import CSV_HEADER, Arena, TickMetrics

__all__ = ["MetricsCsv", "percentile", "summarize", "summary_lines"]


class MetricsCsv:
    """Writes one row per tick: ``tick, clock, walking, resting, collected, energy``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_HEADER)

    def __call__(self, row: TickMetrics) -> None:
        self._writer.writerow(row.row())

    def close(self) -> None:
        self._file.close()


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(
    arena: Arena,
    rows: list[TickMetrics],
    *,
    start_tick: int,
    command_latencies: list[float],
    tick_latencies: list[float],
    skipped: int,
) -> dict[str, Any]:
    """The end-of-run summary.

    Args:
        arena: the world after the run.
        rows: every tick's metrics.
        start_tick: the tick the operator's ``start`` took effect (the window starts there).
        command_latencies: seconds from sending an operator command to each node's receipt.
        tick_latencies: seconds from a tick's ``/odom`` to the robot's ``cmd_vel``.
        skipped: ticks a robot did not answer before the next one.

    Returns:
        ``items``, ``minutes``, ``items_per_minute``, ``net_energy``, ``items_per_robot``,
        ``active_share`` (walking / online robot-ticks), ``resting_share``, command and
        tick latencies in ms (p50, p99), ``skipped_ticks``, ``lost``, ``respawned_from_lost``.
    """
    window = [r for r in rows if r.tick > start_tick]
    minutes = len(window) * arena.config.dt / 60
    before = next((r.collected for r in reversed(rows) if r.tick <= start_tick), 0)
    items = arena.collected - before
    walking = sum(r.walking for r in window)
    resting = sum(r.resting for r in window)
    robot_ticks = max(1, walking + resting)

    def ms(values: list[float], q: float) -> float | None:
        p = percentile(values, q)
        return None if p is None else round(p * 1000, 2)

    return {
        "robots": len(arena.robots),
        "seed": arena.seed,
        "items": items,
        "minutes": round(minutes, 3),
        "items_per_minute": round(items / minutes, 2) if minutes else 0.0,
        "net_energy": arena.energy,
        "items_per_robot": {n: r.collected for n, r in arena.robots.items()},
        "active_share": round(walking / robot_ticks, 3),
        "resting_share": round(resting / robot_ticks, 3),
        "command_latency_ms": {"p50": ms(command_latencies, 50), "p99": ms(command_latencies, 99)},
        "tick_latency_ms": {"p50": ms(tick_latencies, 50), "p99": ms(tick_latencies, 99)},
        "skipped_ticks": skipped,
        "lost": sorted(n for n, r in arena.robots.items() if not r.online),
        "respawned_from_lost": arena.respawned_lost,
        "division_of_labour": round(statistics.pstdev(r.collected for r in arena.robots.values()), 2),
    }


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The summary as lines for a terminal."""
    per_robot = ", ".join(f"{n} {k}" for n, k in s["items_per_robot"].items())
    cl, tl = s["command_latency_ms"], s["tick_latency_ms"]
    return [
        f"items collected   {s['items']} in {s['minutes']:.2f} min = {s['items_per_minute']} items/min "
        f"({s['robots']} robots, seed {s['seed']})",
        f"net energy        {s['net_energy']} (ARGoS loop functions: +1000 an item, -1 a walking robot a tick)",
        f"items per robot   {per_robot}",
        f"active / resting  {s['active_share']:.0%} / {s['resting_share']:.0%} of robot-time",
        f"command latency   p50 {cl['p50']} ms, p99 {cl['p99']} ms (operator command -> receipt)",
        f"tick -> cmd_vel   p50 {tl['p50']} ms, p99 {tl['p99']} ms, {s['skipped_ticks']} skipped ticks",
        f"lost robots       {', '.join(s['lost']) or 'none'} (items respawned from lost robots: {s['respawned_from_lost']})",
    ]
