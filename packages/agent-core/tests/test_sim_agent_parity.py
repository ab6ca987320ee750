"""The simulator and the agent answer the built-in commands alike, on a real broker.

Both speak through :class:`~devfleet_agent.node_core.NodeCore`; this holds them to it
from the outside: the same receipts (statuses, fields, codes, messages) for ``ping``,
``config_get`` and a refused ``configure``, and the same refusal shown in ``cfg``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from devfleet_agent.sim import SimNode
from devfleet_base import contract
from devfleet_base.node_config import default_node_config

_ids = itertools.count()


def _online(msg: Any) -> bool:
    return msg.json()["status"] == "online"


@pytest.fixture
def sim_node(mqtt_broker: Any) -> Iterator[SimNode]:
    """A simulated node on an event loop of its own (the probe blocks the test's thread)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sim-loop", daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(15)

    async def make() -> SimNode:
        node = SimNode(
            "parity-sim",
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            facts={"simulated": True},
            default_config=default_node_config(),
        )
        node.start()
        await node.mqtt.wait_connected(10)
        return node

    node = run(make())
    yield node
    run(node.stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _receipts(probe: Any, node: str, verb: str, args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Send one command; return its receipts (accepted, then the final one)."""
    inbox = f"replies/parity{next(_ids)}"
    probe.subscribe(inbox)
    env = contract.Command.envelope(args or {}, reply_to=inbox)
    probe.publish(contract.node_command_topic(node, verb), env)
    probe.wait_for(inbox, lambda m: m.json()["status"] != "accepted")
    return [m.json() for m in probe.messages(inbox)]


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys in order, and the type of every leaf."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def _without(receipt: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in receipt.items() if k not in keys}


def test_simulator_and_agent_answer_built_in_commands_alike(agent_factory, probe, sim_node):
    agent = "parity-agent"
    agent_factory(agent)
    probe.wait_for(f"nodes/{agent}/status", _online)
    probe.wait_for(f"nodes/{sim_node.name}/status", _online)
    nodes = (agent, sim_node.name)

    pings = [_receipts(probe, n, "ping") for n in nodes]
    assert [_shape(r) for r in pings[0]] == [_shape(r) for r in pings[1]]
    assert [r["status"] for r in pings[0]] == ["accepted", "ok"]
    for node, (_, ok) in zip(nodes, pings, strict=True):
        assert ok["result"]["node"] == node and ok["result"]["pong"] is True

    gets = [_receipts(probe, n, "config_get") for n in nodes]
    assert [_shape(r) for r in gets[0]] == [_shape(r) for r in gets[1]]
    assert gets[0][1]["result"] == gets[1][1]["result"]  # both at version 0 with the defaults

    stale = {"set": {"description": "late"}, "expect_version": 7}
    refusals = [_receipts(probe, n, "configure", stale) for n in nodes]
    assert [_shape(r) for r in refusals[0]] == [_shape(r) for r in refusals[1]]
    agent_final, sim_final = refusals[0][1], refusals[1][1]
    assert agent_final["status"] == "error" and agent_final["code"] == "conflict"
    assert _without(agent_final, "id", "node", "ts") == _without(sim_final, "id", "node", "ts")

    # The refusal is shown where the console's drift view looks, by both.
    cfgs = [
        probe.wait_for(f"nodes/{n}/cfg", lambda m: "desired_error" in m.json()).json()["desired_error"]
        for n in nodes
    ]
    assert _without(cfgs[0], "id") == _without(cfgs[1], "id") and cfgs[0]["code"] == "conflict"
