"""ComponentInputs against a small stand-in for NodeServices (the seam it is written to):
one subscription reference per callback, delivery to every matching callback, none
for retained messages."""

from __future__ import annotations

from collections import Counter

from devfleet_agent.components.inputs import ComponentInputs
from devfleet_base import contract
from devfleet_base.mqtt import MqttMessage


class StandInNode:
    """What ComponentInputs uses of a node: its name, routes and reference-counted subscriptions."""

    node = "n1"

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.held: Counter[str] = Counter()

    def route(self, kind, handler):
        self.routes[kind] = handler

    async def subscribe(self, filters):
        self.held.update(f for f, _ in filters)

    async def unsubscribe(self, filters):
        self.held.subtract(filters)


async def _deliver(node: StandInNode, topic: str, payload: bytes, *, retain: bool = False) -> None:
    match = contract.parse_topic(topic)
    assert match is not None and match.kind == "component"
    await node.routes["component"](MqttMessage(topic, payload, retain, 1), match)


async def test_each_callback_holds_its_own_reference_and_gets_every_match():
    node = StandInNode()
    inputs = ComponentInputs(node)
    topic_filter = contract.component_input_filter("n1", "ros", "+")
    got: list[tuple[str, str, bytes]] = []
    drop_a = await inputs.subscribe(topic_filter, lambda leaf, p: got.append(("a", leaf, p)), 1)
    drop_b = await inputs.subscribe(topic_filter, lambda leaf, p: got.append(("b", leaf, p)), 1)
    assert node.held[topic_filter] == 2

    await _deliver(node, "nodes/n1/components/ros/in/cmd_vel", b"1")
    assert got == [("a", "cmd_vel", b"1"), ("b", "cmd_vel", b"1")]

    await drop_a()
    await drop_a()  # a second call drops nothing more
    assert node.held[topic_filter] == 1
    await _deliver(node, "nodes/n1/components/ros/in/cmd_vel", b"2")
    assert got[-1] == ("b", "cmd_vel", b"2") and len(got) == 3

    await drop_b()
    assert node.held[topic_filter] == 0


async def test_retained_input_and_other_nodes_input_are_not_delivered():
    node = StandInNode()
    inputs = ComponentInputs(node)
    got: list[bytes] = []
    await inputs.subscribe(contract.component_input_filter("n1", "ros", "#"), lambda _, p: got.append(p), 1)
    await _deliver(node, "nodes/n1/components/ros/in/cmd_vel", b"stale", retain=True)
    await _deliver(node, "nodes/n2/components/ros/in/cmd_vel", b"theirs")
    await _deliver(node, "nodes/n1/components/ros/in/cmd_vel", b"fresh")
    assert got == [b"fresh"]
