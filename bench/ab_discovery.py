"""Before/after of the console's discovery in one run: two source trees side by side.

    python bench/ab_discovery.py --base-rev main [--nodes 1000 10000 --repeats 5]
    python bench/ab_discovery.py --base /tmp/base-tree

One private mosquitto holds the retained births of N nodes (``measure.preload``).
Each tree gets its own console process (the tree's ``packages/*/src`` first on
``PYTHONPATH``); the bare paho floor (``bench/rawmqtt.py``, as in
``measure.discovery``) runs in a third. Each asks in turn for one discovery, the order
rotating repeat by repeat, so load from other jobs on the machine hits all alike.
Prints the median wall seconds and the median CPU seconds of the client process
(user + system, which the broker's own work and other jobs do not inflate), and
both ratios to the floor of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ab_roundtrip import PY, ROOT, _pythonpath, base_tree


async def _client(kind: str, url: str, host: str, port: int, nodes: int) -> None:
    """A client process: ``run`` on stdin → one discovery → ``[wall, cpu]`` on stdout."""
    import measure
    from rawmqtt import RawClient

    from devfleet_base import contract
    from devfleet_command.aio import AsyncFleet

    loop = asyncio.get_running_loop()
    messages = 4 * nodes

    async def ours() -> None:
        fleet = AsyncFleet(url, connect_timeout=120)
        await fleet.start()
        await measure._until(lambda: len(fleet.model) >= nodes and all(n.status for n in fleet.model), 120)
        await fleet.close()

    async def floor() -> None:
        got = [0]

        def count(topic: str, payload: bytes, retain: bool) -> None:
            got[0] += 1

        sub = RawClient(f"floor-disc-{contract.new_id()[:8]}", count)
        await sub.connect(host, port)
        sub.client.subscribe(contract.subscriptions_for_console())
        await measure._until(lambda: got[0] >= messages, 120)
        sub.close()

    once = ours if kind == "devfleet" else floor
    print("ready", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.startswith("run"):
            return
        gc.collect()
        t0, c0 = time.monotonic(), time.process_time()
        await once()
        print(json.dumps([time.monotonic() - t0, time.process_time() - c0]), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, help="the 'before' source tree")
    p.add_argument("--base-rev", help="git revision exported as the 'before' tree")
    p.add_argument("--new", type=Path, default=ROOT, help="the 'after' source tree (default: this one)")
    p.add_argument("--nodes", type=int, nargs="+", default=[1_000, 10_000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--client", nargs=5, metavar=("KIND", "URL", "HOST", "PORT", "NODES"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.client:
        kind, url, host, port, nodes = args.client
        asyncio.run(_client(kind, url, host, int(port), int(nodes)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="devfleet-ab-"))
    try:
        asyncio.run(_compare({"before": base_tree(p, args, tmp), "after": args.new}, args))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _compare(trees: dict[str, Path], args: Any) -> None:
    import measure
    from measure import Child

    from devfleet_base.testing.broker import MosquittoBroker

    with MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker:
        loaded = 0
        for nodes in sorted(args.nodes):
            await measure.preload(broker, [f"disc-{i:05d}" for i in range(loaded, nodes)])
            loaded = nodes
            clients: dict[str, Child] = {}
            try:
                for label, tree in trees.items():
                    clients[label] = Child([PY, __file__, "--client", "devfleet", broker.url, broker.host,
                                            str(broker.port), str(nodes)], env={"PYTHONPATH": _pythonpath(tree)})  # fmt: skip
                clients["floor"] = Child([PY, __file__, "--client", "floor", broker.url, broker.host,
                                          str(broker.port), str(nodes)],
                                         env={"PYTHONPATH": _pythonpath(trees["after"])})  # fmt: skip
                names = list(clients)
                for name in names:  # warm-up: imports, first-connect costs
                    _ask(clients[name])
                got: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
                for r in range(args.repeats):
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        got[name].append(_ask(clients[name]))
            finally:
                for c in clients.values():
                    c.close()
            load = _loadavg()
            floor_wall = statistics.median(w for w, _ in got["floor"])
            floor_cpu = statistics.median(c for _, c in got["floor"])
            print(f"{nodes:,} nodes ({4 * nodes:,} retained messages), {args.repeats} repeats, load {load}")
            for name, values in got.items():
                wall = statistics.median(w for w, _ in values)
                cpu = statistics.median(c for _, c in values)
                print(f"  {name:>7}: wall {wall:.3f} s ({wall / floor_wall:.2f}×)  cpu {cpu:.3f} s "
                      f"({cpu / floor_cpu:.2f}×)  walls " + " ".join(f"{w:.3f}" for w, _ in values))  # fmt: skip


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _ask(client: Any) -> tuple[float, float]:
    client.say("run")
    assert client.proc.stdout is not None
    line = client.proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{client.proc.args} ended")
    wall, cpu = json.loads(line)
    return float(wall), float(cpu)


if __name__ == "__main__":
    raise SystemExit(main())
