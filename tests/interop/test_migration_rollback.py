"""Migrations through the console that do not land (issue 21): a refused placement puts
the actor back on its source with its state; a placement that timed out is withdrawn
so that no second live copy starts later (a Wactorz node ignores ``_expires_at`` and
cannot stop an actor that is still starting)."""

from __future__ import annotations

from typing import Any

from interop_kit import COUNTER, poll, run, wait_actor, wait_online

from devfleet_command.sync import Fleet

# COUNTER whose setup takes 8 s on a node started with SLOW_SETUP set.
SLOW_ON_SOME = "import asyncio, os\n" + COUNTER.replace(
    "async def setup(agent):\n",
    "async def setup(agent):\n    if os.environ.get('SLOW_SETUP'):\n        await asyncio.sleep(8)\n",
)


def test_a_refused_placement_puts_the_actor_back_with_its_state(peers: Any, capsys: Any) -> None:
    wz = peers.wactorz("wz-back")
    peers.devfleet("df-nocode")  # no --allow-code: refuses the placement
    url = peers.broker.url
    wait_online(url, "wz-back", "df-nocode")
    with Fleet.connect(url) as fleet:
        fleet.spawn("wz-back", {"name": "homing", "code": COUNTER, "poll_interval": 0.1})
        before = poll(lambda: a if (a := fleet.task("homing", {}))["n"] >= 3 else None)
    code, _, err = run(capsys, "--broker", url, "migrate", "homing", "--to", "df-nocode")
    assert code == 1 and "put back on wz-back" in err, err + wz.tail()
    wait_actor(url, "wz-back", "homing")
    with Fleet.connect(url) as fleet:
        after = fleet.task("homing", {})
        assert after["n"] >= before["n"], (before, after)  # its state came back with it
        assert fleet.aio.locate("homing") == "wz-back"


def test_a_placement_that_timed_out_leaves_no_second_live_copy(peers: Any, capsys: Any) -> None:
    slow = peers.wactorz("wz-slow", SLOW_SETUP="1")
    peers.devfleet("df-src", "--allow-code")
    url = peers.broker.url
    wait_online(url, "wz-slow", "df-src")
    with Fleet.connect(url) as fleet:
        fleet.spawn("df-src", {"name": "late", "code": SLOW_ON_SOME, "poll_interval": 0.1})
        poll(lambda: fleet.task("late", {})["n"] >= 2)
    code, _, err = run(capsys, "--broker", url, "--timeout", "5", "migrate", "late", "--to", "wz-slow")
    assert code != 0 and "put back on df-src" in err, err + slow.tail()
    # The late start on wz-slow (8 s after its spawn) is stopped: it runs on df-src only.
    wait_actor(url, "wz-slow", "late", present=False, timeout=30)
    with Fleet.connect(url) as fleet:
        assert [r["node"] for r in fleet.aio.actors() if r["name"] == "late"] == ["df-src"]
