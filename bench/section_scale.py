"""Scale: discovery and fan-out at 1,000, 10,000 and 50,000 simulated nodes, and how
each figure grows with the fleet (issue 20).

Discovery: the retained births of N nodes (4 messages a node, the agent's own payload
code) on a private mosquitto; a fresh ``AsyncFleet`` until its model holds every node
with a status, against two floors on the same broker in the same run: bare paho
(``bench/rawmqtt.py``) and the C client ``mosquitto_sub`` taking in the same 4N
retained messages (``-C 4N``, output to /dev/null; its time includes starting it).

Fan-out: ``devfleet-sim`` with N nodes (split over processes past 5,000) and a
fleet-wide ping until every ``ok`` receipt is in, against N bare paho clients in one
process each answering twice (``bench/floors.py fleet``).

Growth: between two sizes, the exponent k of ``time ∝ N^k`` (1 is linear). The
log-log plot goes to ``docs/benchmarks-scale.png`` (matplotlib, installed in the
bench's venv only).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import measure

from devfleet_base import contract
from devfleet_base.testing.broker import MosquittoBroker

TITLE = "Scale: discovery and fan-out at 1,000 / 10,000 / 50,000 nodes"

_FULL = {"sizes": (1_000, 10_000, 50_000), "repeats": {1_000: 3, 10_000: 3, 50_000: 1}}
_QUICK = {"sizes": (50, 200), "repeats": {50: 1, 200: 1}}
_BROKER = ["max_queued_messages 0", "max_inflight_messages 0"]
PLOT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-scale.png"


def _raise_fd_limit(needed: int) -> int:
    """Open-files limit for this process and its children (the broker, the simulator, the
    floor): N client sockets each side. Root may raise the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _mosquitto_sub(broker: Any, messages: int, timeout: float) -> float:
    """Seconds for ``mosquitto_sub`` (MQTT 5) with the console's filters to receive
    ``messages`` retained messages and exit."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        raise RuntimeError("mosquitto_sub is not installed (apt-get install mosquitto-clients)")
    args = [exe, "-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1", "-C", str(messages)]
    for topic_filter, _qos in contract.subscriptions_for_console():
        args += ["-t", topic_filter]
    t0 = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    return time.monotonic() - t0


async def discovery(nodes: int, repeats: int) -> dict[str, Any]:
    with MosquittoBroker(extra_config=_BROKER) as broker:
        await measure.preload(broker, [f"scale-{i:05d}" for i in range(nodes)])
        d = await measure.discovery(broker, nodes, 4 * nodes, repeats)
        subs = [_mosquitto_sub(broker, 4 * nodes, 300) for _ in range(repeats)]
    d["c_seconds"] = statistics.median(subs)
    return d


async def fanout(nodes: int, repeats: int) -> dict[str, Any]:
    """As :func:`measure.fanout`, with the simulator over several processes for large N;
    a floor that cannot come up here leaves our figure standing."""
    processes = max(1, math.ceil(nodes / 5_000))
    sim_args = ("--processes", str(processes), "--connect-rate", "2000", "--keepalive", "600")
    with MosquittoBroker(extra_config=_BROKER) as broker:
        ours, up = await measure.fanout_ours(broker, nodes, repeats, sim_args=sim_args, timeout=300)
        raw: list[float] = []
        floor_error = None
        try:
            raw = await asyncio.wait_for(measure.fanout_floor(broker, nodes, repeats, 300), 900)
        except Exception as exc:  # the floor's N clients may not come up here
            floor_error = f"{type(exc).__name__}: {exc}"
    return {
        "nodes": nodes,
        "processes": processes,
        "online_seconds": up,
        "seconds": statistics.median(ours),
        "floor_seconds": statistics.median(raw) if raw else None,
        "floor_error": floor_error,
    }


def growth(points: list[tuple[int, float]]) -> list[float | None]:
    """For each size after the first: k in ``t ∝ N^k`` from the previous size."""
    out: list[float | None] = []
    for (n0, t0), (n1, t1) in itertools.pairwise(points):
        out.append(math.log(t1 / t0) / math.log(n1 / n0) if t0 > 0 and t1 > 0 else None)
    return out


def plot(details: dict[str, Any], path: Path) -> str | None:
    """The log-log plot of every series; the file written, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [
        ("discovery", "seconds", "discovery: devfleet console", "o-"),
        ("discovery", "floor_seconds", "discovery: bare paho", "o--"),
        ("discovery", "c_seconds", "discovery: mosquitto_sub (C)", "o:"),
        ("fanout", "seconds", "fan-out: devfleet console", "s-"),
        ("fanout", "floor_seconds", "fan-out: bare paho", "s--"),
    ]
    for kind, key, label, style in series:
        pts = [(d["nodes"], d[key]) for d in details.get(kind, []) if d.get(key)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds")
    ax.set_title("devfleet at scale (one private mosquitto, same run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path.name


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    cfg = _QUICK if quick else _FULL
    sizes: tuple[int, ...] = cfg["sizes"]  # type: ignore[assignment]
    limit = _raise_fd_limit(2 * max(sizes) + 1024)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"discovery": [], "fanout": [], "fd_limit": limit, "errors": {}}
    for n in sizes:
        log(f"  scale: discovery of {n:,} nodes")
        d = await discovery(n, cfg["repeats"][n])  # type: ignore[index]
        details["discovery"].append(d)
        log(
            f"    {d['seconds']:.3f} s, paho {d['floor_seconds']:.3f} s, mosquitto_sub {d['c_seconds']:.3f} s"
        )
    for n in sizes:
        log(f"  scale: fan-out to {n:,} nodes")
        if limit < n + 1024:  # the broker holds one socket a node; setrlimit past the hard limit was refused
            details["errors"][f"fanout_{n}"] = (
                f"the broker needs {n:,}+ open files and this machine's hard limit is {limit:,}, which "
                "a process here may not raise"
            )
            log(f"    skipped: {details['errors'][f'fanout_{n}']}")
            continue
        try:
            # A budget per size: 50,000 simulated nodes on a shared 2-core machine may not come up.
            f = await asyncio.wait_for(fanout(n, cfg["repeats"][n]), 900)  # type: ignore[index]
        except Exception as exc:  # a size this machine cannot hold: say why, keep the rest
            details["errors"][f"fanout_{n}"] = f"{type(exc).__name__}: {exc}"
            log(f"    failed: {exc}")
            continue
        details["fanout"].append(f)
        paho = f"{f['floor_seconds']:.3f} s" if f["floor_seconds"] else f"not measured ({f['floor_error']})"
        log(f"    {f['seconds']:.3f} s, paho {paho} ({f['online_seconds']:.0f} s to bring up)")
    for kind, label in (
        ("discovery", "discovery, {n:,} retained nodes"),
        ("fanout", "fan-out ping, {n:,} nodes"),
    ):
        pts = details[kind]
        ks = [None, *growth([(p["nodes"], p["seconds"]) for p in pts])]
        floored = [p for p in pts if p["floor_seconds"]]
        for p, k in zip(pts, ks, strict=True):
            p["growth"] = k
            rows.append(
                row(
                    f"scale: {label.format(n=p['nodes'])}",
                    p["seconds"],
                    "s",
                    p["floor_seconds"],
                    target="≤ 1.2×",
                )
            )
            if kind == "discovery":
                rows.append(
                    row(f"scale: … versus mosquitto_sub (C), {p['nodes']:,} nodes", p["seconds"], "s",
                        p["c_seconds"], target="")
                )  # fmt: skip
        floor_ks = [None, *growth([(p["nodes"], p["floor_seconds"]) for p in floored])]
        for p, k in zip(floored, floor_ks, strict=True):
            p["floor_growth"] = k
    details["plot"] = None if quick else plot(details, PLOT)  # a smoke run leaves docs/ alone
    return {"rows": rows, "details": details}
