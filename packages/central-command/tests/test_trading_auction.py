"""Work trading end to end: résumés, auctions, at-most-once assignments, lost assignees.

Real agents (subprocesses, so one can be killed with kill -9), real mosquitto (and
NATS, a broker without QoS 2),
the console library and CLI.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentProcess
from devfleet_base.testing import MqttProbe
from devfleet_base.testing.broker import free_port
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
    inputs = assignment['inputs']
    if isinstance(inputs, dict) and inputs.get('hang') == agent.name:
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
        fleet.stop_actor("tr-a", "cheap")
        fleet.wait_for(lambda m: len(fleet.aio.resumes("sql-optimiser")) == 1, timeout=10)

    code = main(["--broker", mosquitto.url, "resumes", "--skill", "sql-optimiser", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)] == ["dear"]
    code = main(["--broker", mosquitto.url, "resumes"])
    out, err = capsys.readouterr()
    assert code == 0 and "dear" in out and "tr-b" in out and "gdpr" in out, out + err
    code = main(
        [
            "--broker",
            mosquitto.url,
            "task",
            "submit",
            "--skill",
            "sql-optimiser",
            "--inputs",
            '{"x": 3}',
            "--deadline",
            "5",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["result"]["echo"] == {"x": 3}
    code = main(["--broker", mosquitto.url, "task", "submit", "--skill", "nobody", "--deadline", "0.3"])
    out, err = capsys.readouterr()
    assert code == 1 and "no_bids" in (out + err)


def _assign(probe: MqttProbe, agent: str, assignment: str, inputs: Any) -> dict[str, Any]:
    """Publish an assignment at QoS 1 (a broker without QoS 2) and return its output."""
    task = f"t-{assignment}"
    mark = probe.mark()
    payload = {
        "task": task,
        "agent": agent,
        "assignment": assignment,
        "skill": "sql-optimiser",
        "inputs": inputs,
    }
    probe.publish(f"tasks/{task}/assign/{agent}", payload, qos=1)
    got = probe.wait_for(f"tasks/{task}/output/result", lambda m: bool(m.payload), timeout=20, since=mark)
    out: dict[str, Any] = got.json()
    return out


def test_an_assignment_runs_at_most_once_also_across_a_crash(mosquitto: Any, agents: Any) -> None:
    node = agents.start("tr-once", "--allow-code")
    with Fleet.connect(mosquitto.url) as fleet, MqttProbe.connect_to(mosquitto) as probe:
        _online(fleet, "tr-once")
        fleet.spawn("tr-once", spec("once", 0.01))
        agent = _resumes(fleet, 1)[0]["agent"]
        assert _assign(probe, agent, "a-1", "x")["result"]["runs"] == 1
        again = _assign(probe, agent, "a-1", "x")  # redelivered: answered again, not run
        assert again["result"]["runs"] == 1 and again["assignment"] == "a-1"
        assert _assign(probe, agent, "a-2", "y")["result"]["runs"] == 2

        node.kill()  # kill -9: no clean withdraw, the résumé stays retained...
        node.start()
        _online(fleet, "tr-once")
        # ...until the next start clears what no running actor claims.
        fleet.wait_for(lambda m: not fleet.aio.resumes("sql-optimiser"), timeout=20)
        fleet.spawn("tr-once", spec("once", 0.01), replace=True)
        fleet.wait_for(lambda m: any(r["available"] for r in fleet.aio.resumes("sql-optimiser")), timeout=20)
        assert _assign(probe, agent, "a-1", "x")["result"]["runs"] == 1  # kept on disk
        assert _assign(probe, agent, "a-3", "z")["result"]["runs"] == 3


def test_a_lost_or_silent_assignee_passes_the_task_to_the_next_bidder(mosquitto: Any, agents: Any) -> None:
    cheap = agents.start("tr-lost", "--allow-code")
    agents.start("tr-next", "--allow-code")
    with Fleet.connect(mosquitto.url) as fleet:
        _online(fleet, "tr-lost", "tr-next")
        fleet.spawn("tr-lost", spec("flaky", 0.01))
        fleet.spawn("tr-next", spec("steady", 0.02))
        _resumes(fleet, 2)

        # Silent: the cheapest hangs past its eta (2 s) + grace; the next one answers,
        # and the silent one is told to stop (its late output would replace the chosen one).
        with MqttProbe.connect_to(mosquitto) as logs:
            logs.subscribe("agents/+/logs")
            outcome = fleet.auction("sql-optimiser", {"hang": "flaky"}, deadline=5, grace=0.5)
            assert outcome["status"] == "ok" and outcome["name"] == "steady", outcome
            logs.wait_for("agents/+/logs", lambda m: "cancelled by the requester" in m.text(), timeout=10)
        assert outcome["attempts"] == [
            {"agent": outcome["attempts"][0]["agent"], "node": "tr-lost", "reason": "silent past its eta"}
        ]

        # Lost: the cheapest's node dies (kill -9: its will says lost) while it works.
        import threading

        # Subscribed before the auction starts: bidding closes as soon as both have bid, so
        # the assignment can go out within milliseconds.
        with MqttProbe.connect_to(mosquitto) as watch:
            watch.subscribe("tasks/+/assign/+")

            def kill_when_assigned() -> None:
                watch.wait_for("tasks/+/assign/+", timeout=20)
                cheap.kill()

            killer = threading.Thread(target=kill_when_assigned)
            killer.start()
            outcome = fleet.auction("sql-optimiser", {"hang": "flaky"}, deadline=5, grace=30)
            killer.join()
        assert outcome["name"] == "steady", outcome
        assert [a["node"] for a in outcome["attempts"]] == ["tr-lost"]
        assert outcome["attempts"][0]["reason"] == "node lost"
        lost = [r for r in fleet.resumes() if r["node"] == "tr-lost"]
        assert lost and not lost[0]["available"] and lost[0]["node_status"] == "lost"


NATS = shutil.which("nats-server")


class NatsBroker:
    """A private nats-server with JetStream and its MQTT listener on loopback."""

    def __init__(self, root: Path) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.url = f"mqtt://{self.host}:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "nats.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{free_port()}"\nserver_name: "trading"\n'
            f'jetstream {{ store_dir: "{root / "js"}" }}\n'
            f'mqtt {{ listen: "127.0.0.1:{self.port}" }}\n'
        )
        assert NATS is not None
        self.proc = subprocess.Popen(
            [NATS, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("nats-server did not open its MQTT port") from None
                time.sleep(0.02)  # polling a condition with a deadline

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsBroker]:
    if NATS is None:
        pytest.skip("nats-server is not installed")
    broker = NatsBroker(tmp_path / "nats")
    yield broker
    broker.close()


def test_auction_and_redelivered_assignment_on_nats(nats: NatsBroker, tmp_path: Path) -> None:
    data = tmp_path / "nq"
    proc = AgentProcess(
        broker=nats.host, port=nats.port, name="tr-nats", data_dir=data,
        extra=["--state-dir", str(data), "--allow-code"], env={"PYTHONUNBUFFERED": "1"},
    ).start()  # fmt: skip
    try:
        with Fleet.connect(nats.url) as fleet:
            _online(fleet, "tr-nats")
            fleet.spawn("tr-nats", spec("natsy", 0.01))
            agent = _resumes(fleet, 1)[0]["agent"]
            outcome = fleet.auction("sql-optimiser", {"q": 1}, deadline=5, assign_qos=1)
            assert outcome["status"] == "ok" and outcome["result"]["runs"] == 1, outcome
            with MqttProbe(nats.host, nats.port, protocol="3.1.1", timeout=20) as probe:
                probe.connect()
                assert _assign(probe, agent, "n-1", "x")["result"]["runs"] == 2
                assert _assign(probe, agent, "n-1", "x")["result"]["runs"] == 2  # not run again
    finally:
        proc.__exit__()
