"""The Wactorz task envelope a devfleet node reads (issue 21)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devfleet_agent.actors.wactorz_compat import reply_topic, task_body
from devfleet_base import contract


def test_reply_topics_accepted_and_refused() -> None:
    assert reply_topic("nodes/n1/reply/abc") == "nodes/n1/reply/abc"
    assert reply_topic("agents/by-name/caller/reply/1a2b") == "agents/by-name/caller/reply/1a2b"
    for bad in (
        "nodes/n1/cmd/reboot",
        "nodes/n1/spawn",
        "agents/by-name/x/task",
        "agents/by-name/+/reply/1",
        "agents/by-name/x/reply/#",
        "agents/by-name/x/reply/1/extra",
        "fleet/cmd/reboot",
        7,
        None,
    ):
        assert reply_topic(bad) is None, bad


@given(st.text(max_size=80))
def test_a_reply_topic_is_never_a_command_or_control_topic(text: str) -> None:
    topic = reply_topic(text)
    if topic is not None:
        match = contract.parse_topic(topic)
        assert match is None or match.kind == "reply"
        assert "+" not in topic and "#" not in topic


def test_task_bodies() -> None:
    reply = {"_remote_task": True, "_reply_topic": "nodes/a/reply/1"}
    assert task_body({**reply, "payload": {"a": 1}}) == {"a": 1}
    assert task_body({**reply, "payload": "x"}) == "x"
    assert task_body({**reply, "a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert task_body({"a": 1}) == {"a": 1}
    assert task_body(5) == 5
    for payload in ({"a": 1}, "text", 3, [1], {}, {"payload": {"x": 1}}):
        assert task_body(contract.task_envelope(payload, "nodes/a/reply/1")) == payload
