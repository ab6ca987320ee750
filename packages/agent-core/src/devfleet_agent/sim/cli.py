"""``devfleet-sim``: simulate a fleet of nodes against a broker.

One process holds many nodes on one epoll loop; ``--processes P`` splits the
fleet over P child processes (one loop each is CPU-bound past a few thousand
nodes) and prints their figures added up. Every ``--report`` seconds one line
of stats goes to stderr (``--json``: one JSON object a line to stdout).

The workers end with their parent: SIGTERM or SIGINT to it is passed on and
waited for (a second one kills them), and a parent that dies without passing
anything on (SIGKILL) is noticed: Linux sends them SIGTERM (``PR_SET_PDEATHSIG``),
and anywhere their stdin, a pipe the parent holds open, reaches end of file.

The only module of the simulator that reads flags, the environment or
resource limits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..clock import wait_event

__all__ = ["build_parser", "main", "raise_fd_limit"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_FDS_PER_PROCESS = 64  # the loop, the executor, stdio, the broker log ...


def build_parser() -> argparse.ArgumentParser:
    """The ``devfleet-sim`` argument parser."""
    p = argparse.ArgumentParser(
        prog="devfleet-sim",
        description="Simulate many devfleet nodes (birth, will, heartbeat, telemetry, logs, "
        "commands, config) against an MQTT broker, for load tests of brokers and consoles.",
    )
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:port (default %(default)s)")
    p.add_argument("--nodes", type=int, default=100, help="how many nodes (default %(default)s)")
    p.add_argument("--prefix", default="sim", help="node names are PREFIX-00000 ... (default %(default)s)")
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--parent", type=int, default=0, help=argparse.SUPPRESS)  # a worker of that pid
    p.add_argument("--processes", type=int, default=1, help="split the fleet over this many processes")
    p.add_argument(
        "--telemetry-interval", type=float, default=0.0, help="seconds between samples (default: config's 30)"
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=0.0,
        help="seconds between heartbeats (default: config's 10)",
    )
    p.add_argument(
        "--connect-rate", type=float, default=500.0, help="connects started per second (all processes)"
    )
    p.add_argument(
        "--fail-rate", type=float, default=0.0, help="fraction of nodes crashing per minute (0.01 = 1%%)"
    )
    p.add_argument("--down-time", type=float, default=5.0, help="seconds a crashed node stays away")
    p.add_argument("--slow-replies", type=float, default=0.0, help="fraction of nodes that answer slowly")
    p.add_argument("--reply-delay", type=float, default=2.0, help="seconds a slow node takes to answer")
    p.add_argument("--silent", type=float, default=0.0, help="fraction of nodes that never answer commands")
    p.add_argument("--keepalive", type=int, default=30, help="MQTT keepalive seconds")
    p.add_argument("--protocol", choices=("auto", "5", "3.1.1"), default="auto")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: on Ctrl-C)")
    p.add_argument("--report", type=float, default=5.0, help="seconds between stats lines")
    p.add_argument("--json", action="store_true", help="stats as JSON lines on stdout")
    return p


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit towards the hard limit; return the new soft limit.

    Raises:
        SystemExit: the hard limit is below ``needed`` (with what to do about it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return int(soft)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"devfleet-sim: {needed} open files are needed but the hard limit (ulimit -Hn) is {hard}; "
            "raise it (limits.conf, systemd LimitNOFILE=) or use more --processes"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return int(target)


def _broker(url: str) -> tuple[str, int]:
    if "://" not in url:
        url = "mqtt://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise SystemExit(f"devfleet-sim: bad --broker {url!r}: use mqtt://host:port (TLS is not simulated)")
    return parts.hostname, parts.port or 1883


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``devfleet-sim``; return the exit code."""
    args = build_parser().parse_args(argv)
    if args.nodes < 1 or args.processes < 1:
        print("devfleet-sim: --nodes and --processes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    host, port = _broker(args.broker)
    per_process = -(-args.nodes // args.processes)
    raise_fd_limit(per_process + _FDS_PER_PROCESS)
    try:
        if args.processes > 1:
            return asyncio.run(_parent(args, argv if argv is not None else sys.argv[1:]))
        return asyncio.run(_child(args, host, port))
    except KeyboardInterrupt:
        return EXIT_OK


async def _child(args: argparse.Namespace, host: str, port: int) -> int:
    from .fleet import FleetOptions, SimFleet

    options = FleetOptions(
        host=host,
        port=port,
        nodes=args.nodes,
        prefix=args.prefix,
        first=args.first,
        telemetry_interval=args.telemetry_interval,
        heartbeat_interval=args.heartbeat_interval,
        connect_rate=args.connect_rate,
        fail_rate=args.fail_rate,
        down_time=args.down_time,
        slow_replies=args.slow_replies,
        reply_delay=args.reply_delay,
        silent=args.silent,
        keepalive=args.keepalive,
        protocol=args.protocol,
        seed=args.seed,
    )
    fleet = SimFleet(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.parent:
        _end_with_parent(args.parent, stop)
    await fleet.start()
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while not stop.is_set():
            wait = args.report
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            await wait_event(stop, wait)
            try:
                _report(args, fleet.snapshot().as_dict())
            except BrokenPipeError:  # the reader (a worker's parent) is gone: stop, quietly
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
                os.close(devnull)
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        await fleet.stop()
    return EXIT_OK


def _end_with_parent(parent: int, stop: asyncio.Event) -> None:
    """A worker of ``--processes`` stops (as on SIGTERM) when its parent ``parent`` is
    gone, even killed: Linux sends SIGTERM when it dies (``PR_SET_PDEATHSIG``), and the
    worker's stdin, a pipe whose other end only the parent holds, reaches end of file."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that: no signal will come
        stop.set()
        return
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of file: the parent is gone
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


def _report(args: argparse.Namespace, stats: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(stats), flush=True)
        return
    per = stats.get("rss_per_node") or 0
    connect = stats.get("connect_seconds")
    print(
        f"devfleet-sim: {stats['connected']}/{stats['nodes']} connected"
        f"{f' (all in {connect:.1f} s)' if connect else ''}, {stats['heartbeats']} heartbeats, "
        f"{stats['telemetry']} telemetry, {stats['commands']} commands, {stats['crashes']} crashes, "
        f"RSS {stats['rss_bytes'] / 1_048_576:.0f} MB ({per / 1024:.1f} KB/node), CPU {stats['cpu_seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )


async def _parent(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Split the fleet over ``--processes`` children and add their figures up; end
    with them (see the module's docstring)."""
    base = _strip(
        list(argv), ("--processes", "--nodes", "--first", "--json", "--connect-rate", "--seed", "--parent")
    )
    per = -(-args.nodes // args.processes)
    children: list[asyncio.subprocess.Process] = []
    latest: dict[int, dict[str, Any]] = {}
    fresh: set[int] = set()
    signals: list[int] = []  # those received

    def passed_on() -> int:  # SIGTERM, SIGINT: pass it on; a second one kills them
        return signal.SIGTERM if len(signals) == 1 else signal.SIGKILL

    def terminate(sig: int) -> None:
        signals.append(sig)
        for child in children:
            if child.returncode is None:
                child.send_signal(passed_on())

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, terminate, sig)
    first = args.first
    for i in range(args.processes):
        count = min(per, args.nodes - (first - args.first))
        if count <= 0 or signals:
            break
        cmd = [
            sys.executable, "-m", "devfleet_agent.sim.cli", *base,
            "--nodes", str(count), "--first", str(first), "--json",
            "--connect-rate", str(args.connect_rate / args.processes), "--seed", str(args.seed + i),
            "--parent", str(os.getpid()),
        ]  # fmt: skip
        # stdin: a pipe nothing is written to; its end of file tells the child this process is gone.
        child = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        children.append(child)
        if signals:  # came while it was starting
            child.send_signal(passed_on())
        first += count

    async def read(i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            with contextlib.suppress(ValueError):
                latest[i] = json.loads(line)
                fresh.add(i)
                if len(fresh) == len(children):  # one line per round of reports
                    fresh.clear()
                    _report(args, _add_up(list(latest.values())))

    await asyncio.gather(*(read(i, c) for i, c in enumerate(children)))
    codes = await asyncio.gather(*(c.wait() for c in children))
    return max((c if c >= 0 else 128 - c for c in codes), default=0)  # killed by signal N: 128 + N


def _add_up(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "nodes",
        "connected",
        "heartbeats",
        "telemetry",
        "commands",
        "crashes",
        "restarts",
        "rss_bytes",
        "baseline_rss_bytes",
    ):
        out[key] = sum(int(p.get(key) or 0) for p in parts)
    out["cpu_seconds"] = round(sum(float(p.get("cpu_seconds") or 0) for p in parts), 2)
    times = [p.get("connect_seconds") for p in parts]
    out["connect_seconds"] = (
        max(t for t in times if t is not None) if all(t is not None for t in times) else None
    )
    extra = out["rss_bytes"] - out["baseline_rss_bytes"]
    out["rss_per_node"] = round(extra / out["nodes"]) if out["nodes"] else None
    out["processes"] = len(parts)
    return out


def _strip(argv: list[str], options: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in options:
            skip = "=" not in item and name != "--json"
            continue
        out.append(item)
    return out


if __name__ == "__main__":  # pragma: no cover - the children of --processes
    raise SystemExit(main())
