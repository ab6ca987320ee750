"""Every flow of the contract under the shipped ACL template, on a real mosquitto.

Two agents (users ``acl-a`` and ``acl-b``, named like their nodes) and an
operator (``op-console``) connect to a private mosquitto that loads
``deploy/mosquitto/acl`` unchanged. Each test runs one flow end to end and then
checks the broker log: no agent publish or subscription was denied. A last test
checks what the ACL is for: a node cannot write another node's topics.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_base import contract
from devfleet_base.testing import MosquittoBroker, MqttProbe, ProbeConnectError, ProbeError
from devfleet_base.testing.broker import free_port

ACL = Path(__file__).resolve().parents[1] / "mosquitto" / "acl"
NODES = ("acl-a", "acl-b")
OPERATOR = "op-console"
PASSWORDS = {name: f"pw-{name}" for name in (*NODES, OPERATOR)}

ECHO = "async def handle_task(agent, payload):\n    return {'echo': payload, 'node': agent.node}\n"
ASKER = (
    "async def setup(agent):\n"
    "    reply = await agent.send_to('acl-echo', {'q': 1}, timeout=10)\n"
    "    await agent.publish(f'nodes/{agent.node}/test/asker', reply)\n"
    "async def process(agent):\n"
    "    pass\n"
)
COUNTER = (
    "async def setup(agent):\n"
    "    agent.state['n'] = agent.recall('n', 0)\n"
    "async def process(agent):\n"
    "    agent.state['n'] += 1\n"
    "    agent.persist('n', agent.state['n'])\n"
    "async def handle_task(agent, payload):\n"
    "    return {'n': agent.recall('n', 0), 'node': agent.node}\n"
)


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    lines = ACL.read_text().splitlines()
    with MosquittoBroker(auth=True, users=PASSWORDS, acl=lines) as b:
        yield b


@pytest.fixture(scope="module")
def agents(
    broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, AgentThread]]:
    root = tmp_path_factory.mktemp("acl-agents")
    made = {}
    for name in NODES:
        settings = settings_for(
            broker,
            name,
            root / name,
            username=name,
            password=PASSWORDS[name],
            allow_code=True,
            state_dir=str(root / name / "actors"),
        )
        made[name] = AgentThread(settings).start()
    yield made
    for agent in made.values():
        agent.stop()


@pytest.fixture
def op(broker: MosquittoBroker, agents: dict[str, AgentThread]) -> Iterator[MqttProbe]:
    probe = MqttProbe.connect_to(broker, username=OPERATOR, password=PASSWORDS[OPERATOR], timeout=10)
    for name in NODES:
        probe.wait_for(f"nodes/{name}/status", lambda m: m.json().get("status") == "online")
    yield probe
    probe.close()


def node_probe(broker: MosquittoBroker, user: str) -> MqttProbe:
    """A client with a node's credentials (another client id than the agent's)."""
    return MqttProbe.connect_to(broker, username=user, password=PASSWORDS[user], timeout=10)


def denied_for_agents(broker: MosquittoBroker, since: int) -> list[str]:
    """Broker log lines after byte offset ``since`` that deny an agent anything."""
    text = broker.log_path.read_bytes()[since:].decode(errors="replace")
    agent_ids = "|".join(re.escape(f"devfleet-{n}") for n in NODES)
    return [line for line in text.splitlines() if "Denied" in line and re.search(agent_ids, line)]


@pytest.fixture
def log_mark(broker: MosquittoBroker) -> Iterator[int]:
    mark = broker.log_path.stat().st_size
    yield mark
    assert denied_for_agents(broker, mark) == []


def receipts(op: MqttProbe, inbox: str, cmd_id: str, count: int, since: int) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []

    def final(m: Any) -> bool:
        r = m.json()
        if r.get("id") == cmd_id and r.get("status") in ("ok", "error") and r not in done:
            done.append(r)
        return len(done) >= count

    op.wait_for(inbox, final, since=since)
    return done


def test_birth_and_descriptions_are_readable(op: MqttProbe, log_mark: int) -> None:
    for name in NODES:
        retained = op.retained(f"nodes/{name}/+")
        assert {"meta", "status", "state", "cfg"} <= {t.rsplit("/", 1)[1] for t in retained}
    op.wait_for("nodes/acl-a/heartbeat")


def test_node_fleet_and_group_commands_get_receipts(op: MqttProbe, log_mark: int) -> None:
    inbox = "replies/op-acl"
    op.subscribe(inbox)
    mark = op.mark()
    cmd = contract.Command.envelope({}, ttl=10, reply_to=inbox)
    op.publish("nodes/acl-a/cmd/ping", cmd)
    [r] = receipts(op, inbox, cmd["id"], 1, mark)
    assert r["status"] == "ok" and r["node"] == "acl-a"

    mark = op.mark()
    cmd = contract.Command.envelope({}, ttl=10, reply_to=inbox)
    op.publish("fleet/cmd/ping", cmd)
    got = receipts(op, inbox, cmd["id"], 2, mark)
    assert sorted(r["node"] for r in got) == list(NODES)

    mark = op.mark()
    cfg = contract.Command.envelope({"set": {"groups": ["lobby"]}}, ttl=10, reply_to=inbox)
    op.publish("nodes/acl-b/cmd/configure", cfg)
    assert receipts(op, inbox, cfg["id"], 1, mark)[0]["status"] == "ok"
    mark = op.mark()
    cmd = contract.Command.envelope({}, ttl=10, reply_to=inbox)
    op.publish("groups/lobby/cmd/ping", cmd)
    [r] = receipts(op, inbox, cmd["id"], 1, mark)
    assert r["node"] == "acl-b"
    # Without reply_to the receipt goes to the node's own receipts topic.
    op.subscribe("nodes/acl-a/receipts")
    mark = op.mark()
    cmd = contract.Command.envelope({}, ttl=10)
    op.publish("nodes/acl-a/cmd/ping", cmd)
    assert receipts(op, "nodes/acl-a/receipts", cmd["id"], 1, mark)[0]["status"] == "ok"


def test_desired_config_is_applied(op: MqttProbe, log_mark: int) -> None:
    mark = op.mark()
    desired = contract.Command.envelope({"set": {"description": "under acl"}}, ttl=60)
    op.publish("nodes/acl-a/cfg/desired", desired, retain=True)
    op.wait_for("nodes/acl-a/cfg", lambda m: m.json().get("applied_id") == desired["id"], since=mark)
    op.publish("nodes/acl-a/cfg/desired", None, retain=True)


def test_spawn_send_to_and_by_name_task(op: MqttProbe, log_mark: int) -> None:
    op.subscribe("agents/+/heartbeat")
    op.subscribe("nodes/acl-b/spawn")
    mark = op.mark()
    op.publish("nodes/acl-b/spawn", {"name": "acl-echo", "code": ECHO, "poll_interval": None}, retain=True)
    op.wait_for(
        "agents/+/heartbeat",
        lambda m: m.json()["name"] == "acl-echo" and m.json()["state"] == "running",
        since=mark,
    )
    # The node cleared its retained spawn (a write to its own subtree).
    op.wait_for("nodes/acl-b/spawn", lambda m: m.payload == b"", since=mark)
    assert op.retained("nodes/acl-b/spawn") == {}
    # send_to from an actor on acl-a to the actor on acl-b: the request on
    # agents/by-name/..., the answer on nodes/acl-a/reply/{id}.
    op.publish("nodes/acl-a/spawn", {"name": "acl-asker", "code": ASKER, "poll_interval": None})
    reply = op.wait_for("nodes/acl-a/test/asker", since=mark).json()
    assert reply == {"echo": {"q": 1}, "node": "acl-b"}
    # A by-name task from the operator, answered on the reply topic it names.
    mark = op.mark()
    op.subscribe("nodes/op-console/reply/+")
    op.publish(
        contract.by_name_task_topic("acl-echo"),
        {"_remote_task": True, "_reply_topic": "nodes/op-console/reply/t1", "payload": "hi"},
    )
    assert op.wait_for("nodes/op-console/reply/t1", since=mark).json() == {"echo": "hi", "node": "acl-b"}
    for node, name in (("acl-b", "acl-echo"), ("acl-a", "acl-asker")):
        op.publish(f"nodes/{node}/stop", {"name": name})


def test_migration_between_two_nodes(op: MqttProbe, log_mark: int) -> None:
    op.subscribe("agents/+/heartbeat")
    op.subscribe("nodes/acl-a/migrate_result")
    mark = op.mark()
    op.publish("nodes/acl-a/spawn", {"name": "acl-counter", "code": COUNTER, "poll_interval": 0.1})
    op.wait_for(
        "agents/+/heartbeat",
        lambda m: m.json()["name"] == "acl-counter" and m.json()["node"] == "acl-a",
        since=mark,
    )
    mark = op.mark()
    op.publish("nodes/acl-a/migrate", {"name": "acl-counter", "target_node": "acl-b", "timeout": 10})
    result = op.wait_for("nodes/acl-a/migrate_result", since=mark, timeout=15).json()
    assert result["success"] is True, result
    beat = op.wait_for(
        "agents/+/heartbeat",
        lambda m: m.json()["name"] == "acl-counter" and m.json()["node"] == "acl-b",
        since=mark,
    ).json()
    assert beat["migration"] is not None
    # The source stayed connected throughout: no will fired.
    assert not [
        m for m in op.messages("nodes/acl-a/status", since=mark) if m.json().get("status") != "online"
    ]
    op.publish("nodes/acl-b/stop", {"name": "acl-counter"})


def test_work_trading_topics(broker: MosquittoBroker, log_mark: int) -> None:
    """The contract's agent-to-agent topics, between two node identities."""
    a, b = node_probe(broker, "acl-a"), node_probe(broker, "acl-b")
    try:
        resume = contract.agent_topic(contract.actor_id("trader-b"), "resume")
        b.publish(resume, {"capabilities": ["lift"]}, retain=True)
        assert a.wait_for(resume).json() == {"capabilities": ["lift"]}
        steps = [
            (a, b, contract.task_topic("t1", "request"), False),
            (b, a, contract.task_topic("t1", "proposal", "trader-b"), False),
            (a, b, contract.task_topic("t1", "assign", "trader-b"), False),
            (b, a, contract.task_topic("t1", "output", "s1"), True),
        ]
        for sender, receiver, topic, retain in steps:
            receiver.subscribe(topic)
            mark = receiver.mark()
            sender.publish(topic, {"t": topic}, retain=retain)
            assert receiver.wait_for(topic, since=mark).json() == {"t": topic}
        b.publish(resume, None, retain=True)
        b.publish(contract.task_topic("t1", "output", "s1"), None, retain=True)
    finally:
        a.close()
        b.close()


def test_operators_keep_fleet_jobs_under_jobs(op: MqttProbe, log_mark: int) -> None:
    """A job's retained records (docs/jobs.md) are written and read back by an operator."""
    topics = [contract.job_topic("jacl1", "spec"), contract.job_node_topic("jacl1", "acl-a")]
    try:
        for topic in topics:
            op.publish(topic, {"job": "jacl1"}, retain=True)
        retained = op.retained(contract.job_filter("jacl1"))
        assert {t: m.json() for t, m in retained.items()} == {t: {"job": "jacl1"} for t in topics}
    finally:
        for topic in topics:
            op.publish(topic, None, retain=True)


TRADER = "async def run(agent, job):\n    return {'node': agent.node, 'inputs': job['inputs']}\n"


def _trader(name: str, accredit: list[str]) -> dict[str, Any]:
    resume = {"skills": ["triage"], "cost": {"usd": 0.01, "p95_ms": 100}, "accredit": accredit}
    return {"name": name, "code": TRADER, "poll_interval": None, "resume": resume, "pool": "acl-pool"}


@pytest.fixture(scope="module")
def traders(broker: MosquittoBroker, agents: dict[str, AgentThread]) -> Iterator[Any]:
    """The console (operator credentials) with a trading actor on each node: acl-a's
    holds the gdpr accreditation, acl-b's does not."""
    from devfleet_command.sync import Fleet

    with Fleet.connect(broker.url, username=OPERATOR, password=PASSWORDS[OPERATOR]) as fleet:
        fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in NODES), timeout=20)
        fleet.spawn("acl-a", _trader("triage-a", ["gdpr"]))
        fleet.spawn("acl-b", _trader("triage-b", []))
        fleet.wait_for(lambda m: len(fleet.aio.resumes("triage")) == 2, timeout=20)
        yield fleet
        for node, name in (("acl-a", "triage-a"), ("acl-b", "triage-b")):
            fleet.stop_actor(node, name)


def test_auction_and_worker_pool_by_real_agents(traders: Any, log_mark: int) -> None:
    """Résumés, an auction (request, proposals, assign at QoS 2, retained output) and a
    pool run through $share, all under the template."""
    outcome = traders.auction("triage", {"case": 1}, deadline=5, constraints={"accredit": ["gdpr"]})
    assert outcome["status"] == "ok" and outcome["node"] == "acl-a", outcome
    report = traders.pool_run("acl-pool", list(range(40)), ack_timeout=5.0, timeout=60)
    assert report["done"] == 40 and report["errors"] == 0 and report["duplicates"] == 0
    assert set(report["spread"]) <= set(NODES)


def test_patient_data_needs_the_gdpr_accreditation(
    traders: Any, broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The seed's policy: the ACL generated from the résumés (``devfleet acl generate``)
    lets acl-a (gdpr) read patient-data topics and refuses acl-b's subscription, on a
    real mosquitto that loads it."""
    import subprocess
    import sys

    devfleet = str(Path(sys.executable).with_name("devfleet"))
    cmd = [
        devfleet,
        "--broker",
        broker.url,
        "--username",
        OPERATOR,
        "acl",
        "generate",
        "--template",
        str(ACL),
    ]
    env = {**os.environ, "DEVFLEET_PASSWORD": PASSWORDS[OPERATOR]}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "user acl-a\ntopic readwrite patient-data/#" in done.stdout
    assert "user acl-b" not in done.stdout
    with MosquittoBroker(auth=True, users=PASSWORDS, acl=done.stdout.splitlines()) as policed:
        a, b = node_probe(policed, "acl-a"), node_probe(policed, "acl-b")
        op = MqttProbe.connect_to(policed, username=OPERATOR, password=PASSWORDS[OPERATOR], timeout=10)
        try:
            a.subscribe("patient-data/#")
            # mosquitto 2.0 refuses the subscription outright, or grants the filter and
            # drops every message the ACL does not let acl-b read: nothing arrives either way.
            for topic_filter in ("patient-data/#", "patient-data/ward-3/p-17"):
                with contextlib.suppress(ProbeError):
                    b.subscribe(topic_filter)
            b.subscribe("tasks/#")  # the rest of its flows stay open
            op.publish("patient-data/ward-3/p-17", {"hr": 71}, retain=True)
            assert a.wait_for("patient-data/#").json() == {"hr": 71}
            op.publish("tasks/marker/request", "m")
            b.wait_for("tasks/marker/request")  # b is connected and reading; patient data never came
            assert b.messages("patient-data/#") == []
            late = node_probe(policed, "acl-b")  # a retained record is not replayed to it either
            try:
                with contextlib.suppress(ProbeError):
                    late.subscribe("patient-data/#")
                late.subscribe("tasks/marker/+")
                op.publish("tasks/marker/request", "m2")
                late.wait_for("tasks/marker/+")
                assert late.messages("patient-data/#") == []
            finally:
                late.close()
        finally:
            for probe in (a, b, op):
                probe.close()


@pytest.mark.parametrize(
    "topic",
    [
        "nodes/acl-a/status",  # forge another node's description
        "nodes/acl-a/cmd/restart",  # command another node
        "nodes/acl-a/spawn",  # run code on another node
        "nodes/acl-a/handoff/acl-b",  # pose as another node's migration
        "fleet/cmd/ping",  # broadcast to the fleet
        "groups/lobby/cmd/ping",
        "jobs/j1/status",  # forge a fleet job's progress
        "jobs/j1/control",  # abort a fleet job
    ],
)
def test_a_node_cannot_write_another_nodes_topics(broker: MosquittoBroker, op: MqttProbe, topic: str) -> None:
    intruder = node_probe(broker, "acl-b")
    try:
        op.subscribe(topic)
        op.subscribe("nodes/op-console/marker")
        mark = op.mark()
        with pytest.raises(ProbeError, match="Not authorized"):
            intruder.publish(topic, {"status": "offline", "id": "x1"})
        # A marker through the same broker proves the forged message was dropped, not late.
        op.publish("nodes/op-console/marker", "m")
        op.wait_for("nodes/op-console/marker", since=mark)
        assert [m for m in op.messages(topic, since=mark) if not m.retain] == []
    finally:
        intruder.close()


CONF = ACL.with_name("mosquitto.conf")


class ShippedBroker(MosquittoBroker):
    """mosquitto with deploy/mosquitto/mosquitto.conf itself, its paths and ports moved
    into a temporary directory and onto loopback."""

    def __init__(self) -> None:
        super().__init__(auth=True, users=PASSWORDS, acl=ACL.read_text().splitlines(), tls=True)
        self.plain_port = free_port()

    def start(self) -> None:
        super().start()  # waits for the TLS listener; mosquitto opens the plain one right after
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.plain_port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # polling a condition with a deadline

    def _write_config(self) -> None:
        self._prepare_files()
        assert self.tls is not None
        text = CONF.read_text()
        for old, new in {
            "/etc/devfleet/mosquitto/passwd": self.dir / "passwd",
            "/etc/devfleet/mosquitto/acl": self.dir / "acl",
            "/etc/devfleet/mosquitto/ca.crt": self.tls.ca_path,
            "/etc/devfleet/mosquitto/server.crt": self.tls.server_cert,
            "/etc/devfleet/mosquitto/server.key": self.tls.server_key,
            "/var/lib/devfleet-mosquitto/": f"{self.dir}/",
            "listener 8883\n": f"listener {self.port} 127.0.0.1\n",
            "listener 1883 127.0.0.1\n": f"listener {self.plain_port} 127.0.0.1\n",
        }.items():
            assert str(old) in text, old
            text = text.replace(str(old), str(new))
        # Only used when the tests run as root (mosquitto then drops to this user).
        text += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        self.config_path.write_text(text)


def test_the_shipped_broker_config(tmp_path: Path) -> None:
    """TLS for nodes, plain loopback for the operator, the ACL, and persistence across a restart."""
    with ShippedBroker() as broker:
        settings = settings_for(
            broker, "acl-a", tmp_path / "a", username="acl-a", password=PASSWORDS["acl-a"], tls=True,
            tls_ca=str(broker.ca_path),
        )  # fmt: skip
        op = MqttProbe(
            broker.host, broker.plain_port, username=OPERATOR, password=PASSWORDS[OPERATOR], timeout=10
        )
        op.connect()
        try:
            with AgentThread(settings):
                op.wait_for("nodes/acl-a/status", lambda m: m.json().get("status") == "online")
            op.publish("nodes/op-console/kept", {"kept": True}, retain=True)
            connects = op.connect_count
            broker.restart()
            op.wait_connected(after=connects)
            assert op.retained("nodes/op-console/kept")["nodes/op-console/kept"].json() == {"kept": True}
            assert op.retained("nodes/acl-a/status")["nodes/acl-a/status"].json()["status"] == "offline"
        finally:
            op.close()
        # Anonymous clients are refused on both listeners.
        with pytest.raises(ProbeConnectError):
            MqttProbe(broker.host, broker.plain_port, timeout=5).connect()
