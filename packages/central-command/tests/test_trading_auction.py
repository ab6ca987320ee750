"""Work trading end to end: résumés, auctions, at-most-once assignments, lost assignees.

Real agents (subprocesses, so one can be killed with kill -9), real mosquitto,
the console library and CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devfleet_base.testing import MqttProbe
from devfleet_command.cli import main
from devfleet_command.sync import Fleet

WORKER = """
async def bid(agent, request):
    if request['inputs'] == 'decline':
        return None
    return {'cost': agent.recall('price', 0.05), 'eta': 2.0}

async def run(agent, assignment):
    runs = agent.recall('runs', 0) + 1
    agent.persist('runs', runs)
    if assignment['inputs'] == 'hang':
        import asyncio
        await asyncio.sleep(60)
    return {'by': agent.name, 'node': agent.node, 'runs': runs, 'echo': assignment['inputs']}
"""


def spec(name: str, price: float, *, accredit: list[str] | None = None) -> dict[str, Any]:
    code = WORKER.replace("agent.recall('price', 0.05)", repr(price))
    return {
        "name": name,
        "code": code,
        "poll_interval": None,
        "resume": {
            "skills": ["sql-optimiser"],
            "cost": {"usd": price, "p95_ms": 350},
            "region": "eu-central-1",
            "accredit": accredit or [],
        },
    }


def _online(fleet: Fleet, *names: str) -> None:
    fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in names), timeout=20)


def _resumes(fleet: Fleet, count: int) -> list[dict[str, Any]]:
    fleet.wait_for(lambda m: len(fleet.aio.resumes("sql-optimiser")) >= count, timeout=20)
    return fleet.resumes("sql-optimiser")


def test_resumes_auction_cheapest_and_constraints(mosquitto: Any, agents: Any, capsys: Any) -> None:
    agents.start("tr-a", "--allow-code")
    agents.start("tr-b", "--allow-code")
    with Fleet.connect(mosquitto.url) as fleet:
        _online(fleet, "tr-a", "tr-b")
        fleet.spawn("tr-a", spec("cheap", 0.01))
        fleet.spawn("tr-b", spec("dear", 0.05, accredit=["gdpr"]))
        found = _resumes(fleet, 2)
        assert {r["name"]: r["node"] for r in found} == {"cheap": "tr-a", "dear": "tr-b"}
        assert all(r["available"] for r in found)
        assert found[0]["skills"] == ["sql-optimiser"] and found[0]["kind"] == "actor"

        outcome = fleet.auction("sql-optimiser", {"q": 1}, deadline=5)
        assert outcome["status"] == "ok", outcome
        assert outcome["name"] == "cheap" and outcome["proposals"] == 2
        assert outcome["result"]["echo"] == {"q": 1}
        assert outcome["seconds"] < 5  # closed early: every registered bidder answered

        outcome = fleet.auction("sql-optimiser", 2, deadline=5, constraints={"accredit": ["gdpr"]})
        assert outcome["status"] == "ok" and outcome["name"] == "dear"

        outcome = fleet.auction("sql-optimiser", "decline", deadline=0.5, expect=0)
        assert outcome["status"] == "no_bids" and outcome["proposals"] == 0

        # The output is retained: a late joiner sees it.
        done = fleet.auction("sql-optimiser", "late", deadline=5)
        with MqttProbe.connect_to(mosquitto) as late:
            got = late.wait_for(f"tasks/{done['task']}/output/+", timeout=10)
            assert got.retain and got.json()["result"]["echo"] == "late"

        # Stopping the actor clears its résumé.
        fleet.stop("tr-a", "cheap")
        fleet.wait_for(lambda m: len(fleet.aio.resumes("sql-optimiser")) == 1, timeout=10)

    code = main(["--broker", mosquitto.url, "resumes", "--skill", "sql-optimiser", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)] == ["dear"]
    code = main(["--broker", mosquitto.url, "task", "submit", "--skill", "sql-optimiser", "--inputs", '{"x": 3}',
                 "--deadline", "5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["result"]["echo"] == {"x": 3}
    code = main(["--broker", mosquitto.url, "task", "submit", "--skill", "nobody", "--deadline", "0.3"])
    out, err = capsys.readouterr()
    assert code == 1 and "no_bids" in (out + err)
