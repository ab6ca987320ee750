"""The ``ros`` component: a robot's rosbridge bus as a fleet component.

- ``ros2mqtt`` bridges subscribe to a ROS topic and publish each message on
  ``nodes/{node}/components/ros/{mqtt_topic}`` (default ``out/<ros topic>``);
  ``mqtt2ros`` bridges subscribe to ``nodes/{node}/components/ros/in/...``
  (default ``in/<ros topic>``) and publish each JSON object to ROS.
- Every message is checked against its ``ros_type`` (:mod:`.msgtypes`): a
  mismatch, bad JSON or a non-object is counted, logged and reported in
  state (``errors``, ``last_error``), never dropped silently.
- Bridges change with a config write, in place (:meth:`RosBridge._reconfigure`):
  only the bridges that changed are touched; a new ``url`` restarts.
- The link is offered to the node's other components as interface ``"ros"``
  (:class:`~devfleet_ros.api.RosLink`).
- State: ``state`` ok/degraded, ``connected``, ``reason``, the budget and the
  bytes/s sent, and per bridge its rate, drops, oversize, errors and latency
  p50/p99 (header stamp, else receive time → MQTT publish or ROS send).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from devfleet_base import contract
from devfleet_base.component import Component, ComponentContext, Health, command
from devfleet_base.errors import Code, CommandError, ComponentError, ContractError
from devfleet_base.schema import Field, Schema

from .api import INTERFACE
from .bridges import Bridge, Item, Scheduler
from .link import RosbridgeLink
from .msgtypes import check_message
from .settings import CONFIG_SCHEMA, MQTT2ROS, ROS2MQTT, bridge_key, check_settings

__all__ = ["RosBridge"]

_LOG_EVERY = 10.0  # seconds between repeated error lines of one bridge


class RosBridge(Component):
    """Bridges a robot's rosbridge v2 server and the fleet's broker."""

    name = "ros"
    version = "0.1.0"
    description = "ROS bridge: rosbridge v2 topics and services as fleet topics and commands"
    config_schema = CONFIG_SCHEMA

    def __init__(self, ctx: ComponentContext, config: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, config)
        self.link: RosbridgeLink | None = None
        self.scheduler = Scheduler(self.config["budget_bytes_per_s"], ctx.log)
        self.bridges: dict[tuple[str, str, str], Bridge] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._withdraw: Any = None
        self._state_dirty = asyncio.Event()
        self._logged: dict[tuple[str, str, str], float] = {}

    @classmethod
    def validate_config(cls, config: Any) -> dict[str, Any]:
        validated = super().validate_config(config)
        return check_settings(validated, cls.name)

    # ---- lifecycle ------------------------------------------------------------------

    async def _setup(self) -> None:
        cfg = self.config
        self.link = RosbridgeLink(
            cfg["url"],
            log=self.ctx.log,
            reconnect_max_s=cfg["reconnect_max_s"],
            on_change=self._on_link_change,
        )
        await self.link.start()
        self._withdraw = self.ctx.interfaces.provide(INTERFACE, self.link)
        for settings in cfg["bridges"]:
            await self._add_bridge(settings)
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="ros-scheduler"),
            asyncio.create_task(self._state_loop(), name="ros-state"),
        ]
        self._report()

    async def _teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for key in list(self.bridges):
            await self._remove_bridge(key)
        if self._withdraw is not None:
            self._withdraw()
            self._withdraw = None
        if self.link is not None:
            await self.link.stop()
        self._report()

    async def _health(self) -> Health:
        # A lost robot is a degraded *state*, not a broken component: restarting would not
        # bring rosbridge back, and the supervisor's restart budget would end in "failed"
        # after a long outage. Unhealthy means our own machinery died.
        for task in self._tasks:
            if task.done():
                return Health(False, f"{task.get_name()} stopped")
        if self.link is None or not self.link.connected:
            return Health(True, f"degraded: {self.link.reason if self.link else 'not started'}")
        return Health(True, f"connected to {self.link.url}")

    async def _reconfigure(self, config: dict[str, Any]) -> None:
        if config["url"] != self.config["url"] or config["reconnect_max_s"] != self.config["reconnect_max_s"]:
            raise NotImplementedError  # a new robot: restart with a fresh link
        wanted = {bridge_key(b): b for b in config["bridges"]}
        for key in [k for k in self.bridges if k not in wanted]:
            await self._remove_bridge(key)
        order = []
        for key, settings in wanted.items():
            bridge = self.bridges.get(key)
            if bridge is None:
                await self._add_bridge(settings)
            elif bridge.settings != settings:
                await self._retune_bridge(bridge, settings)
            order.append(self.bridges[key])
        self.scheduler.bridges = order
        self.scheduler.set_budget(config["budget_bytes_per_s"])
        self.config = config
        self._report()

    # ---- bridges ----------------------------------------------------------------------

    async def _add_bridge(self, settings: dict[str, Any]) -> None:
        key = bridge_key(settings)
        if settings["direction"] == ROS2MQTT:
            bridge = Bridge(settings, self._sender_to_mqtt(key))
            self._subscribe_ros(bridge)
        else:
            bridge = Bridge(settings, self._sender_to_ros(key))
            bridge.paused = not (self.link and self.link.connected)
            leaf = settings["mqtt_topic"].split("/", 1)[1]
            bridge.closer = await self.ctx.subscribe(leaf, self._input_handler(bridge), qos=settings["qos"])
        self.bridges[key] = bridge
        self.scheduler.bridges.append(bridge)

    async def _retune_bridge(self, bridge: Bridge, settings: dict[str, Any]) -> None:
        old = bridge.settings
        bridge.retune(settings)
        if settings["direction"] == ROS2MQTT:
            keys = ("ros_type", "throttle_rate_ms", "queue_length", "bulk")
            if any(old[k] != settings[k] for k in keys):
                self._close_closer(bridge)
                self._subscribe_ros(bridge)
        elif old["qos"] != settings["qos"]:
            closer, bridge.closer = bridge.closer, None
            if closer is not None:
                await closer()
            leaf = settings["mqtt_topic"].split("/", 1)[1]
            bridge.closer = await self.ctx.subscribe(leaf, self._input_handler(bridge), qos=settings["qos"])

    def _subscribe_ros(self, bridge: Bridge) -> None:
        assert self.link is not None
        s = bridge.settings
        sub = self.link.subscribe(
            s["ros_topic"],
            s["ros_type"],
            self._ros_handler(bridge),
            throttle_rate_ms=s["throttle_rate_ms"],
            queue_length=s["queue_length"],
            bulk=s["bulk"],
        )
        bridge.closer = sub.close

    def _close_closer(self, bridge: Bridge) -> None:
        closer, bridge.closer = bridge.closer, None
        if closer is not None:
            closer()

    async def _remove_bridge(self, key: tuple[str, str, str]) -> None:
        bridge = self.bridges.pop(key)
        if bridge in self.scheduler.bridges:
            self.scheduler.bridges.remove(bridge)
        closer, bridge.closer = bridge.closer, None
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result
        bridge.queue.clear()

    # ---- ros2mqtt -------------------------------------------------------------------------

    def _ros_handler(self, bridge: Bridge) -> Any:
        def on_message(msg: Any) -> None:
            received = time.time()
            s = bridge.settings
            try:
                check_message(s["ros_type"], msg)
                size = len(contract.encode(msg))
            except (ContractError, TypeError, ValueError) as exc:
                self._bridge_error(
                    bridge, f"ROS message on {s['ros_topic']} does not fit {s['ros_type']}: {exc}"
                )
                return
            if bridge.offer(Item(msg, size, _stamp_of(msg, received))):
                self.scheduler.wake()

        return on_message

    def _sender_to_mqtt(self, key: tuple[str, str, str]) -> Any:
        async def send(item: Item) -> None:
            bridge = self.bridges.get(key)
            if bridge is None:
                return  # removed while its message was on the way
            s = bridge.settings
            await self.ctx.publish(s["mqtt_topic"], item.payload, retain=s["retain"], qos=s["qos"])

        return send

    # ---- mqtt2ros -------------------------------------------------------------------------

    def _input_handler(self, bridge: Bridge) -> Any:
        def on_input(leaf: str, payload: bytes) -> None:
            received = time.time()
            s = bridge.settings
            if len(payload) > s["max_bytes"]:
                bridge.offer(Item(None, len(payload), received))  # counted as oversize
                self._log_once(bridge, "oversize", bridge.stats.last_error)
                return
            try:
                msg = contract.decode(payload, max_bytes=s["max_bytes"])
                check_message(s["ros_type"], msg)
            except ContractError as exc:
                self._bridge_error(bridge, f"MQTT message on in/{leaf} for {s['ros_topic']}: {exc.message}")
                return
            if bridge.offer(Item(msg, len(payload), _stamp_of(msg, received))):
                self.scheduler.wake()

        return on_input

    def _sender_to_ros(self, key: tuple[str, str, str]) -> Any:
        async def send(item: Item) -> None:
            bridge = self.bridges.get(key)
            if bridge is None or self.link is None:
                return
            s = bridge.settings
            await self.link.publish(s["ros_topic"], s["ros_type"], item.payload)

        return send

    # ---- errors and state -------------------------------------------------------------------

    def _bridge_error(self, bridge: Bridge, text: str) -> None:
        bridge.error(text)
        self._log_once(bridge, "error", text)
        self._state_dirty.set()

    def _log_once(self, bridge: Bridge, kind: str, text: str) -> None:
        """Log the first of a burst, then at most one line per bridge and kind every few seconds."""
        key = (bridge.settings["ros_topic"], bridge.settings["direction"], kind)
        now = time.monotonic()
        if now - self._logged.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[key] = now
            self.ctx.log.warning("%s (%d so far)", text, bridge.stats.errors or bridge.stats.oversize)

    def _on_link_change(self) -> None:
        connected = bool(self.link and self.link.connected)
        for bridge in self.bridges.values():
            if bridge.settings["direction"] == MQTT2ROS:
                bridge.paused = not connected
        self.scheduler.wake()
        self._report()

    async def _state_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_dirty.wait(), self.config["state_interval"])
            self._state_dirty.clear()
            self._report()

    def _report(self) -> None:
        self.ctx.report_state(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """The component's state section (also what ``state`` reports)."""
        link = self.link
        connected = bool(link and link.connected)
        now = time.monotonic()
        return {
            "state": "ok" if connected else "degraded",
            "connected": connected,
            "reason": "" if connected else (link.reason if link else "not started"),
            "url": self.config["url"],
            "connects": link.connects if link else 0,
            "bulk_connected": link.bulk_connected if link else None,
            "budget_bytes_per_s": self.scheduler.budget,
            "bytes_per_s": round(self.scheduler.bytes_per_s(now)),
            "bridges": [b.to_state(now) for b in self.scheduler.bridges],
        }

    # ---- commands ------------------------------------------------------------------------------

    def _live_link(self) -> RosbridgeLink:
        if self.link is None:
            raise CommandError("the ROS bridge is not running", code=Code.UNAVAILABLE)
        return self.link

    @command(
        "topics",
        args=Schema("topics.args", {"timeout": Field("float", default=5.0, min=0.01, max=120.0)}),
        doc="The robot's topics and their types (rosapi).",
    )
    async def cmd_topics(self, args: dict[str, Any]) -> dict[str, Any]:
        values = await self._live_link().call_service("/rosapi/topics", {}, timeout=args["timeout"])
        topics, types = values.get("topics", []), values.get("types", [])
        if not isinstance(topics, list) or not isinstance(types, list):
            raise CommandError("rosapi/topics answered without topics and types lists", code=Code.FAILED)
        return {"topics": dict(zip(topics, types + [""] * (len(topics) - len(types)), strict=False))}

    @command(
        "publish",
        args=Schema(
            "publish.args",
            {
                "topic": Field("str", required=True, pattern=r"/[A-Za-z][A-Za-z0-9_/]*", max=200),
                "type": Field(
                    "str", required=True, pattern=r"[A-Za-z][A-Za-z0-9_]*/(msg/)?[A-Za-z][A-Za-z0-9_]*"
                ),
                "msg": Field("dict", required=True),
            },
        ),
        doc="Publish one message to a ROS topic.",
    )
    async def cmd_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        link = self._live_link()
        try:
            await link.publish(args["topic"], args["type"], args["msg"])
        except ContractError as exc:
            raise CommandError(exc.message, code=Code.INVALID) from None
        except ComponentError as exc:
            raise CommandError(exc.message, code=Code.UNAVAILABLE) from None
        return {"topic": args["topic"]}

    @command(
        "call_service",
        args=Schema(
            "call_service.args",
            {
                "service": Field("str", required=True, pattern=r"/[A-Za-z][A-Za-z0-9_/]*", max=200),
                "args": Field("dict", default={}),
                "type": Field("str", nullable=True, default=None, max=200),
                "timeout": Field("float", default=5.0, min=0.01, max=120.0),
            },
        ),
        doc="Call a ROS service; its response is the receipt's result.",
    )
    async def cmd_call_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._live_link().call_service(
            args["service"], args["args"], type=args["type"], timeout=args["timeout"]
        )


def _stamp_of(msg: Any, fallback: float) -> float:
    """A message's ``header.stamp`` (ROS 1 secs/nsecs or ROS 2 sec/nanosec) in epoch s, else ``fallback``."""
    header = msg.get("header") if isinstance(msg, dict) else None
    stamp = header.get("stamp") if isinstance(header, dict) else None
    if not isinstance(stamp, dict):
        return fallback
    secs = stamp.get("secs", stamp.get("sec"))
    nsecs = stamp.get("nsecs", stamp.get("nanosec", 0))
    if not isinstance(secs, int) or not isinstance(nsecs, int) or secs <= 0:
        return fallback
    value = secs + nsecs / 1e9
    return value if abs(value - fallback) < 3600 else fallback  # a sim-time stamp: not comparable
