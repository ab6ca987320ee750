"""The console model reads a Wactorz packaged runner's heartbeat, manifest and list
answer (wactorz 0.7.2 shapes); hostile ones never raise (issue 21)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from devfleet_command.actors import actor_rows
from devfleet_command.model import FleetModel

MANIFEST = {
    "node": "wz",
    "version": "0.7.2",
    "runtime": "node",
    "ram_total_mb": 1000,
    "disk": {"state": {"path": "/x", "total_mb": 2000, "free_mb": 500}},
}
BEAT = {
    "node": "wz",
    "version": "0.7.2",
    "runtime": "node",
    "timestamp": 100.0,
    "agents": ["b", "a"],
    "uptime_s": 12.5,
    "cpu_pct": 3.5,
    "mem_used_mb": 250,
    "mem_free_mb": 750,
    "disk_free_mb": 500,
}


def _feed(
    model: FleetModel, topic: str, payload: object, *, retained: bool = False, now: float = 100.0
) -> None:
    model.feed(topic, json.dumps(payload).encode(), retained=retained, now=now)


def test_manifest_then_heartbeat() -> None:
    model = FleetModel()
    _feed(model, "nodes/wz/manifest", MANIFEST, retained=True)
    view = model.get("wz")
    assert view is not None and view.unconfirmed  # a retained manifest alone proves nothing
    _feed(model, "nodes/wz/heartbeat", BEAT)
    assert view.health == "online" and not view.unconfirmed
    summary = view.summary()
    assert summary["version"] == "wactorz 0.7.2" and summary["uptime"] == 12.5
    assert (view.metric("cpu"), view.metric("memory"), view.metric("disk")) == (3.5, 25.0, 75.0)
    assert [(r["name"], r["state"]) for r in actor_rows(model)] == [("a", "running"), ("b", "running")]
    _feed(model, "nodes/wz/heartbeat", {**BEAT, "status": "offline", "agents": []})
    assert view.health == "offline" and actor_rows(model) == []


def test_list_answer_confirms_and_lists() -> None:
    model = FleetModel()
    _feed(model, "nodes/wz/manifest", MANIFEST, retained=True)
    _feed(model, "nodes/wz/agents", {"node": "wz", "agents": [{"name": "c", "actor_id": "x"}]})
    view = model.get("wz")
    assert view is not None and not view.unconfirmed
    assert [r["name"] for r in actor_rows(model, "wz")] == ["c"]


def test_a_devfleet_node_is_not_taken_for_a_wactorz_one() -> None:
    model = FleetModel()
    _feed(model, "nodes/df/heartbeat", {"node": "df", "cpu": 5.0, "agents": ["x"]})
    view = model.get("df")
    assert view is not None and view.metric("cpu") == 5.0 and actor_rows(model) == []


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)


@given(
    st.dictionaries(st.sampled_from([*MANIFEST, *BEAT, "status", "agents"]), junk, max_size=10),
    st.sampled_from(["manifest", "heartbeat", "agents"]),
)
def test_hostile_wactorz_messages_never_raise(payload: dict[str, object], leaf: str) -> None:
    model = FleetModel()
    _feed(model, "nodes/wz/manifest", MANIFEST, retained=True)
    model.feed(f"nodes/wz/{leaf}", json.dumps(payload, allow_nan=True).encode(), now=100.0)
    view = model.get("wz")
    if view is not None:
        view.summary()
        for name in ("cpu", "memory", "disk"):
            view.metric(name)
    actor_rows(model)


def test_the_ls_table_shows_a_wactorz_nodes_figures() -> None:
    import io

    from rich.console import Console

    from devfleet_command.commands.nodes import table

    model = FleetModel()
    _feed(model, "nodes/wz/manifest", MANIFEST, retained=True)
    view = model.get("wz")
    assert view is not None
    out = io.StringIO()
    Console(file=out, width=200).print(table([view], now=100.0))
    assert out.getvalue().split("\n")[1].split()[5:8] == ["-", "-", "-"]  # no heartbeat yet: unknown
    _feed(model, "nodes/wz/heartbeat", BEAT)
    out = io.StringIO()
    Console(file=out, width=200).print(table([view], now=100.0))
    # cpu_pct; mem_used_mb of used + free; the state disk's total_mb less disk_free_mb
    assert out.getvalue().split("\n")[1].split()[5:8] == ["3.5", "25.0", "75.0"]
