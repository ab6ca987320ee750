"""The broker conformance matrix: the same devfleet scenarios on every broker we support.

Brokers: mosquitto with MQTT 5 and with 3.1.1, the embedded amqtt broker (3.1.1), a
single NATS node, and a 3-node NATS cluster with the agents on one node and the console
on another (NATS speaks 3.1.1 only). Run it with ``python3 dev.py nox -s conformance``.

Each broker gets one environment (two real agents as subprocesses and a console); the
scenarios run in file order against it: discovery, commands with receipts, broadcasts,
versioned config, Wactorz actors, work trading, then the destructive ones (will on
kill -9, purge).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentProcess
from devfleet_base.testing import EmbeddedBroker, MosquittoBroker, NatsCluster
from devfleet_command.errors import CommandFailed
from devfleet_command.sync import Fleet

pytestmark = pytest.mark.timeout(120)

BROKERS = ["mosquitto-5", "mosquitto-3.1.1", "amqtt", "nats", "nats-cluster"]

COUNTER = """
async def setup(agent):
    agent.state['n'] = 0

async def handle_task(agent, payload):
    agent.state['n'] += 1
    return {'n': agent.state['n'], 'node': agent.node}
"""


@dataclass
class Env:
    """One broker with two agents (``c1`` in group ``g``, ``c2``) and how to reach it."""

    kind: str
    agent_url: str
    console_url: str
    protocol: str
    root: Path
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    def console(self, **kwargs: Any) -> Fleet:
        return Fleet.connect(self.console_url, protocol=self.protocol, connect_timeout=20, **kwargs)

    def start_agent(self, name: str) -> None:
        data = self.root / name
        self.agents[name] = AgentProcess(
            broker=self.agent_url,
            port=1883,
            name=name,
            data_dir=data,
            extra=["--state-dir", str(data), "--protocol", self.protocol, "--keepalive", "5", "--allow-code"],
            env={"PYTHONUNBUFFERED": "1"},
        ).start()


def _start_broker(kind: str) -> tuple[Any, str, str, str]:
    """(closeable, agent URL, console URL, protocol)."""
    if kind.startswith("mosquitto"):
        broker = MosquittoBroker()
        broker.start()
        return broker, broker.url, broker.url, kind.split("-", 1)[1]
    if kind == "amqtt":
        embedded = EmbeddedBroker()
        embedded.start()
        return embedded, embedded.url, embedded.url, "3.1.1"
    cluster = NatsCluster(1 if kind == "nats" else 3)
    cluster.start()
    return cluster, cluster.urls[0], cluster.urls[-1], "3.1.1"


@pytest.fixture(scope="module", params=BROKERS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    kind = request.param
    if kind == "amqtt":
        pytest.importorskip("amqtt")
    broker, agent_url, console_url, protocol = _start_broker(kind)
    e = Env(kind, agent_url, console_url, protocol, tmp_path_factory.mktemp(kind))
    try:
        e.start_agent("c1")
        e.start_agent("c2")
        yield e
    finally:
        for proc in e.agents.values():
            proc.__exit__()
        broker.close()


def _online(m: Any, *names: str) -> bool:
    return all((v := m.get(n)) is not None and v.online and v.cfg is not None for n in names)


def test_birth_and_discovery(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c1", "c2"), timeout=40)
        for name in ("c1", "c2"):
            view = fleet.node(name)
            assert view.meta is not None and view.meta.get("broker")
            assert view.config_version is not None


def test_commands_with_receipts(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c1"), timeout=30)
        assert fleet.call("c1", "ping", timeout=20)["pong"] is True
        with pytest.raises(CommandFailed) as refused:
            fleet.call("c1", "no_such_verb", timeout=20)
        assert refused.value.code  # a receipt with a code, not a timeout


def test_fleet_and_group_broadcasts(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c1", "c2"), timeout=30)
        fleet.config_set("c1", {"groups": ["g"]}, timeout=20)
        fleet.wait_for(lambda m: "g" in m.get("c1").groups, timeout=20)
        everyone = fleet.broadcast("ping", timeout=20)
        assert sorted(everyone.succeeded) == ["c1", "c2"]
        group = fleet.broadcast("ping", group="g", timeout=20)
        assert sorted(group.succeeded) == ["c1"]


def test_versioned_config(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c2"), timeout=30)
        before = fleet.config_get("c2", timeout=20)["config_version"]
        after = fleet.config_set("c2", {"telemetry.interval": 7.0}, timeout=20)
        assert after == before + 1
        got = fleet.config_get("c2", timeout=20)
        assert got["config_version"] == after and got["config"]["telemetry"]["interval"] == 7.0


def test_wactorz_spawn_list_stop(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c1"), timeout=30)
        fleet.spawn("c1", {"name": "counter", "code": COUNTER}, timeout=40)
        fleet.wait_for(lambda m: "counter" in (m.get("c1").state_actors or {}), timeout=30)
        assert any(a.get("name") == "counter" for a in fleet.actors("c1"))
        assert fleet.task("counter", {"x": 1}, timeout=20)["node"] == "c1"
        fleet.stop_actor("c1", "counter", timeout=30)
        fleet.wait_for(lambda m: "counter" not in (m.get("c1").state_actors or {}), timeout=30)


WORKER = """
async def bid(agent, request):
    return {'cost': 0.01, 'eta': 1.0}

async def run(agent, assignment):
    return {'node': agent.node, 'echo': assignment['inputs']}
"""


def test_work_trading(env: Env) -> None:
    """A résumé, an auction (request, proposal, assign, output) on every broker;
    NATS has no QoS 2, so the assignment goes at QoS 1 there."""
    spec = {
        "name": "worker",
        "code": WORKER,
        "poll_interval": None,
        "resume": {"skills": ["conformance"], "cost": {"usd": 0.01}},
    }
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c1"), timeout=30)
        fleet.spawn("c1", spec, timeout=40)
        fleet.wait_for(lambda m: len(fleet.aio.resumes("conformance")) >= 1, timeout=30)
        qos = {"assign_qos": 1} if env.kind.startswith("nats") else {}
        outcome = fleet.auction("conformance", {"q": 1}, deadline=10, **qos)
        assert outcome["status"] == "ok", outcome
        assert outcome["result"] == {"node": "c1", "echo": {"q": 1}}
        fleet.stop_actor("c1", "worker", timeout=30)


def test_will_on_kill_9(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: _online(m, "c2"), timeout=30)
        killed = time.monotonic()
        env.agents["c2"].kill()
        fleet.wait_for(lambda m: (v := m.get("c2")) is not None and v.status == "lost", timeout=40)
        print(f"\n{env.kind}: will seen {time.monotonic() - killed:.2f} s after kill -9")


def test_purge(env: Env) -> None:
    with env.console() as fleet:
        fleet.wait_for(lambda m: (v := m.get("c2")) is not None and v.status == "lost", timeout=30)
        cleared = fleet.purge("c2", timeout=20)
        assert cleared
    with env.console() as fresh:
        fresh.wait_for(lambda m: _online(m, "c1"), timeout=30)
        assert fresh.model.get("c2") is None
