"""The arena: seeded, deterministic, respawning food, gripper, lost robots; and a whole swarm in-process."""

from __future__ import annotations

import math
from pathlib import Path

from devfleet_foraging.arena import Arena
from devfleet_foraging.sim import simulate
from hypothesis import given
from hypothesis import strategies as st


def test_the_same_seed_gives_the_same_arena() -> None:
    assert Arena(["a", "b"], seed=7).layout() == Arena(["a", "b"], seed=7).layout()
    assert Arena(["a", "b"], seed=7).layout() != Arena(["a", "b"], seed=8).layout()


def test_robots_start_in_the_nest_and_food_outside_it() -> None:
    arena = Arena([f"r{i}" for i in range(10)], seed=1)
    c = arena.config
    assert all(arena.in_nest(r.x) for r in arena.robots.values())
    assert all(x >= c.nest_width + c.food_margin for x, _ in arena.items)
    assert len(arena.items) == c.items


def test_differential_drive_moves_forward_and_respects_the_wheel_limit() -> None:
    arena = Arena(["a"], seed=1)
    robot = arena.robots["a"]
    robot.theta = 0.0
    x0 = robot.x
    arena.command("a", 10.0, 0.0)  # far above the wheels' limit
    row = arena.step()
    assert robot.x - x0 == arena.config.max_wheel_speed * arena.config.dt
    assert row.walking == 1 and row.resting == 0 and row.energy == -1
    arena.command("a", math.nan, 1.0)  # garbage from the network: stop
    assert (robot.v, robot.w) == (0.0, 0.0)


def test_pick_in_reach_then_deliver_in_the_nest_respawns_an_item() -> None:
    arena = Arena(["a"], seed=2)
    robot = arena.robots["a"]
    assert arena.gripper("a", "pick")["success"] is False  # nothing in reach
    x, y = arena.items[0]
    robot.x, robot.y = x + 0.05, y
    assert arena.gripper("a", "pick") == {"success": True, "carrying": True, "message": "picked"}
    assert len(arena.items) == arena.config.items - 1
    robot.x = 0.1
    assert arena.gripper("a", "drop")["message"] == "delivered"
    assert arena.collected == 1 and robot.collected == 1 and arena.energy == 1000
    assert len(arena.items) == arena.config.items  # a new item, as in ARGoS
    assert arena.gripper("a", "drop")["success"] is False
    assert arena.gripper("a", "juggle")["success"] is False


def test_a_lost_robot_stops_and_its_item_respawns() -> None:
    arena = Arena(["a", "b"], seed=3)
    robot = arena.robots["a"]
    robot.x, robot.y = arena.items[0]
    arena.gripper("a", "pick")
    arena.command("a", 0.2, 0.0)
    arena.lose("a")
    assert not robot.online and not robot.carrying and (robot.v, robot.w) == (0.0, 0.0)
    assert len(arena.items) == arena.config.items and arena.respawned_lost == 1
    arena.command("a", 0.2, 0.0)  # a lost robot ignores commands
    assert robot.v == 0.0
    assert arena.step().resting == 1  # only b is counted


def test_sensors_see_food_light_and_walls() -> None:
    arena = Arena(["a", "b"], seed=4)
    a, b = arena.robots["a"], arena.robots["b"]
    a.x, a.y, a.theta = 1.5, 1.5, 0.0
    b.x, b.y = 0.3, 0.3
    arena.items = [(1.8, 1.5), (2.9, 2.9)]
    assert arena.food_in_range("a") == [(0.30000000000000004, 0.0)]
    d, bearing = arena.light("a")
    assert d == 1.5 and abs(abs(bearing) - math.pi) < 1e-9  # the light is behind
    assert arena.nearest_obstacle("a") is None
    a.x = 2.85
    gap, bearing = arena.nearest_obstacle("a")  # type: ignore[misc]
    assert gap < 0.1 and abs(bearing) < 1e-9  # the wall ahead


@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-10, 10)), max_size=200))
def test_robots_never_leave_the_arena(commands: list[tuple[float, float]]) -> None:
    arena = Arena(["a", "b"], seed=5)
    for v, w in commands:
        arena.command("a", v, w)
        arena.command("b", -v, w)
        arena.step()
    c = arena.config
    for r in arena.robots.values():
        assert c.robot_radius <= r.x <= c.width - c.robot_radius
        assert c.robot_radius <= r.y <= c.height - c.robot_radius


def test_a_swarm_forages_and_the_same_seed_repeats_the_run() -> None:
    one, two = simulate(4, 60, seed=11), simulate(4, 60, seed=11)
    assert one["items"] > 0
    assert (one["items"], one["net_energy"], one["items_per_robot"]) == (
        two["items"],
        two["net_energy"],
        two["items_per_robot"],
    )


def test_pictures_of_a_run(tmp_path: Path) -> None:
    from devfleet_foraging.picture import render_gif, render_png
    from PIL import Image

    run = simulate(3, 20, seed=2)
    arena = run["arena"]
    rows = [arena.step() for _ in range(3)]
    with Image.open(render_png(arena, rows, tmp_path / "a.png", {"bot-1": "#ff0000"})) as png:
        assert png.size == (480 + 640, 480)
    with Image.open(render_gif(arena, tmp_path / "a.gif", {}, frames=10)) as gif:
        assert gif.n_frames == 10
