"""The whole swarm in one process without a broker: arena and controllers stepped together.

The same :class:`~devfleet_foraging.controller.Controller` and
:class:`~devfleet_foraging.arena.Arena` as a real run, with the ROS and MQTT
hops taken out, so a run is exactly reproducible from its seed and takes
milliseconds. The benchmark uses it for items per minute against the number of
robots (interference), the tests for the behaviour's outcome.
"""

from __future__ import annotations

import zlib
from typing import Any

from .arena import Arena, ArenaConfig
from .controller import Controller, Params, Sensors, State

__all__ = ["controller_seed", "simulate"]


def controller_seed(seed: int, node: str) -> int:
    """The seed a robot's controller uses: the run's seed mixed with the node name
    (the foraging component does the same)."""
    return seed ^ zlib.crc32(node.encode())


def simulate(
    robots: int, seconds: float, seed: int, params: Params | None = None, config: ArenaConfig | None = None
) -> dict[str, Any]:
    """Forage for ``seconds`` simulated seconds with ``robots`` robots.

    Returns:
        ``{"robots", "seed", "seconds", "items", "items_per_minute", "net_energy",
        "items_per_robot", "arena"}`` (``arena`` is the :class:`Arena` after the run).
    """
    names = [f"bot-{i + 1}" for i in range(robots)]
    arena = Arena(names, seed, config)
    p = params or Params()
    controllers = {n: Controller(p, controller_seed(seed, n), arena.config.dt) for n in names}
    for c in controllers.values():
        c.start()
    arena.is_resting = lambda name: controllers[name].state is State.RESTING
    for _ in range(round(seconds * arena.config.ticks_per_second)):
        arena.step()
        for name, ctrl in controllers.items():
            robot = arena.robots[name]
            _, light_bearing = arena.light(name)
            sensors = Sensors(
                tick=arena.tick,
                food=arena.food_in_range(name),
                in_nest=arena.in_nest(robot.x),
                light_bearing=light_bearing,
                obstacle=arena.nearest_obstacle(name),
                carrying=robot.carrying,
            )
            action = ctrl.step(sensors)
            arena.command(name, action.v, action.w)
            if action.gripper is not None:
                ctrl.gripper_done(action.gripper, arena.gripper(name, action.gripper)["success"])
    return {
        "robots": robots,
        "seed": seed,
        "seconds": seconds,
        "items": arena.collected,
        "items_per_minute": round(arena.collected / (seconds / 60), 2),
        "net_energy": arena.energy,
        "items_per_robot": {n: r.collected for n, r in arena.robots.items()},
        "arena": arena,
    }
