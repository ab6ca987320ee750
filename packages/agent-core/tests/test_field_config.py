"""Field failures in config storage (issue 17: 9 version reuse, 10 poison config), over a real broker."""

from __future__ import annotations

import asyncio
import json

import pytest

from devfleet_base import contract
from devfleet_base.contract import TopicMatch
from devfleet_base.errors import ContractError


def _online(msg):
    return msg.json()["status"] == "online"


def _configure(probe, node, args, cmd_id, *, raw=None):
    inbox = f"replies/{cmd_id}"
    probe.subscribe(inbox)
    env = raw or contract.encode(contract.Command.envelope(args, id=cmd_id, reply_to=inbox))
    probe.publish(contract.node_command_topic(node, "configure"), env)
    return probe.wait_for(inbox, lambda m: m.json()["status"] != "accepted").json()


def test_a_damaged_newest_version_never_gets_its_number_reused(agent_factory, probe, tmp_path):
    probe.subscribe("nodes/vers1/cfg")
    agent = agent_factory("vers1")
    probe.wait_for("nodes/vers1/status", _online)
    for i, desc in enumerate(("first", "second"), start=1):
        assert _configure(probe, "vers1", {"set": {"description": desc}}, f"v-{i}")["result"] == {
            "config_version": i
        }
    agent.stop()
    config_dir = tmp_path / "vers1" / "config"
    damaged = (config_dir / "v2.json").read_bytes()[:20]  # a power cut lost the page cache
    (config_dir / "v2.json").write_bytes(damaged)
    orphans = [config_dir / f".v{n}.json.k{n}x9q.tmp" for n in (2, 3)]  # kill -9 mid-write
    for orphan in orphans:
        orphan.write_text('{"half": ')
    mark = probe.mark()
    agent_factory("vers1")
    cfg = probe.wait_for("nodes/vers1/cfg", since=mark).json()
    assert cfg["config_version"] == 1 and "v2" in cfg["recovered_from"]
    assert not any(o.exists() for o in orphans)
    receipt = _configure(probe, "vers1", {"set": {"description": "third"}}, "v-3")
    assert receipt["result"] == {"config_version": 3}  # not 2: v2 named other content
    assert (config_dir / "v2.json").read_bytes() == damaged
    assert json.loads((config_dir / "v3.json").read_text())["config"]["description"] == "third"


def test_poison_config_is_refused_and_nothing_is_written(agent_factory, probe, tmp_path):
    agent_factory("poison1")
    probe.wait_for("nodes/poison1/status", _online)
    raw = (
        b'{"id":"inf-1","args":{"set":{"components.nosuch.settings":{"v":1e400}}},"reply_to":"replies/inf-1"}'
    )
    receipt = _configure(probe, "poison1", None, "inf-1", raw=raw)
    assert receipt["status"] == "error" and receipt["code"] == "invalid"
    assert "not a finite number" in receipt["message"]
    assert not list((tmp_path / "poison1" / "config").glob("v*.json"))
    # The node is still readable and writable.
    got = _configure(probe, "poison1", {"set": {"description": "fine"}}, "ok-1")
    assert got["result"] == {"config_version": 1}
    probe.subscribe("replies/get-1")  # before the command: the answer can beat a later subscription
    probe.publish(
        "nodes/poison1/cmd/config_get", contract.Command.envelope(id="get-1", reply_to="replies/get-1")
    )
    answer = probe.wait_for("replies/get-1", lambda m: m.json()["status"] == "ok").json()
    assert answer["result"]["config"]["description"] == "fine"


def test_a_poisoned_file_on_disk_is_skipped_at_start(agent_factory, probe, tmp_path):
    config_dir = tmp_path / "poison2" / "config"
    config_dir.mkdir(parents=True)
    # What an agent before this fix wrote: JSON with Infinity in it.
    (config_dir / "v1.json").write_text(
        '{"version": 1, "applied_id": "inf-1", "updated_at": 1.0, "config": {"description": "", '
        '"components": {"x": {"settings": {"v": Infinity}}}}}'
    )
    agent_factory("poison2")
    cfg = probe.wait_for("nodes/poison2/cfg").json()
    assert cfg["config_version"] == 0 and "v1" in cfg["recovered_from"]
    receipt = _configure(probe, "poison2", {"set": {"description": "after"}}, "p2-1")
    assert receipt["result"] == {"config_version": 2}


def test_a_result_json_cannot_carry_gets_an_error_receipt():
    from devfleet_agent.commands import Dispatcher

    sent: list[dict] = []

    async def send(topic, receipt, correlation):
        contract.encode(receipt)  # what the agent's publish does: it must not raise
        sent.append(receipt)

    async def nan(cmd):
        return {"value": float("nan")}

    async def main():
        d = Dispatcher("n1", send)
        d.register("nan", nan)
        env = contract.encode(contract.Command.envelope(id="nan-1"))
        await d.handle("nodes/n1/cmd/nan", TopicMatch("cmd", node="n1", verb="nan", scope="node"), env)

    asyncio.run(main())
    assert [r["status"] for r in sent] == ["accepted", "error"]
    assert sent[-1]["code"] == "failed" and "not JSON" in sent[-1]["message"]


def test_a_spawn_with_a_non_finite_extra_is_invalid():
    from devfleet_agent.actors.spec import SpawnSpec

    with pytest.raises(ContractError) as info:
        SpawnSpec.from_json(b'{"name": "a", "code": "async def process(agent): pass", "weight": 1e400}')
    assert info.value.code == "invalid" and "weight" in info.value.message


def test_atomic_write_refuses_non_finite_and_writes_nothing(tmp_path):
    from devfleet_agent.storage import atomic_write_json

    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"v": float("inf")})
    assert list(tmp_path.iterdir()) == []


def test_the_simulators_config_store_refuses_poison_too():
    from devfleet_agent.config_store import MemoryConfigStore
    from devfleet_base.errors import ConfigError

    store = MemoryConfigStore()
    with pytest.raises(ConfigError) as info:
        store.apply(set={"components.nosuch.settings": {"v": float("inf")}})
    assert info.value.code == "invalid" and store.versions() == [] and store.version == 0
    store.apply(set={"description": "fine"})
    assert store.version == 1
