"""Work trading: one auction with N bidders, and résumé discovery (issue 14).

Auction: the bidders are simulated in a child process (``python section_trading.py
bidders HOST PORT N CONNECTIONS``): N agent ids over a few connections, each
answering a request with a proposal and an assignment with a retained output,
validated with devfleet's own schemas (:mod:`devfleet_base.trading`). The same
bidders serve both requesters, one after the other in the same run:

- devfleet: ``AsyncFleet.auction(skill, inputs, expect=N)`` (request → N proposals →
  policy → assign at QoS 2 → output), per auction its own subscriptions;
- floor: a bare paho client doing the same exchange (request at QoS 1, wait for N
  proposals, the cheapest, assign at QoS 2, wait for the output) on wildcard
  subscriptions made once, with no validation.

Résumés: M retained ``agents/{id}/resume`` messages; the time until a fresh console
holds them all, against a raw subscriber receiving the M messages.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from measure import PY, Child, _until, pct
from rawmqtt import RawClient

from devfleet_base import contract, trading
from devfleet_base.testing.broker import MosquittoBroker

TITLE = "Work trading: auctions and résumés"

_FULL = {"bidders": (10, 100, 1_000), "auctions": 100, "resumes": 10_000}
_QUICK = {"bidders": (10, 100), "auctions": 15, "resumes": 1_000}
_SKILL = "bench-skill"


# ---- the simulated bidders (child process) ---------------------------------------------------


async def _bidders(host: str, port: int, count: int, connections: int) -> None:
    ids = [f"bidder-{i:05d}" for i in range(count)]
    groups = [ids[i::connections] for i in range(connections)]
    clients: list[RawClient] = []

    def make(mine: list[str], index: int) -> Any:
        def on_message(topic: str, payload: bytes, retain: bool) -> None:
            if retain or not payload:
                return
            parts = topic.split("/")
            data = json.loads(payload)
            client = clients[index]
            if parts[2] == "request":
                request = trading.read(trading.REQUEST_SCHEMA, data)
                for agent in mine:
                    proposal = {"task": request["task"], "agent": agent, "name": agent, "node": f"sim{index}",
                                "cost": 0.01 + (hash(agent) % 1000) / 1e5, "eta": 1.0, "ts": time.time()}  # fmt: skip
                    trading.read(trading.PROPOSAL_SCHEMA, proposal)
                    client.publish(
                        contract.task_topic(request["task"], "proposal", agent),
                        json.dumps(proposal).encode(),
                        qos=1,
                    )
            elif parts[2] == "assign" and parts[3] in mine:
                a = trading.read(trading.ASSIGN_SCHEMA, data)
                out = {"task": a["task"], "assignment": a["assignment"], "agent": a["agent"], "node": f"sim{index}",
                       "step": "result", "status": "ok", "final": True, "result": a["inputs"], "ts": time.time()}  # fmt: skip
                client.publish(
                    contract.task_topic(a["task"], "output", "result"), json.dumps(out).encode(), qos=1
                )

        return on_message

    for index, mine in enumerate(groups):
        client = RawClient(f"bench-bidders-{index}", make(mine, index))
        clients.append(client)
        await client.connect(host, port)
        await client.subscribe([("tasks/+/request", 1), ("tasks/+/assign/+", 2)])
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it


# ---- requesters ------------------------------------------------------------------------------


async def _devfleet_auctions(broker: Any, bidders: int, count: int) -> list[float]:
    from devfleet_command.aio import AsyncFleet

    times = []
    async with AsyncFleet(broker.url, connect_timeout=60) as fleet:
        for _ in range(count):
            t0 = time.monotonic()
            outcome = await fleet.auction(_SKILL, {"n": 1}, deadline=30, expect=bidders)
            times.append(time.monotonic() - t0)
            if outcome["status"] != "ok" or outcome["proposals"] != bidders:
                raise RuntimeError(f"auction failed: {outcome}")
    return times


async def _floor_auctions(broker: Any, bidders: int, count: int) -> list[float]:
    proposals: dict[str, list[tuple[float, str]]] = {}
    outputs: dict[str, asyncio.Future[None]] = {}
    enough: dict[str, asyncio.Future[None]] = {}

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        parts = topic.split("/")
        if retain:
            return
        if parts[2] == "proposal":
            got = proposals.setdefault(parts[1], [])
            got.append((json.loads(payload)["cost"], parts[3]))
            fut = enough.get(parts[1])
            if fut is not None and len(got) >= bidders and not fut.done():
                fut.set_result(None)
        elif parts[2] == "output":
            out = outputs.get(parts[1])
            if out is not None and not out.done():
                out.set_result(None)

    client = await RawClient(f"floor-req-{contract.new_id()[:8]}", on_message).connect(
        broker.host, broker.port
    )
    await client.subscribe([("tasks/+/proposal/+", 1), ("tasks/+/output/+", 1)])
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(count):
        task = contract.new_id()
        enough[task], outputs[task] = loop.create_future(), loop.create_future()
        t0 = time.monotonic()
        request = {"task": task, "skill": _SKILL, "inputs": {"n": 1}, "bid_by": time.time() + 30}
        client.publish(contract.task_topic(task, "request"), json.dumps(request).encode(), qos=1)
        await asyncio.wait_for(enough[task], 60)
        _, agent = min(proposals[task])
        assign = {
            "task": task,
            "agent": agent,
            "assignment": contract.new_id(),
            "skill": _SKILL,
            "inputs": {"n": 1},
        }
        client.publish(contract.task_topic(task, "assign", agent), json.dumps(assign).encode(), qos=2)
        await asyncio.wait_for(outputs[task], 60)
        times.append(time.monotonic() - t0)
    client.close()
    return times


# ---- résumés -----------------------------------------------------------------------------------


async def _resumes(broker: Any, total: int) -> dict[str, Any]:
    from devfleet_command.aio import AsyncFleet

    pub = await RawClient("bench-resumes").connect(broker.host, broker.port)
    for i in range(total):
        body = {"skills": [_SKILL], "cost": {"usd": 0.01, "p95_ms": 300}, "region": "eu", "accredit": ["gdpr"],
                "agent": f"sim-{i}", "name": f"sim-{i}", "node": f"simnode{i % 100}", "kind": "actor",
                "pool": None, "session": 1, "version": 1, "ts": time.time()}  # fmt: skip
        pub.publish(contract.agent_topic(f"sim-{i}", "resume"), json.dumps(body).encode(), retain=True)
        if i % 500 == 0:
            await asyncio.sleep(0)
    await pub.publish_acked("bench/resumes", b"")
    pub.close()

    t0 = time.monotonic()
    fleet = AsyncFleet(broker.url, connect_timeout=120)
    await fleet.start()
    t1 = await _until(lambda: len(fleet.registry.resumes) >= total, 120)
    ours = t1 - t0
    await fleet.close()
    got = [0]

    def count(topic: str, payload: bytes, retain: bool) -> None:
        got[0] += 1

    t0 = time.monotonic()
    sub = await RawClient(f"floor-resumes-{contract.new_id()[:8]}", count).connect(broker.host, broker.port)
    sub.client.subscribe([("agents/+/resume", 0)])
    raw = await _until(lambda: got[0] >= total, 120) - t0
    sub.close()
    return {"resumes": total, "seconds": ours, "floor_seconds": raw}


# ---- the section -------------------------------------------------------------------------------


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    plan = _QUICK if quick else _FULL
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"auctions": []}
    with MosquittoBroker(max_queued_messages=1_000_000) as broker:
        for bidders in plan["bidders"]:
            connections = min(10, bidders)
            args = [PY, __file__, "bidders", broker.host, str(broker.port), str(bidders), str(connections)]
            with Child(args):
                count = plan["auctions"] if bidders < 1000 else max(10, plan["auctions"] // 5)
                await _devfleet_auctions(broker, bidders, 3)  # warm up both paths
                await _floor_auctions(broker, bidders, 3)
                ours = await _devfleet_auctions(broker, bidders, count)
                floor = await _floor_auctions(broker, bidders, count)
            got = {
                "bidders": bidders,
                "auctions": count,
                "p50_ms": pct(ours, 0.5) * 1000,
                "p99_ms": pct(ours, 0.99) * 1000,
                "floor_p50_ms": pct(floor, 0.5) * 1000,
                "floor_p99_ms": pct(floor, 0.99) * 1000,
                "mean_ms": statistics.mean(ours) * 1000,
            }
            details["auctions"].append(got)
            log(
                f"  auction, {bidders} bidders: p50 {got['p50_ms']:.1f} ms (floor {got['floor_p50_ms']:.1f}),"
                f" p99 {got['p99_ms']:.1f} ms (floor {got['floor_p99_ms']:.1f})"
            )
            for q in ("p50", "p99"):
                rows.append(
                    row(
                        f"auction {q}, {bidders} bidders (request → proposals → assign → output)",
                        got[f"{q}_ms"],
                        "ms",
                        got[f"floor_{q}_ms"],
                    )
                )
    with MosquittoBroker(max_queued_messages=1_000_000) as broker:
        res = await _resumes(broker, plan["resumes"])
    details["resumes"] = res
    log(
        f"  résumés: {res['resumes']} discovered in {res['seconds']:.2f} s (floor {res['floor_seconds']:.2f} s)"
    )
    rows.append(
        row(f"résumés of {res['resumes']} agents, fresh console", res["seconds"], "s", res["floor_seconds"])
    )
    return {"rows": rows, "details": details}


if __name__ == "__main__" and sys.argv[1:2] == ["bidders"]:
    asyncio.run(_bidders(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
