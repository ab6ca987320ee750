"""A wactorz-node in the console: ls, show, actors, watch's model, locate, purge, kill -9."""

from __future__ import annotations

import json
from typing import Any

from interop_kit import COUNTER, run, wait_online

from devfleet_command.errors import PurgeError
from devfleet_command.sync import Fleet


def test_a_wactorz_node_is_listed_with_its_figures(peers: Any, capsys: Any) -> None:
    wz = peers.wactorz("wz-ls")
    peers.devfleet("df-ls")
    url = peers.broker.url
    wait_online(url, "wz-ls", "df-ls")
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert code == 0, err
    rows = {r["node"]: r for r in json.loads(out)}
    assert set(rows) == {"wz-ls", "df-ls"}, wz.tail()
    row = rows["wz-ls"]
    assert row["health"] == "online"
    assert row["version"] == "wactorz 0.7.2"
    # Its figures come with its heartbeat (every 10 s, not retained): what `watch` shows.
    with Fleet.connect(url) as fleet:
        fleet.wait_for(lambda m: m.get("wz-ls").heartbeat is not None, timeout=15)
        view = fleet.node("wz-ls")
        assert view.health == "online"
        memory, disk, cpu = (view.metric(n) for n in ("memory", "disk", "cpu"))
        assert memory is not None and 0 < memory < 100
        assert disk is not None and 0 < disk < 100
        assert cpu is not None and cpu >= 0
        assert view.summary()["uptime"] is not None
    code, out, err = run(capsys, "--broker", url, "show", "wz-ls")
    assert code == 0, err
    assert "wz-ls" in out


def test_actors_on_a_wactorz_node_are_listed_and_located(peers: Any, capsys: Any) -> None:
    peers.wactorz("wz-act")
    url = peers.broker.url
    wait_online(url, "wz-act")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-act", {"name": "wcount", "code": COUNTER, "poll_interval": 0.2}, timeout=30)
        fleet.wait_for(lambda m: "wcount" in (m.get("wz-act").heartbeat or {}).get("agents", []), timeout=15)
        assert fleet.aio.locate("wcount") == "wz-act"
    code, out, err = run(capsys, "--broker", url, "--json", "actors")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["node"], r["name"], r["state"]) for r in rows] == [("wz-act", "wcount", "running")]


def test_purge_of_a_running_wactorz_node_needs_force_and_kill_9_makes_it_stale(
    peers: Any, capsys: Any
) -> None:
    wz = peers.wactorz("wz-gone")
    url = peers.broker.url
    wait_online(url, "wz-gone")
    code, _, err = run(capsys, "--broker", url, "purge", "wz-gone")
    assert code != 0 and "online" in err
    with Fleet.connect(url) as fleet:
        try:
            fleet.purge("wz-gone")
        except PurgeError:
            pass
        else:
            raise AssertionError("purge of a running Wactorz node went through without force")
    wz.kill()  # kill -9: no offline heartbeat, the retained manifest stays
    # A one-shot console asks it for its list, hears nothing for a heartbeat interval: stale.
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert code == 0, err
    assert {r["node"]: r["health"] for r in json.loads(out)} == {"wz-gone": "stale"}
    code, out, err = run(capsys, "--broker", url, "purge", "wz-gone")
    assert code == 0, err
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert json.loads(out) == []


def test_a_wactorz_node_going_down_says_offline(peers: Any) -> None:
    wz = peers.wactorz("wz-down")
    url = peers.broker.url
    wait_online(url, "wz-down")
    with Fleet.connect(url) as fleet:
        wz.stop()  # SIGTERM: the runner sends a last heartbeat with status offline
        fleet.wait_for(lambda m: m.get("wz-down").health == "offline", timeout=20)
