"""A signed fleet under the shipped ACL template, on a real mosquitto: the console's
library (with an operator identity) drives two signed agents through broadcast,
configure, desired config, spawn, task, migration and stop, and the broker denies
the agents nothing. Signatures add no topic, so the ACL needs no change for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_base.signing import Identity
from devfleet_base.testing import MosquittoBroker
from devfleet_command import AsyncFleet

ACL = Path(__file__).resolve().parents[1] / "mosquitto" / "acl"
NODES = ("sig-a", "sig-b")
OPERATOR = "op-console"
PASSWORDS = {name: f"pw-{name}" for name in (*NODES, OPERATOR)}
COUNTER = (
    "async def setup(agent):\n"
    "    agent.state['n'] = agent.recall('n', 0)\n"
    "async def process(agent):\n"
    "    agent.state['n'] += 1\n"
    "    agent.persist('n', agent.state['n'])\n"
    "async def handle_task(agent, payload):\n"
    "    return {'n': agent.recall('n', 0), 'node': agent.node}\n"
)


@pytest.fixture
def fleet_parts(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, Identity]]:
    operator = Identity.generate(OPERATOR)
    with MosquittoBroker(auth=True, users=PASSWORDS, acl=ACL.read_text().splitlines()) as broker:
        agents = []
        for name in NODES:
            key = operator.issue_node(name).save(tmp_path / f"{name}.json")
            settings = settings_for(
                broker,
                name,
                tmp_path / name,
                username=name,
                password=PASSWORDS[name],
                allow_code=True,
                signing_key_file=str(key),
                state_dir=str(tmp_path / name / "actors"),
            )
            agents.append(AgentThread(settings).start())
        try:
            yield broker, operator
        finally:
            for agent in agents:
                agent.stop()


async def test_every_console_flow_of_a_signed_fleet_under_the_acl(
    fleet_parts: tuple[MosquittoBroker, Identity],
) -> None:
    broker, operator = fleet_parts
    mark = broker.log_path.stat().st_size
    async with AsyncFleet.connect(
        broker.url, username=OPERATOR, password=PASSWORDS[OPERATOR], identity=operator
    ) as fleet:
        await fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in NODES), timeout=20)
        bc = await (await fleet.broadcast("ping", timeout=10)).wait()
        assert bc.succeeded == list(NODES)
        assert await fleet.config_set("sig-a", {"description": "signed"}) is not None
        await fleet.config_set("sig-b", {"description": "desired"}, desired=True)
        await fleet.wait_for(lambda m: (m.get("sig-b").config or {}).get("description") == "desired", 20)
        await fleet.spawn("sig-a", {"name": "sig-counter", "code": COUNTER, "poll_interval": 0.1})
        assert (await fleet.task("sig-counter", {}))["node"] == "sig-a"
        moved = await fleet.migrate("sig-counter", "sig-b", timeout=15)
        assert moved["success"] is True and moved["to_node"] == "sig-b"
        assert (await fleet.task("sig-counter", {}))["node"] == "sig-b"
        await fleet.stop_actor("sig-b", "sig-counter")
        assert fleet.refused_receipts == 0 and fleet.refused_descriptions == 0
    log = broker.log_path.read_bytes()[mark:].decode(errors="replace")
    denied = [line for line in log.splitlines() if "Denied" in line and re.search(r"devfleet-sig-[ab]", line)]
    assert denied == []
