"""Actors in a mixed fleet: spawn/stop/list on a wactorz-node, tasks both ways, error exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from interop_kit import CALLER, COUNTER, poll, run, wait_online

from devfleet_command.errors import CommandFailed
from devfleet_command.sync import Fleet


def test_spawn_list_stop_on_a_wactorz_node(
    peers: Any, capsys: Any, tmp_path: Path, probe_factory: Any
) -> None:
    wz = peers.wactorz("wz-sp")
    url = peers.broker.url
    wait_online(url, "wz-sp")
    spec = tmp_path / "counter.json"
    # "poll_interval": null is valid for devfleet and crashed a Wactorz spawn: not sent.
    spec.write_text(json.dumps({"name": "wc", "code": COUNTER, "poll_interval": None}))
    code, out, err = run(capsys, "--broker", url, "spawn", "wz-sp", str(spec))
    assert code == 0, err + wz.tail()
    assert "spawned wc" in out
    code, _, err = run(capsys, "--broker", url, "spawn", "wz-sp", str(spec))
    assert code == 1 and "conflict" in err
    code, out, err = run(capsys, "--broker", url, "--json", "actors", "wz-sp")
    assert [r["name"] for r in json.loads(out)] == ["wc"], err
    probe = probe_factory(peers.broker)
    assert "nodes/wz-sp/spawn" not in probe.retained("nodes/wz-sp/#"), "a retained spawn was left behind"
    code, out, err = run(capsys, "--broker", url, "stop", "wz-sp", "wc")
    assert code == 0, err
    assert "stopped wc" in out
    code, _, err = run(capsys, "--broker", url, "stop", "wz-sp", "wc")
    assert code == 1 and "not_found" in err
    # A restart of the node does not bring the stopped actor back (no retained spawn).
    wz.stop()
    wz.start()
    wait_online(url, "wz-sp")
    code, out, err = run(capsys, "--broker", url, "--json", "actors", "wz-sp")
    assert json.loads(out) == [], err


def test_a_spawn_the_wactorz_node_refuses_fails_with_its_reason(peers: Any, capsys: Any) -> None:
    peers.wactorz("wz-bad")
    url = peers.broker.url
    wait_online(url, "wz-bad")
    with Fleet.connect(url) as fleet, pytest.raises(CommandFailed) as refused:
        fleet.spawn("wz-bad", {"name": "inst", "code": COUNTER, "install": ["not a package!"]}, timeout=20)
    assert refused.value.code == "failed" and "inst" in str(refused.value)


def test_tasks_both_ways(peers: Any, capsys: Any) -> None:
    peers.wactorz("wz-t")
    peers.devfleet("df-t", "--allow-code")
    url = peers.broker.url
    wait_online(url, "wz-t", "df-t")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-t", {"name": "wz-counter", "code": COUNTER, "poll_interval": 0.2})
        fleet.spawn("wz-t", {"name": "wz-caller", "code": CALLER})
        fleet.spawn("df-t", {"name": "df-counter", "code": COUNTER, "poll_interval": 0.2})
        fleet.spawn("df-t", {"name": "df-caller", "code": CALLER})
        # The console's dict payload reaches the Wactorz handler as the dict itself.
        assert fleet.task("wz-counter", {"a": 1})["echo"] == {"a": 1}
        assert fleet.task("wz-counter", "text")["echo"] == "text"
        # devfleet actor -> Wactorz actor, and Wactorz actor -> devfleet actor.
        there = fleet.task("df-caller", {"to": "wz-counter", "body": {"b": 2}})
        assert there["answer"]["echo"] == {"b": 2} and there["answer"]["who"] == "counter"
        back = fleet.task("wz-caller", {"to": "df-counter", "body": {"c": 3}}, timeout=30)
        assert back["answer"]["echo"] == {"c": 3}
    # Error answers exit non-zero, from either runtime.
    for actor in ("wz-counter", "df-counter"):
        code, _, err = run(capsys, "--broker", url, "task", actor, '{"fail": true}')
        assert code == 1 and "asked to fail" in err, (actor, err)


def test_stop_with_delete_on_a_wactorz_node_removes_its_state(peers: Any, capsys: Any) -> None:
    wz = peers.wactorz("wz-del")
    url = peers.broker.url
    wait_online(url, "wz-del")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-del", {"name": "gone", "code": COUNTER, "poll_interval": 0.1})
        poll(lambda: fleet.task("gone", {})["n"] >= 2)
    code, _, err = run(capsys, "--broker", url, "stop", "wz-del", "gone")  # a plain stop keeps it
    assert code == 0, err
    kept = poll(lambda: [p for p in wz.state_dir.rglob("*gone*") if p.is_file()])
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-del", {"name": "gone", "code": COUNTER, "poll_interval": 0.1})
    code, _, err = run(capsys, "--broker", url, "stop", "--delete", "wz-del", "gone")
    assert code == 0, err + wz.tail()
    poll(lambda: not any(p.exists() for p in kept))
