"""Component input subscriptions: the filter a component may use, matching, the fake context."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_base import contract
from devfleet_base.errors import ContractError
from devfleet_base.testing import FakeContext


def test_input_filter_is_own_in_subtree_only():
    assert contract.component_input_filter("n1", "ros", "cmd_vel") == "nodes/n1/components/ros/in/cmd_vel"
    assert (
        contract.component_input_filter("n1", "ros", "robot/+/cmd")
        == "nodes/n1/components/ros/in/robot/+/cmd"
    )
    assert contract.component_input_filter("n1", "ros", "#") == "nodes/n1/components/ros/in/#"
    for bad in ["", "../x", "a/#/b", "a+", "$SYS", "a//b", "#/x"]:
        with pytest.raises(ContractError):
            contract.component_input_filter("n1", "ros", bad)


def test_topic_matches():
    assert contract.topic_matches("a/+/c", "a/b/c")
    assert contract.topic_matches("a/#", "a/b/c")
    assert contract.topic_matches("a/#", "a")  # MQTT: '#' also matches the parent level
    assert not contract.topic_matches("a/+", "a/b/c")
    assert not contract.topic_matches("a/b", "a/b/c")
    assert not contract.topic_matches("a/b/c", "a/b")


@given(st.text(max_size=40))
def test_input_filter_never_escapes(leaf):
    try:
        topic_filter = contract.component_input_filter("n1", "ros", leaf)
    except ContractError:
        return
    assert topic_filter.startswith("nodes/n1/components/ros/in/")
    assert "$" not in topic_filter and ".." not in topic_filter.split("/")


async def test_fake_context_delivers_to_subscribers():
    ctx = FakeContext()
    got = []
    unsubscribe = await ctx.subscribe("robot/+", lambda leaf, payload: got.append((leaf, payload)))
    assert ctx.deliver("robot/cmd", {"x": 1}) == 1
    assert ctx.deliver("other", b"{}") == 0
    await unsubscribe()
    assert ctx.deliver("robot/cmd", b"{}") == 0
    assert got == [("robot/cmd", b'{"x": 1}')]
    with pytest.raises(ContractError):
        await ctx.subscribe("a/#/b", lambda leaf, payload: None)
