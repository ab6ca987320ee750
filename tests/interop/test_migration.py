"""Migration with state between a wactorz-node and a devfleet node, the console playing main."""

from __future__ import annotations

from typing import Any

from interop_kit import COUNTER, poll, run, wait_actor, wait_online

from devfleet_command.sync import Fleet


def test_migration_carries_state_both_ways(peers: Any, capsys: Any) -> None:
    wz = peers.wactorz("wz-m")
    peers.devfleet("df-m", "--allow-code")
    url = peers.broker.url
    wait_online(url, "wz-m", "df-m")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-m", {"name": "mover", "code": COUNTER, "poll_interval": 0.1})
        first = poll(lambda: a if (a := fleet.task("mover", {}))["n"] >= 5 else None)
    code, out, err = run(capsys, "--broker", url, "migrate", "mover", "--to", "df-m")
    assert code == 0, err + wz.tail()
    assert "from wz-m to df-m" in out
    wait_actor(url, "wz-m", "mover", present=False)
    with Fleet.connect(url) as fleet:
        there = fleet.task("mover", {})
        assert there["n"] >= first["n"], (first, there)  # the count came along (not 0)
        assert fleet.aio.locate("mover") == "df-m"
    code, out, err = run(capsys, "--broker", url, "migrate", "mover", "--to", "wz-m")
    assert code == 0, err + wz.tail()
    with Fleet.connect(url) as fleet:
        back = fleet.task("mover", {})
        assert back["n"] >= there["n"], (there, back)
    code, out, err = run(capsys, "--broker", url, "--json", "actors")
    assert '"df-m"' not in out and '"wz-m"' in out, out


def test_migration_onto_a_node_running_that_name_fails_and_moves_nothing(peers: Any, capsys: Any) -> None:
    peers.wactorz("wz-c")
    peers.devfleet("df-c", "--allow-code")
    url = peers.broker.url
    wait_online(url, "wz-c", "df-c")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-c", {"name": "twin", "code": COUNTER, "poll_interval": 0.1})
        fleet.spawn("df-c", {"name": "twin", "code": COUNTER, "poll_interval": 0.1})
    code, _, err = run(capsys, "--broker", url, "migrate", "twin", "--from", "df-c", "--to", "wz-c")
    assert code == 1 and "conflict" in err
    wait_actor(url, "df-c", "twin")
    wait_actor(url, "wz-c", "twin")
