"""The foraging component with the real ledstrip component on one fake node, and a RosLink double.

The double stands in for the ``ros`` component's in-process interface only
(the end-to-end test uses the real one over a real rosbridge server): it
records what the component publishes and lets the test deliver sensor messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from devfleet_foraging import msgs
from devfleet_foraging.component import Foraging
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_base import CommandError
from devfleet_base.contract import MAP_POSE_SCHEMA
from devfleet_base.interfaces import Interfaces
from devfleet_base.testing import FakeContext
from devfleet_ledstrip import LedStrip


class Sub:
    def __init__(self, subs: dict[str, Callable[[Any], None]], topic: str) -> None:
        self.subs, self.topic = subs, topic

    def close(self) -> None:
        self.subs.pop(self.topic, None)


class LinkDouble:
    """Records publishes; ``deliver`` plays a message from the robot; services answer from ``services``."""

    connected = True

    def __init__(self) -> None:
        self.subs: dict[str, Callable[[Any], None]] = {}
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.services: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

    async def wait_connected(self, timeout: float) -> None:
        return None

    def subscribe(self, topic: str, type: str, callback: Callable[[Any], None], **kw: Any) -> Sub:
        assert msgs.TYPES[topic] == type
        self.subs[topic] = callback
        return Sub(self.subs, topic)

    async def publish(self, topic: str, type: str, msg: dict[str, Any]) -> None:
        self.published.append((topic, type, msg))

    async def call_service(
        self, service: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        self.calls.append((service, args or {}))
        handler = self.services.get(service)
        if handler is None:
            raise CommandError(f"no service {service}", code="not_found")
        return handler(args or {})

    def deliver(self, topic: str, msg: Any) -> None:
        self.subs[topic](msg)

    def tick(
        self, tick: int, *, food: list[tuple[float, float]] = (), in_nest: bool = True, carrying: bool = False
    ) -> None:  # type: ignore[assignment]
        self.deliver(msgs.FOOD, msgs.food_msg(tick, 0.1, list(food), carrying))
        self.deliver(msgs.LIGHT, msgs.light_msg(tick, 0.1, in_nest, 0.5, 3.0))
        self.deliver(msgs.PROXIMITY, msgs.proximity_msg(tick, 0.1, None))
        self.deliver(msgs.ODOM, msgs.odom_msg(tick, 0.1, 0.3, 1.0, 0.5, 0.0, 0.0))

    def cmd_vels(self) -> list[tuple[float, float] | None]:
        return [msgs.decode_twist(m) for t, _, m in self.published if t == msgs.CMD_VEL]


FAST = {"min_rest_time": 0.0, "leave_prob": 1.0, "prob_max": 1.0, "pose_rate": 10.0}


async def node(
    config: dict[str, Any] | None = None,
) -> tuple[Foraging, FakeContext, LedStrip, FakeContext, LinkDouble]:
    shared = Interfaces()
    link = LinkDouble()
    shared.provide("ros", link)
    led_ctx = FakeContext("bot-1", "ledstrip", interfaces=shared)
    strip = LedStrip(led_ctx, {"backend": "simulated", "led_count": 8, "fps": 5})
    await strip.start()
    ctx = FakeContext("bot-1", "foraging", interfaces=shared)
    comp = Foraging(ctx, {**FAST, **(config or {})})
    await comp.start()
    return comp, ctx, strip, led_ctx, link


def led(led_ctx: FakeContext) -> str:
    assert led_ctx.state is not None
    return str(led_ctx.state["params"]["color"])


async def test_each_odom_is_one_tick_answered_with_cmd_vel_and_the_led_follows_the_state() -> None:
    comp, ctx, strip, led_ctx, link = await node()
    assert led(led_ctx) == "#ff0000"  # held in the nest: red
    link.tick(1)
    await comp.process()
    assert link.cmd_vels() == [(0.0, 0.0)]
    await comp.handle_command("start", {})
    link.tick(2)
    await comp.process()
    assert comp.controller.state.value == "exploring"
    assert led(led_ctx) == "#00ff00" and ctx.state is not None and ctx.state["state"] == "exploring"
    link.tick(3, food=[(0.05, 0.0)], in_nest=False)
    link.services[msgs.GRIPPER] = lambda args: {
        "success": args["action"] == "pick",
        "carrying": True,
        "message": "",
    }
    await comp.process()
    assert link.calls == [(msgs.GRIPPER, {"action": "pick"})]
    assert comp.controller.state.value == "returning" and led(led_ctx) == "#0000ff"
    poses = ctx.messages("map")
    assert poses and all(MAP_POSE_SCHEMA.validate(p) == p | {"theta": p["theta"]} for p in poses)
    assert poses[-1]["map"] == "arena" and poses[-1]["x"] == 0.3
    await comp.stop()
    await strip.stop()


async def test_recall_and_pause_stop_the_wheels_at_once_with_the_state_in_the_receipt() -> None:
    comp, _ctx, strip, led_ctx, link = await node({"autostart": True})
    link.tick(1)
    await comp.process()
    assert comp.controller.state.value == "exploring"
    result = await comp.handle_command("recall", {})
    assert result["state"] == "resting" and result["mode"] == "held"
    assert link.cmd_vels()[-1] == (0.0, 0.0) and led(led_ctx) == "#ff0000"
    result = await comp.handle_command("pause", {})
    assert result["mode"] == "paused"
    assert (await comp.handle_command("status", {}))["state"] == "resting"
    await comp.stop()
    await strip.stop()


async def test_parameters_change_live_from_the_config() -> None:
    comp, _ctx, strip, _led_ctx, _link = await node()
    await comp.reconfigure({**FAST, "delta": 0.2, "give_up_time": 3.0})
    assert comp.controller.params.delta == 0.2 and comp.controller.params.give_up_time == 3.0
    with pytest.raises(NotImplementedError):
        await comp.reconfigure({**FAST, "seed": 5})  # a new seed: the agent restarts the component
    await comp.stop()
    await strip.stop()


async def test_a_gripper_failure_is_logged_not_fatal() -> None:
    comp, _ctx, strip, _led_ctx, link = await node({"autostart": True})
    link.tick(1)
    await comp.process()
    link.tick(2, food=[(0.05, 0.0)], in_nest=False)
    await comp.process()  # no /gripper service: CommandError not_found
    assert comp.controller.state.value == "exploring"
    await comp.stop()
    await strip.stop()


async def test_without_a_strip_the_behaviour_still_runs() -> None:
    shared = Interfaces()
    link = LinkDouble()
    shared.provide("ros", link)
    comp = Foraging(FakeContext("bot-2", "foraging", interfaces=shared), {**FAST, "autostart": True})
    await comp.start()
    link.tick(1)
    await comp.process()
    assert link.cmd_vels()
    await comp.stop()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=st.sampled_from([msgs.ODOM, msgs.FOOD, msgs.LIGHT, msgs.PROXIMITY]),
    msg=st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "header",
                        "seq",
                        "items",
                        "pose",
                        "in_nest",
                        "detected",
                        "distance",
                        "bearing",
                        "position",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    ),
)
async def test_hostile_sensor_messages_are_ignored(topic: str, msg: Any) -> None:
    comp, _ctx, strip, _led_ctx, link = await node({"autostart": True})
    link.deliver(topic, msg)  # never raises
    link.tick(1)
    await comp.process()
    assert link.cmd_vels()
    await comp.stop()
    await strip.stop()
