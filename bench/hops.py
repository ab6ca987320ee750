"""Where a command round trip's time goes: per-hop timestamps in the console and the agent.

    python bench/hops.py agent OUT.json -- --broker H --port P --name N ...   # an agent with probes

The agent wrapper patches timing marks onto the agent's classes, runs
``devfleet_agent.cli.main`` unchanged, and writes what it saw to ``OUT.json`` when
the agent stops. :func:`console_probe` puts the matching marks into the console of
the benchmark process. Marks are ``time.perf_counter_ns()`` (CLOCK_MONOTONIC on
Linux, one clock for every process), so the two sides line up.

Also counted, per process: the event loop's iterations (``_run_once``), tasks
created, and the cyclic garbage collector's pauses (``gc.callbacks``). The probes
cost a fraction of a microsecond a mark: the hop table is for where the time
goes, the round-trip rows come from a run without probes.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

now = time.perf_counter_ns


class Probe:
    """Timestamped marks (name, ns), loop iterations, tasks and GC pauses of one process."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, int]] = []
        self.gc: list[tuple[int, int, int]] = []  # (generation, start ns, end ns)
        self._gc_start = 0
        self._patched: list[tuple[Any, str, Any]] = []

    def mark(self, name: str) -> None:
        self.marks.append((name, now()))

    def on_entry(self, cls: Any, attr: str, name: str, when: Callable[..., bool] | None = None) -> None:
        """Mark ``name`` on every call of ``cls.attr`` (for which ``when(*args)`` holds)."""
        original = getattr(cls, attr)
        marks = self.marks

        if inspect.iscoroutinefunction(original):  # mark when it runs, not when it is called

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if when is None or when(*args, **kwargs):
                    marks.append((name, now()))
                return await original(*args, **kwargs)

        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if when is None or when(*args, **kwargs):
                    marks.append((name, now()))
                return original(*args, **kwargs)

        self._patched.append((cls, attr, original))
        setattr(cls, attr, wrapper)

    def count_loop(self) -> None:
        """Mark every event-loop iteration and every task created (any loop)."""
        import asyncio.base_events as be

        self.on_entry(be.BaseEventLoop, "_run_once", "loop")
        self.on_entry(be.BaseEventLoop, "create_task", "task")

    def watch_gc(self) -> None:
        def callback(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                self._gc_start = now()
            else:
                self.gc.append((int(info["generation"]), self._gc_start, now()))

        gc.callbacks.append(callback)

    def undo(self) -> None:
        for cls, attr, original in reversed(self._patched):
            setattr(cls, attr, original)
        self._patched.clear()

    def dump(self) -> dict[str, Any]:
        return {"marks": self.marks, "gc": self.gc}


def agent_probe(probe: Probe) -> None:
    """Marks in the agent process (before the agent is made)."""
    import paho.mqtt.client as paho

    from devfleet_agent import agent as agent_mod
    from devfleet_agent import commands as commands_mod
    from devfleet_base import mqtt as mqtt_mod

    def is_cmd(self: Any, msg: Any) -> bool:
        return "/cmd/" in msg.topic

    def accepted(self: Any, topic: str, receipt: dict[str, Any], *rest: Any) -> bool:
        probe.mark("a.receipt_" + str(receipt.get("status")))
        return False

    probe.on_entry(mqtt_mod.MqttClient, "_on_readable", "a.readable")
    probe.on_entry(paho.Client, "_sock_send", "a.send")
    probe.on_entry(mqtt_mod.MqttClient, "_cb_message", "a.paho_message")
    probe.on_entry(agent_mod.Agent, "_on_message", "a.on_message", is_cmd)
    probe.on_entry(commands_mod.Dispatcher, "handle", "a.dispatch")
    from devfleet_agent import node_core

    probe.on_entry(node_core.NodeCore, "_cmd_ping", "a.handler")
    probe.on_entry(agent_mod.Agent, "_send_receipt", "unused", accepted)
    probe.count_loop()
    probe.watch_gc()


def console_probe(probe: Probe) -> None:
    """Marks in this (the benchmark's) process, around ``AsyncFleet.call``."""
    import paho.mqtt.client as paho

    from devfleet_base import mqtt as mqtt_mod
    from devfleet_command import aio as aio_mod
    from devfleet_command import handles as handles_mod

    probe.on_entry(mqtt_mod.MqttClient, "publish", "c.publish", lambda self, topic, *a, **k: "/cmd/" in topic)
    probe.on_entry(mqtt_mod.MqttClient, "_on_readable", "c.readable")
    probe.on_entry(paho.Client, "_sock_send", "c.send")
    probe.on_entry(mqtt_mod.MqttClient, "_cb_publish", "c.puback")
    probe.on_entry(aio_mod.AsyncFleet, "_on_inbox", "c.inbox")
    probe.on_entry(handles_mod.CommandHandle, "_finish", "c.finish")
    probe.count_loop()
    probe.watch_gc()


# ---- analysis --------------------------------------------------------------------------------


def _split(marks: list[tuple[str, int]], start: str) -> list[list[tuple[str, int]]]:
    """Marks grouped per command: each group from a ``start`` mark up to the next one."""
    groups: list[list[tuple[str, int]]] = []
    for name, t in marks:
        if name == start:
            groups.append([])
        if groups:
            groups[-1].append((name, t))
    return groups


def _first(group: list[tuple[str, int]], name: str, after: int = 0) -> int | None:
    return next((t for n, t in group if n == name and t >= after), None)


def _last(group: list[tuple[str, int]], name: str, before: int) -> int | None:
    found = None
    for n, t in group:
        if t > before:
            break
        if n == name:
            found = t
    return found


HOPS = [
    ("console: call → command queued to paho (envelope, encode)", "c.call", "c.publish"),
    ("console: queued → sent (paho's write)", "c.publish", "c.write"),
    ("wire + broker: console send → agent socket readable", "c.write", "a.readable"),
    ("agent: readable → message callback (paho parses)", "a.readable", "a.on_message"),
    ("agent: callback → dispatcher runs (task spawned, loop turn)", "a.on_message", "a.dispatch"),
    ("agent: dispatcher → accepted receipt queued (decode, validate, checks)", "a.dispatch",
     "a.receipt_accepted"),
    ("agent: accepted → ok receipt queued (handler, encode)", "a.receipt_accepted", "a.receipt_ok"),
    ("agent: ok queued → sent (paho's write)", "a.receipt_ok", "a.write"),
    ("wire + broker: agent send → console socket readable", "a.write", "c.readable_ok"),
    ("console: readable → ok receipt handled (paho, decode, validate)", "c.readable_ok", "c.finish"),
    ("console: handled → call returns (loop turn)", "c.finish", "c.return"),
]  # fmt: skip


def analyse(console: dict[str, Any], agent: dict[str, Any], calls: list[tuple[int, int]]) -> dict[str, Any]:
    """Per-hop medians and p99s (µs) over ``calls`` [(start ns, end ns)], plus loop
    iterations, tasks and GC pauses per round trip on each side."""
    c_marks, a_marks = console["marks"], agent["marks"]
    per_hop: dict[str, list[float]] = {name: [] for name, _, _ in HOPS}
    loops = {"console": [], "agent": []}  # type: dict[str, list[int]]
    tasks = {"console": [], "agent": []}  # type: dict[str, list[int]]
    a_groups = _split(a_marks, "a.on_message")
    ai = 0
    for t0, t1 in calls:
        cg = [(n, t) for n, t in c_marks if t0 <= t <= t1]
        # the agent's group for this call: its on_message lies inside the call
        while ai < len(a_groups) and a_groups[ai][0][1] < t0:
            ai += 1
        if ai >= len(a_groups) or a_groups[ai][0][1] > t1:
            continue
        ag = a_groups[ai]
        t = {"c.call": t0, "c.return": t1}
        t["c.publish"] = _first(cg, "c.publish") or 0
        t["c.write"] = _first(cg, "c.send", t["c.publish"]) or 0
        t["a.on_message"] = ag[0][1]
        # the socket read that delivered it: the last readable before, in the full list
        t["a.readable"] = _last_before(a_marks, "a.readable", t["a.on_message"])
        t["a.dispatch"] = _first(ag, "a.dispatch") or 0
        t["a.receipt_accepted"] = _first(ag, "a.receipt_accepted") or 0
        t["a.receipt_ok"] = _first(ag, "a.receipt_ok") or 0
        t["a.write"] = _first(ag, "a.send", t["a.receipt_ok"]) or 0
        t["c.finish"] = _first(cg, "c.finish") or 0
        t["c.readable_ok"] = _last(cg, "c.readable", t["c.finish"]) or 0
        if not all(t.values()):
            continue
        for name, a, b in HOPS:
            per_hop[name].append((t[b] - t[a]) / 1e3)
        loops["console"].append(sum(1 for n, _ in cg if n == "loop"))
        tasks["console"].append(sum(1 for n, _ in cg if n == "task"))
        ag_in = [(n, x) for n, x in _between(a_marks, t["a.readable"], t["a.write"])]
        loops["agent"].append(sum(1 for n, _ in ag_in if n == "loop"))
        tasks["agent"].append(sum(1 for n, _ in ag_in if n == "task"))
    total = [(b - a) / 1e3 for a, b in calls]
    rows = [
        {"hop": name, "p50_us": statistics.median(v), "p99_us": _pct(v, 0.99)}
        for name, v in per_hop.items()
        if v
    ]
    return {
        "hops": rows,
        "total_p50_us": statistics.median(total),
        "total_p99_us": _pct(total, 0.99),
        "analysed": len(next(iter(per_hop.values()))),
        "calls": len(calls),
        "loop_iterations": {k: statistics.median(v) for k, v in loops.items() if v},
        "tasks_created": {k: statistics.median(v) for k, v in tasks.items() if v},
        "gc": {
            "console": _gc_summary(console["gc"], calls),
            "agent": _gc_summary(agent["gc"], calls),
        },
    }


def _last_before(marks: list[tuple[str, int]], name: str, before: int) -> int:
    # marks are in time order: bisect on time, then walk back to the name
    lo, hi = 0, len(marks)
    while lo < hi:
        mid = (lo + hi) // 2
        if marks[mid][1] <= before:
            lo = mid + 1
        else:
            hi = mid
    for i in range(lo - 1, -1, -1):
        if marks[i][0] == name:
            return marks[i][1]
    return 0


def _between(marks: list[tuple[str, int]], t0: int, t1: int) -> list[tuple[str, int]]:
    lo, hi = 0, len(marks)
    while lo < hi:
        mid = (lo + hi) // 2
        if marks[mid][1] < t0:
            lo = mid + 1
        else:
            hi = mid
    out = []
    for n, t in marks[lo:]:
        if t > t1:
            break
        out.append((n, t))
    return out


def _gc_summary(pauses: list[Any], calls: list[tuple[int, int]]) -> dict[str, Any]:
    """Collections that overlapped a measured round trip, and their pause times (µs)."""
    if not calls:
        return {}
    start, end = calls[0][0], calls[-1][1]
    inside = [(g, s, e) for g, s, e in pauses if start <= s <= end]
    hit = 0
    j = 0
    for _, s, e in inside:
        while j < len(calls) and calls[j][1] < s:
            j += 1
        if j < len(calls) and calls[j][0] <= e:
            hit += 1
    durations = [(e - s) / 1e3 for _, s, e in inside]
    return {
        "collections": len(inside),
        "by_generation": {str(g): sum(1 for x, _, _ in inside if x == g) for g in (0, 1, 2)},
        "pause_p50_us": statistics.median(durations) if durations else 0.0,
        "pause_max_us": max(durations) if durations else 0.0,
        "round_trips_hit": hit,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def nodelay(pid: int) -> list[bool]:
    """TCP_NODELAY of each TCP socket of process ``pid`` (Linux; via pidfd_getfd)."""
    import os

    found: list[bool] = []
    pidfd = os.pidfd_open(pid)
    try:
        for fd_name in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd_name}")
            except OSError:
                continue
            if not target.startswith("socket:"):
                continue
            try:
                fd = _getfd(pidfd, int(fd_name))
            except OSError:
                continue
            with socket.socket(fileno=fd) as s:
                if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6):
                    found.append(bool(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
    finally:
        os.close(pidfd)
    return found


def _getfd(pidfd: int, fd: int) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    sys_pidfd_getfd = 438  # x86_64 and aarch64 alike
    got = libc.syscall(sys_pidfd_getfd, pidfd, fd, 0)
    if got < 0:
        raise OSError(ctypes.get_errno(), "pidfd_getfd")
    return int(got)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "agent" or "--" not in argv:
        raise SystemExit(__doc__)
    out = argv[1]
    agent_args = argv[argv.index("--") + 1 :]
    probe = Probe()
    agent_probe(probe)
    from devfleet_agent.cli import main as agent_main

    try:
        return agent_main(agent_args)
    finally:
        probe.undo()
        with open(out, "w") as f:
            json.dump(probe.dump(), f)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    raise SystemExit(main(sys.argv[1:]))
