"""The robots' world: a seeded, deterministic 2-D arena, stepped one tick at a time.

Modelled on the ARGoS foraging experiment (ilpincy/argos3-examples,
``experiments/foraging.argos`` and ``loop_functions/foraging_loop_functions``):
a rectangular arena with a nest strip along the left wall and a light above it,
food items scattered over the rest, and differential-drive robots (foot-bot
sized). An item dropped in the nest is counted and a new one appears at a
random place, so the food never runs out; the loop functions' energy
bookkeeping is kept (``energy_per_item`` per delivery, ``energy_per_walking_robot``
per walking robot per tick).

No I/O, no clock: :meth:`Arena.step` advances ``1 / ticks_per_second`` simulated
seconds, so a test runs it as fast as it likes. Everything random comes from one
``random.Random(seed)``: the same seed and the same commands give the same world.

Units: metres, radians (counter-clockwise from +x), seconds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arena", "ArenaConfig", "Robot", "TickMetrics"]


@dataclass(frozen=True)
class ArenaConfig:
    """The arena's geometry and physics.

    Attributes:
        width, height: m, the walls are at x = 0, x = width, y = 0, y = height.
        nest_width: m, the nest is the strip ``0 <= x < nest_width``; its light
            stands at ``(0, height / 2)``.
        items: food items on the floor at any time.
        food_margin: m, items appear at ``x >= nest_width + food_margin``.
        robot_radius: m (a foot-bot is 0.085 m).
        axle: m, distance between the wheels.
        max_wheel_speed: m/s, each wheel's limit.
        food_range: m, the food sensor sees items this near.
        proximity_range: m, the proximity sensor sees walls and robots this near.
        grab_distance: m, the gripper reaches items this near (centre to item).
        ticks_per_second: the control rate (ARGoS: 10).
        energy_per_item, energy_per_walking_robot: the loop functions' bookkeeping.
    """

    width: float = 3.0
    height: float = 3.0
    nest_width: float = 0.6
    items: int = 20
    food_margin: float = 0.3
    robot_radius: float = 0.085
    axle: float = 0.14
    max_wheel_speed: float = 0.3
    food_range: float = 0.6
    proximity_range: float = 0.3
    grab_distance: float = 0.12
    ticks_per_second: int = 10
    energy_per_item: int = 1000
    energy_per_walking_robot: int = 1

    @property
    def dt(self) -> float:
        return 1.0 / self.ticks_per_second

    @property
    def light(self) -> tuple[float, float]:
        return (0.0, self.height / 2)


@dataclass
class Robot:
    """One robot's body: pose, commanded wheel speeds, gripper, trail."""

    name: str
    x: float
    y: float
    theta: float
    v: float = 0.0
    w: float = 0.0
    carrying: bool = False
    online: bool = True
    last_cmd_tick: int | None = None
    collected: int = 0
    trail: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class TickMetrics:
    """One row of the loop functions' log: after tick ``tick`` (``clock`` s)."""

    tick: int
    clock: float
    walking: int
    resting: int
    collected: int
    energy: int

    def row(self) -> list[Any]:
        return [self.tick, f"{self.clock:.1f}", self.walking, self.resting, self.collected, self.energy]


CSV_HEADER = ["tick", "clock", "walking", "resting", "collected", "energy"]


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class Arena:
    """The world: walls, nest, food, robots.

    Args:
        names: the robots, placed in the nest in this order.
        seed: the seed of every random choice (food places, respawns).
        config: geometry and physics.
    """

    def __init__(self, names: list[str], seed: int, config: ArenaConfig | None = None) -> None:
        self.config = c = config or ArenaConfig()
        self.seed = seed
        self.rng = random.Random(seed)
        self.tick = 0
        self.collected = 0
        self.energy = 0
        self.respawned_lost = 0
        self.is_resting: Callable[[str], bool] | None = None
        """The robots' controller states for the metrics (ARGoS's loop functions count a robot
        as resting by its controller's state); None counts a robot that did not move as resting."""
        self.items: list[tuple[float, float]] = [self._random_item() for _ in range(c.items)]
        self.robots: dict[str, Robot] = {}
        rows = max(1, int((c.height - 0.2) / (3 * c.robot_radius)))
        for i, name in enumerate(names):
            col, row = divmod(i, rows)
            x = min(c.nest_width - c.robot_radius, 0.15 + col * 3 * c.robot_radius)
            y = 0.1 + c.robot_radius + row * 3 * c.robot_radius
            self.robots[name] = Robot(name, x, y, self.rng.uniform(-math.pi, math.pi))

    # ---- the world's description --------------------------------------------------------

    def layout(self) -> dict[str, Any]:
        """The initial world as plain values (same seed, same layout)."""
        return {
            "items": [(round(x, 6), round(y, 6)) for x, y in self.items],
            "robots": {n: (round(r.x, 6), round(r.y, 6), round(r.theta, 6)) for n, r in self.robots.items()},
        }

    def in_nest(self, x: float) -> bool:
        return x < self.config.nest_width

    def _random_item(self) -> tuple[float, float]:
        c = self.config
        margin = 0.05
        return (
            self.rng.uniform(c.nest_width + c.food_margin, c.width - margin),
            self.rng.uniform(margin, c.height - margin),
        )

    # ---- commands from the robots ---------------------------------------------------------

    def command(self, name: str, v: float, w: float) -> None:
        """The robot's ``cmd_vel``: forward ``v`` m/s and turn ``w`` rad/s, limited by the wheels."""
        robot = self.robots[name]
        if not robot.online:
            return
        c = self.config
        if not (math.isfinite(v) and math.isfinite(w)):
            v, w = 0.0, 0.0
        left, right = v - w * c.axle / 2, v + w * c.axle / 2
        scale = max(1.0, abs(left) / c.max_wheel_speed, abs(right) / c.max_wheel_speed)
        left, right = left / scale, right / scale
        robot.v, robot.w = (left + right) / 2, (right - left) / c.axle
        robot.last_cmd_tick = self.tick

    def gripper(self, name: str, action: str) -> dict[str, Any]:
        """Pick the nearest item in reach, or drop the carried one.

        Returns the service response ``{"success", "carrying", "message"}``.
        """
        robot = self.robots[name]
        if not robot.online:
            return {"success": False, "carrying": robot.carrying, "message": "robot is lost"}
        if action == "pick":
            if robot.carrying:
                return {"success": False, "carrying": True, "message": "already carrying"}
            reach = self.config.grab_distance
            best = min(
                range(len(self.items)),
                key=lambda i: math.dist(self.items[i], (robot.x, robot.y)),
                default=None,
            )
            if best is None or math.dist(self.items[best], (robot.x, robot.y)) > reach:
                return {"success": False, "carrying": False, "message": "nothing in reach"}
            self.items.pop(best)
            robot.carrying = True
            return {"success": True, "carrying": True, "message": "picked"}
        if action == "drop":
            if not robot.carrying:
                return {"success": False, "carrying": False, "message": "not carrying"}
            robot.carrying = False
            if self.in_nest(robot.x):
                self.collected += 1
                robot.collected += 1
                self.energy += self.config.energy_per_item
                self.items.append(self._random_item())  # ARGoS: a new item for every delivery
                return {"success": True, "carrying": False, "message": "delivered"}
            self.items.append((robot.x, robot.y))
            return {"success": True, "carrying": False, "message": "dropped outside the nest"}
        return {"success": False, "carrying": robot.carrying, "message": f"unknown action {action!r}"}

    def lose(self, name: str) -> None:
        """The robot's controller is gone: it stops, and an item it carried respawns."""
        robot = self.robots[name]
        if not robot.online:
            return
        robot.online = False
        robot.v = robot.w = 0.0
        if robot.carrying:
            robot.carrying = False
            self.respawned_lost += 1
            self.items.append(self._random_item())

    # ---- time -------------------------------------------------------------------------------

    def step(self) -> TickMetrics:
        """Move every robot one tick (robots that would collide stay put); return the metrics row."""
        c = self.config
        dt = c.dt
        moving = 0
        for robot in self.robots.values():
            if robot.v == 0.0 and robot.w == 0.0:
                continue
            moving += 1
            theta = _wrap(robot.theta + robot.w * dt)
            x = robot.x + robot.v * math.cos(theta) * dt
            y = robot.y + robot.v * math.sin(theta) * dt
            r = c.robot_radius
            x = min(c.width - r, max(r, x))
            y = min(c.height - r, max(r, y))
            blocked = any(
                other is not robot
                and math.dist((x, y), (other.x, other.y)) < 2 * r
                and math.dist((x, y), (other.x, other.y)) < math.dist((robot.x, robot.y), (other.x, other.y))
                for other in self.robots.values()
            )
            robot.theta = theta
            if not blocked:
                robot.x, robot.y = x, y
        self.tick += 1
        online = sum(1 for r in self.robots.values() if r.online)
        resting = self.is_resting
        walking = (
            moving
            if resting is None
            else sum(1 for n, r in self.robots.items() if r.online and not resting(n))
        )
        self.energy -= walking * c.energy_per_walking_robot
        for robot in self.robots.values():
            robot.trail.append((robot.x, robot.y))
        return TickMetrics(self.tick, self.tick * dt, walking, online - walking, self.collected, self.energy)

    # ---- sensors ------------------------------------------------------------------------------

    def _relative(self, robot: Robot, x: float, y: float) -> tuple[float, float]:
        return math.dist((robot.x, robot.y), (x, y)), _wrap(
            math.atan2(y - robot.y, x - robot.x) - robot.theta
        )

    def food_in_range(self, name: str, limit: int = 5) -> list[tuple[float, float]]:
        """Items the food sensor sees: ``(distance, bearing)``, nearest first."""
        robot = self.robots[name]
        seen = [self._relative(robot, x, y) for x, y in self.items]
        return sorted(s for s in seen if s[0] <= self.config.food_range)[:limit]

    def light(self, name: str) -> tuple[float, float]:
        """The nest's light: ``(distance, bearing)``."""
        return self._relative(self.robots[name], *self.config.light)

    def nearest_obstacle(self, name: str) -> tuple[float, float] | None:
        """The nearest wall or robot within ``proximity_range`` of the robot's edge:
        ``(distance from the edge, bearing)``, or None."""
        c = self.config
        robot = self.robots[name]
        r = c.robot_radius
        found: list[tuple[float, float]] = []
        for gap, wx, wy in (
            (robot.x - r, 0.0, robot.y),
            (c.width - robot.x - r, c.width, robot.y),
            (robot.y - r, robot.x, 0.0),
            (c.height - robot.y - r, robot.x, c.height),
        ):
            if gap <= c.proximity_range:
                found.append((max(0.0, gap), self._relative(robot, wx, wy)[1]))
        for other in self.robots.values():
            if other is robot:
                continue
            d, bearing = self._relative(robot, other.x, other.y)
            if d - 2 * r <= c.proximity_range:
                found.append((max(0.0, d - 2 * r), bearing))
        return min(found) if found else None
