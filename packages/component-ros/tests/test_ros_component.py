"""The ros component against the test kit's rosbridge server, with a fake agent context."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from devfleet_ros.api import INTERFACE, RosLink
from devfleet_ros.component import RosBridge
from devfleet_ros.testing import RosbridgeServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_base.errors import CommandError, ComponentError, ContractError
from devfleet_base.testing import FakeContext
from devfleet_base.testing.injector import inject

TWIST = "geometry_msgs/Twist"


def _bridge(direction: str, ros_topic: str, ros_type: str, **extra: Any) -> dict[str, Any]:
    return {"direction": direction, "ros_topic": ros_topic, "ros_type": ros_type, **extra}


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


def _bridge_state(ctx: FakeContext, ros_topic: str) -> dict[str, Any]:
    assert ctx.state is not None
    return next(b for b in ctx.state["bridges"] if b["ros_topic"] == ros_topic)


@pytest.fixture
async def running(rosbridge_server: RosbridgeServer):
    ctx = FakeContext(name="ros")
    config = {
        "url": rosbridge_server.url,
        "state_interval": 0.1,
        "bridges": [
            _bridge("ros2mqtt", "/odom", "geometry_msgs/Pose2D"),
            _bridge("mqtt2ros", "/cmd_vel", TWIST),
        ],
    }
    comp = RosBridge(ctx, config)
    await comp.start()
    link: RosLink = ctx.interfaces.get(INTERFACE)
    await link.wait_connected(5)
    await _until(lambda: rosbridge_server.subscribers("/odom") == 1)
    yield comp, ctx, rosbridge_server
    await comp.stop()
    assert ctx.interfaces.get(INTERFACE) is None


async def test_ros2mqtt_and_mqtt2ros_flow(running) -> None:
    _comp, ctx, srv = running
    srv.publish("/odom", "geometry_msgs/Pose2D", {"x": 1.5, "y": 0.0, "theta": 0.1})
    await ctx.wait_for(lambda c: c.messages("out/odom"))
    assert ctx.messages("out/odom") == [{"x": 1.5, "y": 0.0, "theta": 0.1}]

    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    srv.on_publish("/cmd_vel", got.put_nowait)
    assert ctx.deliver("cmd_vel", {"linear": {"x": 0.3}}) == 1
    assert await asyncio.wait_for(got.get(), 5) == {"linear": {"x": 0.3}}
    await ctx.wait_for(lambda c: _bridge_state(c, "/odom")["messages"] == 1)
    odom = _bridge_state(ctx, "/odom")
    assert odom["latency_ms"]["p50"] is not None and odom["drops"] == 0
    assert ctx.state is not None and ctx.state["connected"] is True and ctx.state["state"] == "ok"


async def test_type_mismatch_and_bad_input_are_counted_and_reported(running) -> None:
    _comp, ctx, srv = running
    for junk in [b"not json", b"[1, 2]", b'{"linear": {"x": "fast"}}', b'{"wings": 2}']:
        ctx.deliver("cmd_vel", junk)
    await ctx.wait_for(lambda c: _bridge_state(c, "/cmd_vel")["errors"] == 4)
    assert "wings" in _bridge_state(ctx, "/cmd_vel")["last_error"]
    # a ROS publisher of the wrong type on a bridged topic (the robot changed under us)
    srv.publish("/odom", "std_msgs/String", {"data": "hello"})
    await ctx.wait_for(lambda c: _bridge_state(c, "/odom")["errors"] == 1)
    assert "Pose2D" in _bridge_state(ctx, "/odom")["last_error"]
    assert ctx.messages("out/odom") == []


async def test_link_api_and_service_errors(running) -> None:
    _comp, ctx, srv = running
    link: RosLink = ctx.interfaces.get(INTERFACE)
    srv.advertise_service("/add", "x/Add", lambda a: {"sum": a["a"] + a["b"]})

    def broken(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("motor fault")

    async def slow(args: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    srv.advertise_service("/broken", "std_srvs/Trigger", broken)
    srv.advertise_service("/slow", "std_srvs/Trigger", slow)
    assert await link.call_service("/add", {"a": 1, "b": 2}) == {"sum": 3}
    for name, code in [("/nope", "not_found"), ("/broken", "failed")]:
        with pytest.raises(CommandError) as err:
            await link.call_service(name, {})
        assert err.value.code == code
    with pytest.raises(CommandError) as err:
        await link.call_service("/slow", {}, timeout=0.2)
    assert err.value.code == "timeout"

    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sub = link.subscribe("/scan", "std_msgs/Float32", seen.put_nowait)
    await _until(lambda: srv.subscribers("/scan") == 1)
    srv.publish("/scan", "std_msgs/Float32", {"data": 2.5})
    assert await asyncio.wait_for(seen.get(), 5) == {"data": 2.5}
    sub.close()
    await _until(lambda: srv.subscribers("/scan") == 0)

    with pytest.raises(ContractError, match="linear"):
        await link.publish("/cmd_vel", TWIST, {"linear": 1})
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    srv.on_publish("/beep", heard.put_nowait)
    await link.publish("/beep", "std_msgs/Empty", {})
    assert await asyncio.wait_for(heard.get(), 5) == {}
    assert srv.topics()["/beep"] == "std_msgs/Empty"


async def test_commands_through_injector(running) -> None:
    comp, _ctx, srv = running
    srv.advertise_topic("/camera/image", "sensor_msgs/Image")
    receipt = await inject(comp, {"id": "t1", "args": {"command": "topics"}})
    assert receipt["status"] == "ok", receipt
    assert receipt["result"]["topics"]["/camera/image"] == "sensor_msgs/Image"
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    srv.on_publish("/say", heard.put_nowait)
    receipt = await inject(
        comp,
        {
            "id": "p1",
            "args": {
                "command": "publish",
                "args": {"topic": "/say", "type": "std_msgs/String", "msg": {"data": "hi"}},
            },
        },
    )
    assert receipt["status"] == "ok", receipt
    assert await asyncio.wait_for(heard.get(), 5) == {"data": "hi"}
    receipt = await inject(
        comp,
        {
            "id": "p2",
            "args": {
                "command": "publish",
                "args": {"topic": "/say", "type": "std_msgs/String", "msg": {"data": 1}},
            },
        },
    )
    assert receipt["status"] == "error" and receipt["code"] == "invalid"
    receipt = await inject(
        comp, {"id": "c1", "args": {"command": "call_service", "args": {"service": "/nope"}}}
    )
    assert receipt["status"] == "error" and receipt["code"] == "not_found"


async def test_reconfigure_in_place_keeps_other_bridges(running) -> None:
    comp, ctx, srv = running
    link = comp.link
    odom_bridge = comp.bridges[("ros2mqtt", "/odom", "out/odom")]
    new = dict(comp.config)
    new["bridges"] = [
        _bridge("ros2mqtt", "/odom", "geometry_msgs/Pose2D"),
        _bridge("ros2mqtt", "/battery", "std_msgs/Float32", mqtt_topic="power/battery", qos=1),
    ]
    await comp.reconfigure(new)
    assert comp.link is link and comp.bridges[("ros2mqtt", "/odom", "out/odom")] is odom_bridge
    assert ("mqtt2ros", "/cmd_vel", "in/cmd_vel") not in comp.bridges
    assert "cmd_vel" not in ctx.subscriptions
    await _until(lambda: srv.subscribers("/battery") == 1)
    srv.publish("/battery", "std_msgs/Float32", {"data": 0.8})
    await ctx.wait_for(lambda c: c.messages("power/battery") == [{"data": 0.8}])


@pytest.mark.parametrize(
    ("bridges", "path"),
    [
        ([_bridge("sideways", "/a", TWIST)], "ros.bridges[0].direction"),
        (
            [_bridge("ros2mqtt", "/a", TWIST), _bridge("ros2mqtt", "cmd vel", TWIST)],
            "ros.bridges[1].ros_topic",
        ),
        ([_bridge("ros2mqtt", "/a", "Twist")], "ros.bridges[0].ros_type"),
        ([_bridge("mqtt2ros", "/a", TWIST, mqtt_topic="cmd")], "ros.bridges[0].mqtt_topic"),
        ([_bridge("ros2mqtt", "/a", TWIST, mqtt_topic="in/a")], "ros.bridges[0].mqtt_topic"),
        ([_bridge("ros2mqtt", "/a", TWIST, qos=3)], "ros.bridges[0].qos"),
        ([_bridge("ros2mqtt", "/a", TWIST, max_bytes=1)], "ros.bridges[0].max_bytes"),
        ([_bridge("ros2mqtt", "/a", TWIST, colour="red")], "ros.bridges[0]"),
        (
            [_bridge("ros2mqtt", "/a", TWIST), _bridge("ros2mqtt", "/b", TWIST, mqtt_topic="out/a")],
            "ros.bridges[1].mqtt_topic",
        ),
    ],
)
def test_bad_settings_name_the_field(bridges: list[dict[str, Any]], path: str) -> None:
    with pytest.raises(ContractError) as err:
        RosBridge.validate_config({"bridges": bridges})
    assert err.value.message.startswith(path), err.value.message


def test_bad_url_is_refused() -> None:
    for url in ["http://x:1", "ws://", "ws://h:99999", "nonsense"]:
        with pytest.raises(ContractError, match=r"^ros\.url"):
            RosBridge.validate_config({"url": url})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.text(max_size=5),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=8,
        ),
    )
)
def test_hostile_mqtt_input_never_crashes(payload: Any) -> None:
    async def run() -> None:
        ctx = FakeContext(name="ros")
        comp = RosBridge(
            ctx, {"url": "ws://127.0.0.1:9", "bridges": [_bridge("mqtt2ros", "/cmd_vel", TWIST)]}
        )
        await comp.start()
        try:
            ctx.deliver(
                "cmd_vel",
                payload if isinstance(payload, bytes) else __import__("json").dumps(payload, allow_nan=True),
            )
            bridge = comp.bridges[("mqtt2ros", "/cmd_vel", "in/cmd_vel")]
            assert bridge.stats.errors + len(bridge.queue) + bridge.stats.oversize == 1
        finally:
            await comp.stop()

    asyncio.run(run())


async def test_not_connected_is_degraded_and_refuses() -> None:
    ctx = FakeContext(name="ros")
    comp = RosBridge(ctx, {"url": "ws://127.0.0.1:9", "bridges": []})
    await comp.start()
    try:
        assert ctx.state is not None and ctx.state["state"] == "degraded" and ctx.state["reason"]
        health = await comp.health()  # healthy: a restart would not bring the robot back
        assert health.ok and health.detail.startswith("degraded")
        assert "twisted.internet.reactor" not in sys.modules  # the asyncio transport only
        link: RosLink = ctx.interfaces.get(INTERFACE)
        with pytest.raises(ComponentError):
            await link.wait_connected(0.2)
        with pytest.raises(ComponentError):
            await link.publish("/x", "std_msgs/Empty", {})
        receipt = await inject(
            comp, {"id": "c", "args": {"command": "call_service", "args": {"service": "/x"}}}
        )
        assert receipt["code"] == "unavailable"
    finally:
        await comp.stop()


def test_importing_the_component_does_not_import_roslibpy() -> None:
    code = (
        "import sys, devfleet_ros, devfleet_ros.plugin, devfleet_ros.component, devfleet_ros.api;"
        "sys.exit('roslibpy' in sys.modules or 'autobahn' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_qos_retain_and_mqtt2ros_throttle_drop_oldest(rosbridge_server: RosbridgeServer) -> None:
    srv = rosbridge_server
    ctx = FakeContext(name="ros")
    bridges = [
        _bridge("ros2mqtt", "/pose", "geometry_msgs/Pose2D", qos=1, retain=True, mqtt_topic="robot/pose"),
        _bridge("mqtt2ros", "/cmd_vel", TWIST, throttle_rate_ms=300, queue_length=1),
    ]
    comp = RosBridge(ctx, {"url": srv.url, "bridges": bridges})
    await comp.start()
    try:
        await ctx.interfaces.get(INTERFACE).wait_connected(5)
        await _until(lambda: srv.subscribers("/pose") == 1)
        srv.publish("/pose", "geometry_msgs/Pose2D", {"x": 1.0})
        await ctx.wait_for(lambda c: c.messages("robot/pose"))
        sent = next(p for p in ctx.published if p.subtopic == "robot/pose")
        assert (sent.qos, sent.retain) == (1, True)

        heard: list[dict[str, Any]] = []
        srv.on_publish("/cmd_vel", heard.append)
        ctx.deliver("cmd_vel", {"linear": {"x": 0.0}})
        await _until(lambda: len(heard) == 1)
        for x in range(1, 5):  # inside the 300 ms window: only the newest waits
            ctx.deliver("cmd_vel", {"linear": {"x": float(x)}})
        await _until(lambda: len(heard) == 2)
        assert [m["linear"]["x"] for m in heard] == [0.0, 4.0]
        bridge = comp.bridges[("mqtt2ros", "/cmd_vel", "in/cmd_vel")]
        assert bridge.stats.drops == 3 and bridge.stats.messages == 2
    finally:
        await comp.stop()


async def test_component_restarts_close_their_connections(rosbridge_server: RosbridgeServer) -> None:
    import threading

    srv = rosbridge_server
    bridges = [
        _bridge("ros2mqtt", "/odom", "geometry_msgs/Pose2D"),
        _bridge("ros2mqtt", "/camera/image", "sensor_msgs/Image"),  # bulk: a second connection
    ]
    threads = None
    for cycle in range(10):
        ctx = FakeContext(name="ros")
        comp = RosBridge(ctx, {"url": srv.url, "bridges": bridges})
        await comp.start()
        await _until(lambda: srv.subscribers("/odom") == 1 and srv.subscribers("/camera/image") == 1)
        assert srv.client_count == 2
        await comp.stop()
        await _until(lambda: srv.client_count == 0)
        if cycle == 1:
            threads = threading.active_count()
    assert threads is not None and threading.active_count() <= threads


async def test_a_connection_ready_before_the_link_listens_is_still_reported(monkeypatch: Any) -> None:
    """roslibpy's Ros() starts connecting on its own thread at once: when the connection is up
    before the link has added its ready listener, the link must still see it (it stayed
    "connecting" forever before: 1 robot in ~40 foraging starts). Forced here: the server runs
    on a thread of its own and Ros() returns only once its connection is ready."""
    import threading

    import roslibpy

    started = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            server = RosbridgeServer()
            await server.start()
            box["server"], box["stop"] = server, asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            started.set()
            await box["stop"].wait()
            await server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    original = roslibpy.Ros.__init__

    def init_then_wait_ready(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        ready = threading.Event()
        self.factory.on_ready(lambda proto: ready.set())
        assert ready.wait(10), "the rosbridge test server did not accept the connection"

    monkeypatch.setattr(roslibpy.Ros, "__init__", init_then_wait_ready)
    ctx = FakeContext(name="ros")
    comp = RosBridge(ctx, {"url": box["server"].url, "bridges": []})
    await comp.start()
    try:
        await ctx.interfaces.get(INTERFACE).wait_connected(5)
        await _until(lambda: ctx.state is not None and ctx.state["connected"] is True)
        assert ctx.state["connects"] == 1
    finally:
        await comp.stop()
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
