"""Hostile retained messages against the operator CLI (issue 17, case 11): everything
from the wire is data, never markup; every renderer survives every payload the
model accepts."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from devfleet_base import contract
from devfleet_base.testing import MqttProbe
from devfleet_command.actors import actor_rows
from devfleet_command.cli import main
from devfleet_command.commands.nodes import show_renderables, table
from devfleet_command.commands.render import (
    actors_table,
    components_renderables,
    config_renderables,
    drift_lines,
)
from devfleet_command.model import FleetModel

HUGE = 10**400
T = contract.node_topic


def desc(node: str, version: int, **extra: Any) -> dict[str, Any]:
    return {"node": node, "session": 1, "version": version, "ts": 1.0, **extra}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_hostile_retained_messages_do_not_crash_the_cli(
    mosquitto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = mosquitto.url
    with MqttProbe.connect_to(mosquitto) as probe:
        probe.publish(T("x", "meta"), desc("x", 1), retain=True)
        probe.publish(T("x", "status"), desc("x", 2, status="online"), retain=True)
        probe.publish(
            T("x", "cfg"),
            desc("x", 3, config={"groups": ["[/]", "[bold red]"]}, desired_error="[/] not a dict"),
            retain=True,
        )
        probe.publish(
            T("x", "state"),
            desc("x", 4, actors={"[/]": {"state": "running"}, "a": {"name": 5, "state": ["x"]}}),
            retain=True,
        )
        probe.publish(
            T("x", "cfg/desired"), {"id": "d", "args": {"set": {"description": "[/]"}}}, retain=True
        )
        probe.publish(
            T("x", "heartbeat"),
            json.dumps({"node": "x", "cpu": HUGE, "uptime": HUGE, "timestamp": time.time()}),
            retain=True,
        )
        probe.publish(contract.node_telemetry_topic("x", "cpu"), json.dumps({"value": HUGE}), retain=True)
    for argv in (
        ["ls"],
        ["show", "x"],
        ["watch", "--once"],
        ["actors"],
        ["ls", "--json"],
        ["show", "x", "--json"],
    ):
        code, out, err = run(capsys, "--broker", url, *argv)
        assert code == 0, (argv, err)
        assert "Traceback" not in err
    code, out, _ = run(capsys, "--broker", url, "ls")
    assert "[/]" in out  # printed as data
    code, out, err = run(capsys, "--broker", url, "drift")
    assert code == 1 and "x:" in out and "[/] not a dict" in out, err


# ---- every renderer over whatever the model accepts ---------------------------------------

_NODES = ["n1", "n2"]
_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.just(HUGE)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["[/]", "[bold]", "[link=x]y[/link]", "\x1b[2J", "é\u200b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_description = st.fixed_dictionaries(
    {"session": st.just(1), "version": st.integers(0, 50)},
    optional={
        "node": st.sampled_from([*_NODES, 3]),
        "status": st.sampled_from(["online", "offline", "lost"]),
        "config": st.fixed_dictionaries({}, optional={"groups": _junk, "heartbeat": _junk}) | _junk,
        "config_version": _junk,
        "desired_error": _junk,
        "applied_id": _junk,
        "actors": st.dictionaries(st.text(max_size=4) | st.just("[/]"), _junk, max_size=3),
        "components": _junk,
        "groups": _junk,
        "agent_version": _junk,
    },
)
_leaf = st.sampled_from(["meta", "status", "state", "cfg", "cfg/desired", "heartbeat", "telemetry/cpu"])
_body = st.fixed_dictionaries(
    {},
    optional={
        "node": st.sampled_from(_NODES),
        "cpu": _junk,
        "memory": _junk,
        "timestamp": _junk,
        "uptime": _junk,
        "value": _junk,
        "ts": _junk,
        "id": _junk,
        "args": st.fixed_dictionaries({"set": st.dictionaries(st.text(max_size=5), _junk, max_size=2)})
        | _junk,
    },
)


def _encode(value: Any) -> bytes:
    try:
        return json.dumps(value).encode()
    except ValueError:  # an int beyond the str conversion limit
        return b"{}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_NODES), _leaf, _description | _body, st.booleans()),
        max_size=12,
    ),
    _junk,
)
def test_renderers_survive_anything_the_model_accepts(
    messages: list[tuple[str, str, dict[str, Any], bool]], answer: Any
) -> None:
    model = FleetModel()
    for node, leaf, body, retained in messages:
        model.feed(f"nodes/{node}/{leaf}", _encode(body), retained, 1000.0)
    model.check_stale(2000.0)
    con = Console(file=io.StringIO(), width=100)
    nodes = sorted(model, key=lambda n: n.name)
    con.print(table(nodes))
    for node in nodes:
        for part in show_renderables(node):
            con.print(part)
        json.dumps(node.to_dict(), default=str)
    con.print(actors_table(actor_rows(model)))
    for line in drift_lines(model.drift()):
        con.print(line, markup=False)
    for part in components_renderables(answer):
        con.print(part)
    for part in config_renderables(answer):
        con.print(part)
