"""Before/after of the command round trip in one run: two source trees side by side.

    python bench/ab_roundtrip.py --base /tmp/base-tree [--blocks 10 --block 200]
    python bench/ab_roundtrip.py --base-rev main       # exports that revision to a temp dir

Each tree gets its own agent process and its own console process (the tree's
``packages/*/src`` first on ``PYTHONPATH``); the raw floor requester and responder
run beside them. Blocks of round trips go to each of the three in turn, the order
rotating block by block, so load from other jobs on the machine hits all alike.
Prints p50/p99 of each and the ratios to the floor of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
PACKAGES = ("component-base", "agent-core", "central-command")


def _pythonpath(tree: Path) -> str:
    paths = [str(tree / "packages" / p / "src") for p in PACKAGES] + [str(HERE)]
    return os.pathsep.join(paths)


async def _client(kind: str, url: str, host: str, port: int, node: str) -> None:
    """A client process: ``run K`` on stdin → K round trips → their times (JSON) on stdout."""
    loop = asyncio.get_running_loop()
    if kind == "devfleet":
        from devfleet_command.aio import AsyncFleet

        fleet = await AsyncFleet.connect(url).__aenter__()
        await fleet.wait_for(lambda m: (n := m.get(node)) is not None and n.online, 60)

        async def once() -> None:
            await fleet.call(node, "ping", timeout=10)

    else:
        from section_agent import _Floor

        class _B:
            pass

        broker = _B()
        broker.host, broker.port = host, port  # type: ignore[attr-defined]
        raw = _Floor()
        await raw.start(broker)
        once = raw.once
    print("ready", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.startswith("run "):
            return
        times = []
        for _ in range(int(line.split()[1])):
            t0 = time.perf_counter()
            await once()
            times.append(time.perf_counter() - t0)
        print(json.dumps(times), flush=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, help="the 'before' source tree")
    p.add_argument("--base-rev", help="git revision exported as the 'before' tree")
    p.add_argument("--new", type=Path, default=ROOT, help="the 'after' source tree (default: this one)")
    p.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH", help="more trees to compare")
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--block", type=int, default=200)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--broker-config", action="append", default=[])
    p.add_argument(
        "--client", nargs=5, metavar=("KIND", "URL", "HOST", "PORT", "NODE"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.client:
        kind, url, host, port, node = args.client
        asyncio.run(_client(kind, url, host, int(port), node))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="devfleet-ab-"))
    try:
        trees = {"before": base_tree(p, args, tmp), "after": args.new}
        trees.update(dict(t.split("=", 1) for t in args.tree))
        return _compare({k: Path(v) for k, v in trees.items()}, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def base_tree(parser: argparse.ArgumentParser, args: Any, tmp: Path) -> Path:
    """The 'before' tree: ``--base``, or ``--base-rev`` exported (git archive) under ``tmp``."""
    if args.base is not None:
        return Path(args.base)
    if not args.base_rev:
        parser.error("give --base or --base-rev")
    base = tmp / "base"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base_rev], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    return base


def _compare(trees: dict[str, Path], args: Any, tmp: Path) -> int:
    from measure import Child, floor

    from devfleet_base.testing.broker import MosquittoBroker

    config = ["max_queued_messages 0", "max_inflight_messages 0", *args.broker_config]
    with MosquittoBroker(extra_config=config) as broker:
        procs: list[Child] = []
        clients: dict[str, Child] = {}
        try:
            procs.append(floor("echo", broker))
            for label, tree in trees.items():
                env = {"PYTHONPATH": _pythonpath(tree)}
                agent = Child([PY, "-m", "devfleet_agent", "--broker", broker.host, "--port", str(broker.port),
                               "--name", f"ab-{label}", "--data-dir", str(tmp / label), "--loglevel", "WARNING"],
                              env=env, ready=False)  # fmt: skip
                procs.append(agent)
                clients[label] = Child([PY, __file__, "--client", "devfleet", broker.url, broker.host,
                                        str(broker.port), f"ab-{label}"], env=env)  # fmt: skip
            clients["floor"] = Child([PY, __file__, "--client", "floor", broker.url, broker.host, str(broker.port),
                                      "-"], env={"PYTHONPATH": _pythonpath(trees["after"])})  # fmt: skip
            times: dict[str, list[float]] = {k: [] for k in clients}
            blocks: dict[str, list[float]] = {k: [] for k in clients}
            names = list(clients)
            for name in names:
                _ask(clients[name], args.warmup)
            for block in range(args.blocks):
                order = names[block % len(names) :] + names[: block % len(names)]
                for name in order:
                    got = _ask(clients[name], args.block)
                    times[name] += got
                    blocks[name].append(statistics.median(got))
        finally:
            for c in [*clients.values(), *procs]:
                c.close()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    floor_p50, floor_p99 = statistics.median(times["floor"]), _pct(times["floor"], 0.99)
    print(f"load {load}; {args.blocks} blocks × {args.block} round trips each, order rotated")
    for name, values in times.items():
        p50, p99 = statistics.median(values), _pct(values, 0.99)
        print(f"{name:>9}: p50 {p50 * 1e3:.3f} ms ({p50 / floor_p50:.2f}×)  p99 {p99 * 1e3:.3f} ms "
              f"({p99 / floor_p99:.2f}×)  p99.9 {_pct(values, 0.999) * 1e3:.2f} ms")  # fmt: skip
        print("         block p50s (ms):", " ".join(f"{b * 1e3:.2f}" for b in blocks[name]))
    return 0


def _ask(client: Any, count: int) -> list[float]:
    client.say(f"run {count}")
    assert client.proc.stdout is not None
    line = client.proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{client.proc.args} ended")
    return [float(x) for x in json.loads(line)]


if __name__ == "__main__":
    raise SystemExit(main())
