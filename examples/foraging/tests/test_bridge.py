"""The arena behind rosbridge: a raw rosbridge v2 client (websockets, JSON ops) drives one robot.

This is the robot's side of the wire, checked without the ``ros`` component:
sensors arrive every tick with ``/odom`` last, ``cmd_vel`` moves the robot and
is timed, the gripper service picks and drops, and a silent robot is lost.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from devfleet_foraging import msgs
from devfleet_foraging.arena import Arena
from devfleet_foraging.bridge import ArenaBridge
from websockets.asyncio.client import connect


async def recv_op(ws: Any, op: str, timeout: float = 5.0) -> dict[str, Any]:
    async def _next() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("op") == op:
                return frame

    return await asyncio.wait_for(_next(), timeout)


async def test_a_robot_is_driven_over_its_own_rosbridge_endpoint() -> None:
    arena = Arena(["a", "b"], seed=1)
    rows: list[Any] = []
    ticked = asyncio.Event()

    def on_tick(row: Any) -> None:
        rows.append(row)
        ticked.set()

    async with ArenaBridge(arena, speed=5.0, lost_after=0.5, on_tick=on_tick) as bridge:
        assert set(bridge.urls) == {"a", "b"} and bridge.urls["a"] != bridge.urls["b"]
        async with connect(bridge.urls["a"]) as ws:
            for topic in (msgs.FOOD, msgs.ODOM):
                await ws.send(json.dumps({"op": "subscribe", "topic": topic, "type": msgs.TYPES[topic]}))
            await ws.send(
                json.dumps({"op": "advertise", "topic": msgs.CMD_VEL, "type": msgs.TYPES[msgs.CMD_VEL]})
            )
            food = await recv_op(ws, "publish")
            odom = await recv_op(ws, "publish")
            assert food["topic"] == msgs.FOOD and odom["topic"] == msgs.ODOM  # the sensors come first
            tick, x0, y0, _theta = msgs.decode_odom(odom["msg"])  # type: ignore[misc]
            robot = arena.robots["a"]
            assert (x0, y0) == (robot.trail[tick - 1][0], robot.trail[tick - 1][1])
            for _ in range(5):
                await ws.send(
                    json.dumps({"op": "publish", "topic": msgs.CMD_VEL, "msg": msgs.twist_msg(0.2, 0.0)})
                )
                await recv_op(ws, "publish")
            assert robot.v == 0.2 and bridge.links["a"].latencies
            assert bridge.links["a"].latencies[0] < 1.0
            await ws.send(
                json.dumps({"op": "publish", "topic": msgs.CMD_VEL, "msg": {"linear": {"x": "fast"}}})
            )
            robot.x, robot.y = arena.items[0]
            await ws.send(
                json.dumps(
                    {"op": "call_service", "service": msgs.GRIPPER, "id": "g1", "args": {"action": "pick"}}
                )
            )
            answer = await recv_op(ws, "service_response")
            assert answer["id"] == "g1" and answer["result"] is True
            assert answer["values"] == {"success": True, "carrying": True, "message": "picked"}
            # the agent goes silent (kill -9): lost after 0.5 s, the carried item respawns
            await ws.close()

        async def lost() -> None:
            while robot.online:
                ticked.clear()
                await ticked.wait()

        await asyncio.wait_for(lost(), 5.0)
        assert not robot.online and not robot.carrying and arena.respawned_lost == 1
        assert arena.robots["b"].online  # never driven: not lost
        assert len(arena.items) == arena.config.items
    assert rows and rows[-1].tick == arena.tick
