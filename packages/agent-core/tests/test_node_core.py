"""Units of the node protocol core that need no broker (a real, unconnected MQTT session)."""

from __future__ import annotations

from typing import Any

import pytest

from devfleet_agent.commands import Dispatcher
from devfleet_agent.config_store import MemoryConfigStore
from devfleet_agent.node_core import NodeCore
from devfleet_agent.payloads import Descriptions
from devfleet_base import contract
from devfleet_base.mqtt import ClientOptions, MqttClient
from devfleet_base.payload_schemas import CFG_SCHEMA


async def _no_receipts(topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
    pass


def _core(name: str = "u1", send: Any = _no_receipts, **options: Any) -> tuple[NodeCore, MqttClient]:
    session = MqttClient(ClientOptions(client_id=f"devfleet-{name}"), on_message=lambda msg: None)
    core = NodeCore(
        session,
        dispatcher=Dispatcher(name, send),
        store=MemoryConfigStore(),
        descriptions=Descriptions(name, bd_seq=4),
        facts=dict,
        spawn=lambda coro, task_name: coro.close(),
        **options,
    )
    return core, session


def _group_filter(node: str, group: str) -> str:
    (extra,) = set(contract.subscriptions_for_node(node, (group,))) - set(
        contract.subscriptions_for_node(node)
    )
    return extra[0]


async def test_config_changes_swap_group_subscriptions_and_hold_the_rest_once() -> None:
    core, session = _core()
    node_filters = [f for f, _ in contract.subscriptions_for_node("u1")]
    a, b = _group_filter("u1", "a"), _group_filter("u1", "b")
    await session.subscribe([(a, 1)])  # a subsystem listens on group a too
    await core.apply_config({"groups": ["a"]})
    assert session.holders(a) == 2 and session.holders(b) == 0
    for groups in (["b"], ["a", "b"], ["b"], []):
        await core.apply_config({"groups": groups})
    assert session.holders(a) == 1  # the subsystem's hold survives the node leaving the group
    assert session.holders(b) == 0
    assert all(session.holders(f) == 1 for f in node_filters)  # not one more per change


async def test_the_owner_hook_gets_every_applied_config() -> None:
    seen: list[dict[str, Any]] = []

    async def applied(config: dict[str, Any]) -> None:
        seen.append(config)

    core, _ = _core("u2", on_applied=applied)
    await core.apply_config({"groups": []})
    await core.apply_config({"groups": ["g"]})
    assert seen == [{"groups": []}, {"groups": ["g"]}]


async def test_a_restart_takes_the_next_bd_seq_and_forgets_what_a_process_forgets() -> None:
    core, _ = _core()
    core.descriptions.envelope()
    core.dispatcher.counts["ok"] = 3
    core.dispatcher.memory.remember("kept-id", {"status": "ok"}, expires_at=None)
    core.name_clash = {"instance": "other", "session": 1, "since": 0.0}
    fresh = MqttClient(ClientOptions(client_id="devfleet-u1"), on_message=lambda msg: None)
    core.restarted(fresh)
    assert core.bd_seq == 5 and core.descriptions.version == 0
    assert core.dispatcher.counts["ok"] == 0 and "kept-id" in core.dispatcher.memory
    assert core.name_clash is None
    await core.apply_config({"groups": []})  # the new session holds the node's filters
    assert fresh.holders(contract.subscriptions_for_node("u1")[0][0]) == 1


def test_built_in_commands_are_registered_and_providers_name_a_section() -> None:
    core, _ = _core()
    assert {"ping", "rebirth", "configure", "config_get"} <= set(core.dispatcher.verbs())
    with pytest.raises(ValueError, match="unknown section"):
        core.add_provider("metta", "x", dict)
    core.add_provider("state", "x", lambda: 1)
    assert core.state_payload()["x"] == 1 and core.state_payload()["session"] == 4


async def test_config_get_answers_with_the_fields_cfg_carries() -> None:
    receipts: list[dict[str, Any]] = []

    async def keep(topic: str, receipt: dict[str, Any], correlation: bytes | None) -> None:
        receipts.append(receipt)

    core, _ = _core("u3", keep)
    core.store.apply(set={"groups": ["g"]}, applied_id="c1")
    core.store.apply(set={"description": "d"}, applied_id="c2")
    topic = contract.node_command_topic("u3", "config_get")
    match = contract.parse_topic(topic)
    assert match is not None
    await core.dispatcher.handle(topic, match, contract.encode(contract.Command.envelope(id="g1")))
    answer = receipts[-1]["result"]
    cfg = core.descriptions.cfg(core.store)
    assert receipts[-1]["status"] == "ok"
    assert set(answer) == {"config_version", "config", "kept_versions"}
    assert answer == {key: cfg[key] for key in answer}
    assert answer["kept_versions"] == [1, 2] and answer["config"]["groups"] == ["g"]
    assert CFG_SCHEMA.validate({**cfg, **answer}) == {**cfg, **answer}
