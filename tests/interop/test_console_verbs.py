"""Console verbs on a wactorz-node: figures in a one-shot ls, a live restart, stop-all,
and a stop with keep_topics alone (issue 21)."""

from __future__ import annotations

import json
from typing import Any

from interop_kit import COUNTER, run, spawn_counting, wait_online

from devfleet_base import contract
from devfleet_command.sync import Fleet


def test_a_one_shot_ls_shows_a_wactorz_nodes_figures(peers: Any, capsys: Any) -> None:
    peers.wactorz("wz-fig")
    url = peers.broker.url
    wait_online(url, "wz-fig")
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["cpu"] is not None and row["memory"] is not None and row["disk"] is not None, row
    code, out, err = run(capsys, "--broker", url, "ls")
    assert code == 0, err
    cells = next(line for line in out.splitlines() if line.startswith("wz-fig")).split()
    assert all(c != "-" for c in cells[5:8]), out  # CPU% MEM% DISK%


def test_a_live_restart_then_stop_all(peers: Any, capsys: Any) -> None:
    wz = peers.wactorz("wz-rs")
    url = peers.broker.url
    wait_online(url, "wz-rs")
    pid = wz.proc.pid
    code, out, err = run(capsys, "--broker", url, "--timeout", "30", "restart", "wz-rs")
    assert code == 0, err + wz.tail()
    assert (
        "wz-rs: restart ok" in out and wz.proc.poll() is None and wz.proc.pid == pid
    )  # re-executed in place
    wait_online(url, "wz-rs")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-rs", {"name": "rc", "code": COUNTER})
    with Fleet.connect(url) as watching:
        code, out, err = run(capsys, "--broker", url, "stop-all", "wz-rs")
        assert code == 0, err + wz.tail()
        assert "stopped every actor" in out
        assert wz.proc.wait(20) == 0
        watching.wait_for(lambda m: m.get("wz-rs").health == "offline", timeout=10)  # its last heartbeat
    # A console connecting later has only the retained manifest: silent, so stale.
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert {r["node"]: r["health"] for r in json.loads(out)} == {"wz-rs": "stale"}, err


def test_stop_with_keep_topics_alone_is_a_plain_stop(peers: Any, capsys: Any, probe_factory: Any) -> None:
    wz = peers.wactorz("wz-kt")
    url = peers.broker.url
    wait_online(url, "wz-kt")
    spawn_counting(url, "wz-kt", "kt")
    probe = probe_factory(peers.broker)
    actor = contract.actor_id("kt")
    retained = set(probe.retained(f"agents/{actor}/#"))
    code, _, err = run(capsys, "--broker", url, "stop", "--keep-topics", "wz-kt", "kt")
    assert code == 0, err + wz.tail()
    code, out, _ = run(capsys, "--broker", url, "--json", "actors", "wz-kt")
    assert json.loads(out) == []
    # Without --delete nothing is erased: the state file and the retained topics stay.
    assert [p for p in wz.state_dir.rglob("*kt*") if p.is_file()], wz.tail()
    assert set(probe.retained(f"agents/{actor}/#")) == retained
