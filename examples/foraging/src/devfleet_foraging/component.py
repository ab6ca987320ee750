"""The ``foraging`` component: the ARGoS foraging controller driving one robot over ROS.

It runs beside the ``ros`` component (the robot's rosbridge link, interface
``"ros"``) and the ``ledstrip`` component (the state light, interface
``"ledstrip"``) on the robot's node. Every ``/odom`` message is one control
tick: the component reads the sensors that came with it, steps the
:class:`~devfleet_foraging.controller.Controller`, answers with ``/cmd_vel``
and, when the controller asks, calls the ``/gripper`` service. The state light
follows the state (resting red, exploring green, returning blue), the pose goes
to the map view at ``pose_rate`` Hz, and the parameters are the component's
settings, applied live by a config change.

Commands: ``start``, ``pause``, ``recall`` (rest now until started again),
``status``. A fleet-wide recall is one broadcast of the ``component`` verb.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from devfleet_base import CommandError, Component, ComponentContext, Field, Health, Schema, command
from devfleet_base.contract import NAME_PATTERN

from . import msgs
from .controller import COLORS, Controller, Params, Sensors
from .sim import controller_seed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from devfleet_ros.api import RosLink

__all__ = ["Foraging"]


def _prob(default: float, doc: str) -> Field:
    return Field("float", default=default, min=0.0, max=1.0, doc=doc)


_CONFIG = Schema(
    "foraging",
    {
        "map": Field("str", default="arena", pattern=NAME_PATTERN, doc="the map the pose is published on"),
        "seed": Field(
            "int", default=0, min=0, max=2**31, doc="seed of the random choices (mixed with the node name)"
        ),
        "autostart": Field("bool", default=False, doc="forage at once instead of waiting for start"),
        "pose_rate": Field("float", default=4.0, min=0.5, max=10.0, doc="map poses per second"),
        "ros_timeout": Field(
            "float", default=30.0, min=1.0, max=600.0, doc="seconds to wait for the ros interface"
        ),
        "leave_prob": _prob(0.05, "initial P(leave the nest) per tick"),
        "give_up_prob": _prob(0.05, "initial P(give up) per tick"),
        "delta": _prob(0.02, "the adaptive rule's step; 0 = off"),
        "prob_min": _prob(0.005, "lower bound of both probabilities"),
        "prob_max": _prob(0.5, "upper bound of both probabilities"),
        "min_rest_time": Field("float", default=2.0, min=0.0, max=3600.0, doc="s in the nest before leaving"),
        "give_up_time": Field(
            "float", default=10.0, min=0.0, max=3600.0, doc="s without food before giving up"
        ),
        "search_nest_time": Field("float", default=0.5, min=0.0, max=60.0, doc="s driven into the nest"),
        "max_speed": Field("float", default=0.25, min=0.01, max=5.0, doc="m/s forward"),
        "max_turn": Field("float", default=3.0, min=0.1, max=20.0, doc="rad/s"),
        "avoid_distance": Field(
            "float", default=0.15, min=0.0, max=2.0, doc="m, obstacles nearer are avoided"
        ),
        "grab_distance": Field("float", default=0.1, min=0.0, max=1.0, doc="m, items nearer are picked up"),
    },
)

_TICK_WAIT = 1.0  # seconds _process waits for the next /odom before it returns (idle, not an error)
_REPORT_EVERY = 10  # ticks between state reports when nothing changed (1 s at 10 Hz)


class Foraging(Component):
    """One robot's foraging behaviour (see the module docstring)."""

    name = "foraging"
    version = "0.1.0"
    description = "ARGoS foraging controller with the Labella 2006 adaptive rule, over ROS"
    config_schema = _CONFIG
    poll_interval = 0.0  # each cycle waits for the robot's next tick

    def __init__(self, ctx: ComponentContext, config: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, config)
        seed = controller_seed(self.config["seed"], ctx.node)  # robots differ, runs repeat
        self.controller = Controller(Params.from_config(self.config), seed)
        if self.config["autostart"]:
            self.controller.start()
        self.link: RosLink | None = None
        self.sensors = Sensors()
        self.ticks = 0
        self.last_tick: int | None = None
        self.pose = (0.0, 0.0, 0.0)
        self._tick = asyncio.Event()
        self._subs: list[Any] = []
        self._loop_thread = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shown: tuple[Any, str] | None = None  # (strip interface, colour) last set
        self._reported: tuple[str, str] | None = None
        self._pose_due = 1.0  # the first tick publishes a pose

    # ---- lifecycle -----------------------------------------------------------------------

    async def _setup(self) -> None:
        self._loop_thread = threading.get_ident()
        self._loop = asyncio.get_running_loop()
        self.link = await self.ctx.interfaces.wait_for("ros", timeout=self.config["ros_timeout"])
        subscribe = self.link.subscribe
        self._subs = [
            subscribe(msgs.FOOD, msgs.TYPES[msgs.FOOD], self._on(self._food)),
            subscribe(msgs.LIGHT, msgs.TYPES[msgs.LIGHT], self._on(self._light)),
            subscribe(msgs.PROXIMITY, msgs.TYPES[msgs.PROXIMITY], self._on(self._proximity)),
            subscribe(msgs.ODOM, msgs.TYPES[msgs.ODOM], self._on(self._odom)),
        ]
        self._show()

    async def _process(self) -> None:
        try:
            await asyncio.wait_for(self._tick.wait(), _TICK_WAIT)
        except TimeoutError:
            return  # no robot tick (arena paused or link down): nothing to do
        self._tick.clear()
        await self._control()

    async def _teardown(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []

    async def _health(self) -> Health:
        link = self.link
        if link is None or not link.connected:
            return Health(False, "the robot's rosbridge link is down")
        return Health(True, f"{self.controller.state.value}, {self.ticks} ticks")

    async def _reconfigure(self, config: dict[str, Any]) -> None:
        if config["ros_timeout"] != self.config["ros_timeout"] or config["seed"] != self.config["seed"]:
            raise NotImplementedError  # restart with the new seed
        self.controller.set_params(Params.from_config(config))
        self.config = config
        self._report(force=True)

    # ---- sensors (rosbridge callbacks) -----------------------------------------------------

    def _on(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """Run ``handler`` on the agent's loop, whatever thread the link calls back on."""

        def callback(msg: Any) -> None:
            if threading.get_ident() == self._loop_thread:
                handler(msg)
            else:
                loop = self._loop
                if loop is not None:
                    loop.call_soon_threadsafe(handler, msg)

        return callback

    def _food(self, msg: Any) -> None:
        food = msgs.decode_food(msg)
        if food is not None:
            self.sensors.food, self.sensors.carrying = food

    def _light(self, msg: Any) -> None:
        light = msgs.decode_light(msg)
        if light is not None:
            self.sensors.in_nest, self.sensors.light_bearing = light

    def _proximity(self, msg: Any) -> None:
        obstacle = msgs.decode_proximity(msg)
        if obstacle is not False:
            self.sensors.obstacle = obstacle  # type: ignore[assignment]

    def _odom(self, msg: Any) -> None:
        odom = msgs.decode_odom(msg)
        if odom is None:
            return
        tick, x, y, theta = odom
        self.sensors.tick = tick
        self.pose = (x, y, theta)
        self._tick.set()

    # ---- one control tick --------------------------------------------------------------------

    async def _control(self) -> None:
        link = self.link
        assert link is not None
        action = self.controller.step(self.sensors)
        await link.publish(msgs.CMD_VEL, msgs.TYPES[msgs.CMD_VEL], msgs.twist_msg(action.v, action.w))
        self.ticks += 1
        self.last_tick = self.sensors.tick
        if action.gripper is not None:
            try:
                answer = await link.call_service(
                    msgs.GRIPPER, {"action": action.gripper}, type=msgs.TYPES[msgs.GRIPPER], timeout=2.0
                )
                ok = isinstance(answer, dict) and answer.get("success") is True
            except CommandError as exc:
                self.ctx.log.warning("gripper %s failed: %s", action.gripper, exc)
                ok = False
            if ok:
                self.sensors.carrying = action.gripper == "pick"
            self.controller.gripper_done(action.gripper, ok)
        self._show()
        self._report(force=self.ticks % _REPORT_EVERY == 0)
        self._pose_due += self.config["pose_rate"] * self.controller.dt  # pose_rate per second of robot time
        if self._pose_due >= 1.0:
            self._pose_due -= 1.0
            await self._publish_pose()

    async def _stop_wheels(self) -> None:
        if self.link is not None and self.link.connected:
            await self.link.publish(msgs.CMD_VEL, msgs.TYPES[msgs.CMD_VEL], msgs.twist_msg(0.0, 0.0))

    # ---- what others see -----------------------------------------------------------------------

    def _show(self) -> None:
        """The state light: set the strip's colour when the state (or the strip) changed."""
        strip = self.ctx.interfaces.get("ledstrip")
        color = COLORS[self.controller.state]
        if strip is None or self._shown == (strip, color):
            return
        strip.fill(color)
        self._shown = (strip, color)

    def state(self) -> dict[str, Any]:
        """The reported state: the controller's snapshot plus the tick and pose."""
        x, y, theta = self.pose
        return {
            **self.controller.snapshot(),
            "tick": self.last_tick,
            "ticks": self.ticks,
            "pose": [round(x, 3), round(y, 3), round(theta, 3)],
            "carrying": self.sensors.carrying,
        }

    def _report(self, force: bool = False) -> dict[str, Any] | None:
        key = (self.controller.state.value, self.controller.mode.value)
        if not force and key == self._reported:
            return None
        self._reported = key
        state = self.state()
        self.ctx.report_state(state)
        return state

    async def _publish_pose(self) -> None:
        x, y, theta = self.pose
        await self.ctx.publish(
            "map",
            {
                "map": self.config["map"],
                "x": round(x, 3),
                "y": round(y, 3),
                "theta": round(theta, 3),
                "color": COLORS[self.controller.state],
                "label": self.controller.state.value,
                "ts": time.time(),
            },
        )

    # ---- operator commands ------------------------------------------------------------------------

    async def _after_operator(self) -> dict[str, Any]:
        self._show()
        self._report(force=True)
        return self.state()

    @command("start")
    async def cmd_start(self, args: dict[str, Any]) -> dict[str, Any]:
        """Forage (from held, after a recall, or paused)."""
        self.controller.start()
        return await self._after_operator()

    @command("pause")
    async def cmd_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        """Stop the wheels and freeze the state machine until start."""
        self.controller.pause()
        await self._stop_wheels()
        return await self._after_operator()

    @command("recall")
    async def cmd_recall(self, args: dict[str, Any]) -> dict[str, Any]:
        """Rest now (red light, wheels stopped) until start."""
        self.controller.recall()
        await self._stop_wheels()
        return await self._after_operator()

    @command("status")
    async def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """The controller's state, probabilities, counters and pose."""
        return self.state()
