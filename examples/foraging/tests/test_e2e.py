"""A headless foraging run end to end: 4 robot agents (real processes: ros + foraging + ledstrip),
the arena behind 4 real rosbridge servers, a real broker, the console on the real command path."""

from __future__ import annotations

from pathlib import Path

import pytest
from devfleet_foraging.arena import Arena
from devfleet_foraging.runner import RunOptions, run
from PIL import Image

from devfleet_base.contract import MAP_FRAME_SCHEMA, MAP_POSE_SCHEMA

pytestmark = pytest.mark.timeout(150)


def test_four_robots_forage_obey_the_operator_and_survive_a_kill(tmp_path: Path) -> None:
    lines: list[str] = []
    options = RunOptions(robots=4, duration=30.0, seed=3, speed=2.0, headless=True, out=tmp_path)
    result = run(options, say=lines.append)
    s = result.summary
    log = "\n".join(lines)

    # the same seed gives the same arena
    assert result.layout == Arena([f"bot-{i + 1}" for i in range(4)], seed=3).layout()

    # items were collected, through rosbridge, by the robots' own agents
    assert s["items"] > 0, log
    assert sum(s["items_per_robot"].values()) == result.collected_at_end
    assert s["tick_latency_ms"]["p50"] is not None and s["command_latency_ms"]["p99"] is not None

    # at sampled ticks every robot's LED colour matches its state
    samples = [x for x in result.led_samples if x["state"] is not None]
    assert len(samples) >= 8, result.led_samples
    assert {x["state"] for x in samples} & {"exploring", "returning"}, samples
    mismatched = [x for x in samples if x["led"] != x["expected"]]
    assert not mismatched, mismatched

    # kill -9: the will shows the robot lost, the others keep collecting
    killed = result.killed
    assert killed is not None and result.killed_status == "lost", log
    assert s["lost"] == [killed]
    assert result.collected_at_kill is not None and result.collected_at_end > result.collected_at_kill, log
    assert s["respawned_from_lost"] == (1 if result.killed_carrying else 0), log

    # the group parameter change reached team-b (bot-2, bot-4) only, live
    assert result.params["bot-1"]["delta"] == 0.02 and result.params["bot-3"]["delta"] == 0.02
    assert killed == "bot-2" or result.params["bot-2"]["delta"] == 0.05
    assert killed == "bot-4" or result.params["bot-4"]["delta"] == 0.05

    # the map view's inputs: the arena's frame retained on maps/arena, each robot's pose at 2-5 Hz
    frame = result.map_frame
    assert frame is not None and MAP_FRAME_SCHEMA.validate(frame)["regions"][0]["name"] == "nest"
    assert 20 - 4 <= len(frame["items"]) <= 20  # the items carried are not on the floor
    window = (result.started_at, result.ended_at)
    seconds = (window[1] - window[0]) * options.speed  # simulated seconds: pose_rate is per robot time
    for name in ("bot-1", "bot-2", "bot-3", "bot-4"):
        poses = result.poses.get(name, [])
        assert all(MAP_POSE_SCHEMA.validate(p)["map"] == "arena" for p in poses)
        if name != killed:
            rate = len([p for p in poses if window[0] <= p["ts"] <= window[1]]) / seconds
            assert 2 <= rate <= 5, (name, rate)

    # recall: every robot resting, with ok receipts, within 5 s
    recall = result.recall
    alive = sorted({"bot-1", "bot-2", "bot-3", "bot-4"} - {killed})
    assert sorted(recall["succeeded"]) == alive, recall
    assert recall["failed"] == [] and recall["timed_out"] == [] and recall["offline"] == [killed]
    assert recall["all_resting_after_s"] is not None and recall["all_resting_after_s"] <= 5.0, recall

    # the operator's other actions went through with receipts
    for word in ("start -> fleet: 4 ok", "configure -> group team-b: 2 ok", "pause -> fleet: 4 ok"):
        assert word in log, log

    # outputs: CSV per tick, a PNG of the arena and the plot
    rows = result.csv.read_text().splitlines() if result.csv else []
    assert rows[0] == "tick,clock,walking,resting,collected,energy" and len(rows) > 300
    assert result.png is not None
    with Image.open(result.png) as img:
        assert img.size[0] > img.size[1] > 100
