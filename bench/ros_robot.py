"""The robot side of the ROS bench, in a process of its own: the test kit's rosbridge
server plus the ROS publishers, driven by one-line commands on stdin.

    python bench/ros_robot.py        # prints "ready PORT", then answers each command with one JSON line

Commands: ``subs TOPIC`` (subscriber count), ``paced TOPIC N HZ`` (N std_msgs/Float64
whose ``data`` is the publish time), ``flood SECONDS FIRST_SEQ`` (30 Hz 640×480
rgb8 images of noise beside a 10 Hz Twist whose ``linear.x`` is a sequence number;
answers the Twists' publish times), ``stop``, ``start``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from typing import Any

from devfleet_ros.testing import RosbridgeServer

IMAGE = "sensor_msgs/Image"
TWIST = "geometry_msgs/Twist"


async def paced(srv: RosbridgeServer, topic: str, n: int, hz: float) -> dict[str, Any]:
    t0 = time.monotonic()
    for i in range(n):
        srv.publish(topic, "std_msgs/Float64", {"data": time.time()})
        delay = t0 + (i + 1) / hz - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return {"sent": n}


async def flood(srv: RosbridgeServer, seconds: float, first_seq: int) -> dict[str, Any]:
    image = {
        "header": {"stamp": {"secs": 0, "nsecs": 0}, "frame_id": "camera"},
        "height": 480,
        "width": 640,
        "encoding": "rgb8",
        "step": 1920,
        "data": base64.b64encode(os.urandom(640 * 480 * 3)).decode(),  # a camera's noise: incompressible
    }
    sent_at: dict[int, float] = {}
    t0 = time.monotonic()
    tick = 0
    while time.monotonic() - t0 < seconds:
        srv.publish("/camera/image", IMAGE, image)
        if tick % 3 == 0:
            seq = first_seq + tick // 3
            sent_at[seq] = time.time()
            srv.publish("/cmd_vel", TWIST, {"linear": {"x": float(seq)}})
        tick += 1
        delay = t0 + tick / 30 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return {"images": tick, "twists": sent_at}


async def main() -> None:
    srv = RosbridgeServer()
    await srv.start()
    print(f"ready {srv.port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd, *args = line.split()
        if cmd == "subs":
            out: Any = {"subs": srv.subscribers(args[0]), "advertisers": srv.advertisers(args[0])}
        elif cmd == "paced":
            out = await paced(srv, args[0], int(args[1]), float(args[2]))
        elif cmd == "flood":
            out = await flood(srv, float(args[0]), int(args[1]))
        elif cmd == "stop":
            await srv.stop()
            out = {}
        elif cmd == "start":
            await srv.start()
            out = {}
        else:
            out = {"error": f"unknown command {cmd}"}
        print(json.dumps(out), flush=True)
    await srv.stop()


if __name__ == "__main__":
    asyncio.run(main())
