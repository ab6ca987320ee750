"""Migrations through the console that do not land (issue 21): a refused placement puts
the actor back on its source with its state; a placement that timed out is withdrawn
so that no second live copy starts later (a Wactorz node ignores ``_expires_at`` and
cannot stop an actor that is still starting)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from interop_kit import poll, run, spawn_counting, wait_online

from devfleet_command.sync import Fleet
from devfleet_command.wactorz_ops import listed


def test_a_refused_placement_puts_the_actor_back_with_its_state(peers: Any, capsys: Any) -> None:
    wz = peers.wactorz("wz-back")
    peers.devfleet("df-nocode")  # no --allow-code: refuses the placement
    url = peers.broker.url
    wait_online(url, "wz-back", "df-nocode")
    before = spawn_counting(url, "wz-back", "homing", counted=3)
    code, _, err = run(capsys, "--broker", url, "migrate", "homing", "--to", "df-nocode")
    assert code == 1 and "put back on wz-back" in err, err + wz.tail()
    with Fleet.connect(url) as fleet:
        assert "homing" in fleet._call(listed(fleet.aio, "wz-back", timeout=10))
        after = fleet.task("homing", {})
        assert after["n"] >= before["n"], (before, after)  # its state came back with it
        assert fleet.actors("df-nocode") == []


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A package index on loopback that takes connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"


def test_a_placement_that_timed_out_leaves_no_second_live_copy(
    peers: Any, capsys: Any, probe_factory: Any, black_hole: str
) -> None:
    # The actor asks for a package; a wactorz-node installs before it starts the actor,
    # starts it even when pip fails, and meanwhile takes a stop for it as "not running".
    # Against the black hole, pip gives up after PIP_TIMEOUT s: on wz-slow the start
    # comes 12 s and more after the spawn, when the console (--timeout 10) has given up
    # on it, and well before the withdrawal stops waiting (as long again).
    index = {"WACTORZ_PIP_INDEX_URL": black_hole, "PIP_RETRIES": "0"}
    peers.wactorz("wz-src", **index, PIP_TIMEOUT="1")
    slow = peers.wactorz("wz-slow", **index, PIP_TIMEOUT="12")
    url = peers.broker.url
    wait_online(url, "wz-src", "wz-slow")
    spawn_counting(url, "wz-src", "late", install=["devfleet-interop-absent"])
    probe = probe_factory(peers.broker)
    probe.subscribe("agents/wz-slow/logs")  # before the migration: not retained
    code, _, err = run(capsys, "--broker", url, "--timeout", "10", "migrate", "late", "--to", "wz-slow")
    assert code != 0 and "put back on wz-src" in err, err + slow.tail()
    assert "never answered" not in err, err  # its late start came within the withdrawal's wait
    # The placement did start on wz-slow after the console gave up on it ...
    probe.wait_for(
        "agents/wz-slow/logs",
        lambda m: m.json().get("type") == "spawned" and m.json().get("child_name") == "late",
        timeout=20,
    )
    with Fleet.connect(url) as fleet:
        # ... and was stopped there: no second live copy; it runs on wz-src, its count kept.
        poll(lambda: "late" not in fleet._call(listed(fleet.aio, "wz-slow", timeout=5)), timeout=20)
        assert "late" in fleet._call(listed(fleet.aio, "wz-src", timeout=5))
        assert fleet.task("late", {})["n"] >= 2
