"""The arena behind one rosbridge v2 endpoint per robot, ticking in (scaled) real time.

Each robot of the :class:`~devfleet_foraging.arena.Arena` gets its own
:class:`devfleet_ros.testing.RosbridgeServer` on a loopback port: the robot's
agent reaches it only there, with the topics and the service of
:mod:`devfleet_foraging.msgs`, exactly as it would reach a real robot's
rosbridge. Every tick the bridge steps the arena, then publishes each robot's
sensors and ``/odom``; the robot's ``/cmd_vel`` answers are timed
(tick-to-``cmd_vel`` latency) and a tick a robot did not answer before the
next one is counted as skipped.

A robot whose agent went silent for ``lost_after`` seconds (``kill -9``) is
lost to the arena: it stops and an item it carried respawns elsewhere (the
watchdog a real base runs on ``cmd_vel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import msgs
from .arena import Arena, TickMetrics

__all__ = ["ArenaBridge", "RobotLink"]


@dataclass
class RobotLink:
    """One robot's endpoint and its timing counters."""

    name: str
    server: Any
    sent_at: float | None = None
    answered: bool = True
    latencies: list[float] = field(default_factory=list)
    skipped: int = 0
    answers: int = 0


class ArenaBridge:
    """Run ``arena`` behind one rosbridge server per robot.

    Args:
        arena: the world.
        speed: simulated seconds per real second (1.0 = real time; tests use more).
        lost_after: seconds without ``cmd_vel`` before a robot that had been
            driven is lost.
        on_tick: called with every tick's metrics row (the CSV writer).
    """

    def __init__(
        self,
        arena: Arena,
        *,
        speed: float = 1.0,
        lost_after: float = 2.0,
        on_tick: Callable[[TickMetrics], None] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.arena = arena
        self.speed = speed
        self.lost_after = lost_after
        self.on_tick = on_tick
        self.links: dict[str, RobotLink] = {}
        self.late_ticks = 0
        self.metrics: list[TickMetrics] = []
        self._task: asyncio.Task[None] | None = None
        self._ticked = asyncio.Event()

    @property
    def urls(self) -> dict[str, str]:
        """Robot name → its rosbridge URL (``ws://127.0.0.1:PORT``)."""
        return {name: link.server.url for name, link in self.links.items()}

    async def start(self) -> None:
        """Start every robot's rosbridge server, then the tick loop."""
        from devfleet_ros.testing import RosbridgeServer

        for name in self.arena.robots:
            server = RosbridgeServer(host="127.0.0.1", port=0)
            await server.start()
            link = self.links[name] = RobotLink(name, server)
            for topic in (msgs.ODOM, msgs.FOOD, msgs.LIGHT, msgs.PROXIMITY):
                server.advertise_topic(topic, msgs.TYPES[topic])
            server.on_publish(msgs.CMD_VEL, self._cmd_vel_handler(link))
            server.advertise_service(msgs.GRIPPER, msgs.TYPES[msgs.GRIPPER], self._gripper_handler(name))
        self._task = asyncio.create_task(self._loop(), name="arena-ticks")

    async def stop(self) -> None:
        """Stop ticking and close every server."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for link in self.links.values():
            with contextlib.suppress(Exception):
                await link.server.stop()

    async def __aenter__(self) -> ArenaBridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def until_tick(self, tick: int) -> None:
        """Return once the arena has reached ``tick``."""
        while self.arena.tick < tick:
            self._ticked.clear()
            await self._ticked.wait()

    # ---- the robots' side ---------------------------------------------------------------

    def _cmd_vel_handler(self, link: RobotLink) -> Callable[[dict[str, Any]], None]:
        def on_cmd_vel(msg: dict[str, Any]) -> None:
            twist = msgs.decode_twist(msg)
            if twist is None:
                return  # malformed: the base ignores it, as a real one would
            self.arena.command(link.name, *twist)
            link.answers += 1
            if not link.answered and link.sent_at is not None:
                link.latencies.append(time.perf_counter() - link.sent_at)
                link.answered = True

        return on_cmd_vel

    def _gripper_handler(self, name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def on_gripper(request: dict[str, Any]) -> dict[str, Any]:
            action = request.get("action") if isinstance(request, dict) else None
            return self.arena.gripper(name, str(action))

        return on_gripper

    # ---- time ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        dt = self.arena.config.dt / self.speed
        lost_ticks = max(1, round(self.lost_after * self.arena.config.ticks_per_second))
        next_at = time.perf_counter()
        while True:
            row = self.arena.step()
            self.metrics.append(row)
            if self.on_tick is not None:
                self.on_tick(row)
            self._ticked.set()
            for name, link in self.links.items():
                robot = self.arena.robots[name]
                if not robot.online:
                    continue
                if robot.last_cmd_tick is not None:
                    if not link.answered:
                        link.skipped += 1
                    if self.arena.tick - robot.last_cmd_tick > lost_ticks:
                        self.arena.lose(name)
                        continue
                await self._publish_sensors(link)
            next_at += dt
            delay = next_at - time.perf_counter()
            if delay < 0:
                self.late_ticks += 1
                next_at = time.perf_counter()  # behind: do not try to catch up in a burst
            await asyncio.sleep(max(0.0, delay))

    async def _publish_sensors(self, link: RobotLink) -> None:
        a = self.arena
        name, tick, dt = link.name, a.tick, a.config.dt
        robot = a.robots[name]
        server = link.server
        light_d, light_b = a.light(name)
        server.publish(
            msgs.FOOD,
            msgs.TYPES[msgs.FOOD],
            msgs.food_msg(tick, dt, a.food_in_range(name), robot.carrying),
        )
        server.publish(
            msgs.LIGHT,
            msgs.TYPES[msgs.LIGHT],
            msgs.light_msg(tick, dt, a.in_nest(robot.x), light_d, light_b),
        )
        server.publish(
            msgs.PROXIMITY,
            msgs.TYPES[msgs.PROXIMITY],
            msgs.proximity_msg(tick, dt, a.nearest_obstacle(name)),
        )
        link.sent_at = time.perf_counter()
        link.answered = False
        server.publish(
            msgs.ODOM,
            msgs.TYPES[msgs.ODOM],
            msgs.odom_msg(tick, dt, robot.x, robot.y, robot.theta, robot.v, robot.w),
        )
