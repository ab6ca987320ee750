"""The test kit's rosbridge v2 server, driven by a raw websocket client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from devfleet_ros.testing import RosbridgeServer
from websockets.asyncio.client import ClientConnection, connect

from devfleet_base.errors import ContractError


async def _send(ws: ClientConnection, **msg: Any) -> None:
    await ws.send(json.dumps(msg))


async def _recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    out = json.loads(frame)
    assert isinstance(out, dict)
    return out


async def _until_subscribed(srv: RosbridgeServer, topic: str, count: int = 1) -> None:
    async def wait() -> None:
        while srv.subscribers(topic) < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 5)


async def test_ros_publisher_reaches_subscribed_client(rosbridge_server: RosbridgeServer) -> None:
    srv = rosbridge_server
    assert srv.url == f"ws://127.0.0.1:{srv.port}" and srv.port > 0
    async with connect(srv.url) as ws:
        await _send(ws, op="subscribe", id="s1", topic="/odom", type="geometry_msgs/Pose2D")
        await _until_subscribed(srv, "/odom")
        srv.publish("/odom", "geometry_msgs/Pose2D", {"x": 1.0, "y": 2.0, "theta": 0.5})
        got = await _recv(ws)
        assert got == {"op": "publish", "topic": "/odom", "msg": {"x": 1.0, "y": 2.0, "theta": 0.5}}
        await _send(ws, op="unsubscribe", id="s1", topic="/odom")
        await asyncio.wait_for(_gone(srv, "/odom"), 5)


async def _gone(srv: RosbridgeServer, topic: str) -> None:
    while srv.subscribers(topic):
        await asyncio.sleep(0.01)


async def test_client_publish_reaches_ros_subscriber_and_bad_type_is_refused(
    rosbridge_server: RosbridgeServer,
) -> None:
    srv = rosbridge_server
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    srv.on_publish("/cmd_vel", got.put_nowait)
    async with connect(srv.url) as ws:
        await _send(ws, op="advertise", topic="/cmd_vel", type="geometry_msgs/msg/Twist")
        await _send(ws, op="publish", topic="/cmd_vel", msg={"linear": {"x": "fast"}})
        status = await _recv(ws)
        assert status["op"] == "status" and status["level"] == "error"
        assert "msg.linear.x" in status["msg"]
        await _send(ws, op="publish", topic="/cmd_vel", msg={"linear": {"x": 0.5}})
        assert await asyncio.wait_for(got.get(), 5) == {"linear": {"x": 0.5}}
        assert srv.topics()["/cmd_vel"] == "geometry_msgs/Twist"
        assert srv.advertisers("/cmd_vel") == 1
        await _send(ws, op="advertise", id="a2", topic="/cmd_vel", type="std_msgs/String")
        clash = await _recv(ws)
        assert clash["op"] == "status" and clash["id"] == "a2" and "already established" in clash["msg"]


async def test_services_rosapi_and_errors(rosbridge_server: RosbridgeServer) -> None:
    srv = rosbridge_server
    srv.advertise_topic("/scan", "sensor_msgs/LaserScan")

    async def add(args: dict[str, Any]) -> dict[str, Any]:
        return {"sum": args["a"] + args["b"]}

    def broken(args: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("motor fault")

    srv.advertise_service("/add", "rospy_tutorials/AddTwoInts", add)
    srv.advertise_service("/broken", "std_srvs/Trigger", broken)
    async with connect(srv.url) as ws:
        calls = [
            ("c1", "/add", {"a": 2, "b": 3}),
            ("c2", "/broken", {}),
            ("c3", "/missing", {}),
            ("c4", "/rosapi/topics", {}),
            ("c5", "/rosapi/topic_type", {"topic": "/scan"}),
        ]
        for cid, service, args in calls:
            await _send(ws, op="call_service", id=cid, service=service, args=args)
        answers = {}
        for _ in calls:
            answer = await _recv(ws)
            answers[answer["id"]] = answer
        assert answers["c1"]["result"] is True and answers["c1"]["values"] == {"sum": 5}
        assert answers["c2"]["result"] is False and "motor fault" in answers["c2"]["values"]
        assert (
            answers["c3"]["result"] is False and answers["c3"]["values"] == "Service /missing does not exist"
        )
        assert answers["c4"]["values"] == {"topics": ["/scan"], "types": ["sensor_msgs/LaserScan"]}
        assert answers["c5"]["values"] == {"type": "sensor_msgs/LaserScan"}


async def test_client_offers_a_service(rosbridge_server: RosbridgeServer) -> None:
    srv = rosbridge_server
    async with connect(srv.url) as provider:
        await _send(provider, op="advertise_service", service="/beep", type="std_srvs/Trigger")

        async def serve_one() -> None:
            req = await _recv(provider)
            assert req["op"] == "call_service" and req["args"] == {"n": 1}
            await _send(
                provider, op="service_response", id=req["id"], service="/beep", values={"ok": 1}, result=True
            )

        task = asyncio.create_task(serve_one())
        await asyncio.sleep(
            0
        )  # the advertise is processed before our call: same connection order not guaranteed
        assert await _eventually_call(srv, "/beep", {"n": 1}) == {"ok": 1}
        await task
        await _send(provider, op="unadvertise_service", service="/beep")
        with pytest.raises(RuntimeError, match="does not exist"):
            await _eventually_gone(srv, "/beep")


async def _eventually_call(srv: RosbridgeServer, name: str, args: dict[str, Any]) -> Any:
    for _ in range(500):
        try:
            return await srv.call_service(name, args)
        except RuntimeError as exc:
            if "does not exist" not in str(exc):
                raise
            await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never advertised")


async def _eventually_gone(srv: RosbridgeServer, name: str) -> None:
    for _ in range(500):
        if name not in (await srv.call_service("/rosapi/services"))["services"]:
            await srv.call_service(name, {})  # raises "does not exist" now
        await asyncio.sleep(0.01)


async def test_throttle_and_queue_length_drop_oldest(rosbridge_server: RosbridgeServer) -> None:
    srv = rosbridge_server
    async with connect(srv.url) as ws:
        await _send(ws, op="subscribe", topic="/n", type="std_msgs/Int32", throttle_rate=200, queue_length=2)
        await _until_subscribed(srv, "/n")
        srv.publish("/n", "std_msgs/Int32", {"data": 0})
        assert (await _recv(ws))["msg"]["data"] == 0
        for i in range(1, 10):  # inside the 200 ms window: only the newest two stay queued
            srv.publish("/n", "std_msgs/Int32", {"data": i})
        seen = [(await _recv(ws))["msg"]["data"] for _ in range(2)]
        assert seen == [8, 9]
        with pytest.raises(TimeoutError):
            await _recv(ws, timeout=0.5)


async def test_ros_side_publish_checks_type(rosbridge_server: RosbridgeServer) -> None:
    with pytest.raises(ContractError, match=r"msg\.data"):
        rosbridge_server.publish("/s", "std_msgs/String", {"data": 3})


async def test_malformed_frames_get_status_and_connection_survives(rosbridge_server: RosbridgeServer) -> None:
    async with connect(rosbridge_server.url) as ws:
        for frame in ["not json", "[1, 2]", json.dumps({"op": "fly"}), json.dumps({"op": "subscribe"})]:
            await ws.send(frame)
            status = await _recv(ws)
            assert status["op"] == "status" and status["level"] == "error"
        await _send(ws, op="call_service", id="ok", service="/rosapi/topics")
        assert (await _recv(ws))["result"] is True


async def test_stop_closes_clients_and_restart_reuses_port() -> None:
    srv = RosbridgeServer()
    async with srv:
        port = srv.port
        ws = await connect(srv.url)
        await srv.stop()
        with pytest.raises(Exception):  # noqa: B017 - any close is fine
            await asyncio.wait_for(ws.recv(), 5)
        await srv.start()
        assert srv.port == port
        async with connect(srv.url) as ws2:
            await _send(ws2, op="call_service", id="x", service="/rosapi/topics")
            assert (await _recv(ws2))["result"] is True
        assert srv.connections == 2
