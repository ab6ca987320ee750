"""The ROS bridge (component-ros) against a bare roslibpy → paho re-publisher, same run.

- Added latency, ROS publish → MQTT message at a console, p50/p99: the ros
  component in a real agent process and the floor (``floor_ros.py``: roslibpy's
  asyncio transport, one callback that publishes with raw paho) subscribe the
  same topic of the test kit's rosbridge server; one console client receives
  both, so every message is timed on both paths at once.
- The rate at which it starts dropping: steps of rising message rates; the
  first step where fewer than 99 % of the messages arrive.
- A 30 Hz 640×480 rgb8 image (about 1.2 MB of JSON each) beside a 10 Hz
  Twist: the image rate delivered and the Twist's p99 latency, with a budget
  that is not the limit (so the figure is the pipeline's) and with the default
  8 MB/s budget (the budget's protection of the control topic).
- Restoration after the rosbridge server returns (restart → subscriptions back).
- The agent's RSS and idle CPU with the component connected (two idle bridges).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import PY, Child, pct, proc_stat
from rawmqtt import RawClient

TITLE = "ROS bridge: added latency, drop rate, image beside control, restore, footprint"

NODE = "rosbench"
HERE = Path(__file__).resolve().parent


async def _until(predicate: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"ros bench: timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def _configure(fleet: Any, url: str, bridges: list[dict[str, Any]], **extra: Any) -> None:
    settings = {"url": url, "bridges": bridges, "state_interval": 1.0, **extra}
    await fleet.config_set(NODE, {"components.ros": {"enabled": True, "settings": settings}})


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    from devfleet_ros.testing import RosbridgeThread

    from devfleet_base.testing.broker import MosquittoBroker
    from devfleet_command.aio import AsyncFleet

    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    latency_n = 100 if quick else 2000
    steps = [200, 2000] if quick else [100, 250, 500, 1000, 2000, 4000, 8000]
    step_s = 0.5 if quick else 3.0
    image_s = 1.0 if quick else 10.0
    idle_s = 1.0 if quick else 30.0

    with (
        tempfile.TemporaryDirectory(prefix="bench-ros-") as tmp,
        MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker,
        RosbridgeThread() as rb,
    ):
        srv = rb.server
        agent = Child(
            [PY, "-m", "devfleet_agent", "--broker", broker.host, "--port", str(broker.port), "--name", NODE,
             "--data-dir", tmp, "--loglevel", "WARNING"],
            ready=False,
        )  # fmt: skip
        floor = Child(
            [PY, str(HERE / "floor_ros.py"), broker.host, str(broker.port), rb.url, "/bench", "std_msgs/Float64",
             "floor/bench"]
        )  # fmt: skip
        arrivals: dict[str, list[tuple[float, bytes]]] = {}

        def on_message(topic: str, payload: bytes, retain: bool) -> None:
            arrivals.setdefault(topic, []).append((time.time(), payload))

        console = RawClient("ros-bench-console", on_message)
        await console.connect(broker.host, broker.port)
        bridge_topic = f"nodes/{NODE}/components/ros/out/bench"
        await console.subscribe([("floor/bench", 0), (f"nodes/{NODE}/components/ros/out/#", 0)])
        try:
            async with AsyncFleet.connect(broker.url) as fleet:
                await fleet.wait_for(lambda m: NODE in m and m.get(NODE).online, timeout=60)
                bench_bridge = {"direction": "ros2mqtt", "ros_topic": "/bench", "ros_type": "std_msgs/Float64",
                                "queue_length": 100}  # fmt: skip
                await _configure(fleet, rb.url, [bench_bridge], budget_bytes_per_s=100_000_000)
                await _until(lambda: rb.call(srv.subscribers, "/bench") == 2, 60, "both /bench subscribers")

                # ---- latency, both paths at once ----
                log(f"ros: latency over {latency_n} messages at 50 Hz")
                arrivals.clear()

                async def paced(topic: str, type_: str, n: int, hz: float, make: Any) -> None:
                    t0 = time.monotonic()
                    for i in range(n):
                        srv.publish(topic, type_, make(i))
                        delay = t0 + (i + 1) / hz - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)

                await asyncio.wrap_future(
                    rb.submit(
                        paced, "/bench", "std_msgs/Float64", latency_n, 50.0, lambda i: {"data": time.time()}
                    )
                )
                await _until(lambda: len(arrivals.get(bridge_topic, [])) >= latency_n
                             and len(arrivals.get("floor/bench", [])) >= latency_n, 30, "latency messages")  # fmt: skip
                lat = {
                    k: [(t - json.loads(p)["data"]) * 1e3 for t, p in arrivals[k]]
                    for k in (bridge_topic, "floor/bench")
                }
                b50, b99 = pct(lat[bridge_topic], 0.5), pct(lat[bridge_topic], 0.99)
                f50, f99 = pct(lat["floor/bench"], 0.5), pct(lat["floor/bench"], 0.99)
                details["latency_ms"] = {"bridge_p50": b50, "bridge_p99": b99, "floor_p50": f50, "floor_p99": f99,
                                         "messages": latency_n}  # fmt: skip
                rows.append(row("ROS publish → MQTT at a console, p50 (ros component in an agent)", b50, "ms", f50,
                                target="≤ 1.5×"))  # fmt: skip
                rows.append(row("ROS publish → MQTT at a console, p99", b99, "ms", f99, target="≤ 1.5×"))

                # ---- rate at which it starts dropping ----
                ladder = []
                first_drop = None
                floor_drop = None
                for rate in steps:
                    n = int(rate * step_s)
                    arrivals.clear()
                    log(f"ros: {rate} msg/s for {step_s} s")
                    await asyncio.wrap_future(
                        rb.submit(
                            paced,
                            "/bench",
                            "std_msgs/Float64",
                            n,
                            float(rate),
                            lambda i: {"data": time.time()},
                        )
                    )
                    await asyncio.sleep(1.0)  # let the queues drain
                    got = len(arrivals.get(bridge_topic, []))
                    got_floor = len(arrivals.get("floor/bench", []))
                    ladder.append({"rate": rate, "sent": n, "bridge": got, "floor": got_floor})
                    if first_drop is None and got < 0.99 * n:
                        first_drop = rate
                    if floor_drop is None and got_floor < 0.99 * n:
                        floor_drop = rate
                details["drop_ladder"] = ladder
                rows.append(row("message rate at which the bridge starts dropping (< 99 % delivered)",
                                float(first_drop or steps[-1]), "msg/s", float(floor_drop or steps[-1]),
                                lower_is_better=False,
                                target="" if first_drop else f"none up to {steps[-1]}"))  # fmt: skip

                # ---- image beside Twist ----
                image = {
                    "header": {"stamp": {"secs": 0, "nsecs": 0}, "frame_id": "cam"},
                    "height": 480, "width": 640, "encoding": "rgb8", "step": 1920,
                    "data": base64.b64encode(bytes(640 * 480 * 3)).decode(),
                }  # fmt: skip
                bridges = [
                    {"direction": "ros2mqtt", "ros_topic": "/camera/image", "ros_type": "sensor_msgs/Image",
                     "queue_length": 2},
                    {"direction": "ros2mqtt", "ros_topic": "/cmd_vel", "ros_type": "geometry_msgs/Twist"},
                ]  # fmt: skip
                for label, budget in (("ample budget", 100_000_000), ("default 8 MB/s budget", 8_000_000)):
                    await _configure(fleet, rb.url, bridges, budget_bytes_per_s=budget)
                    await _until(lambda: rb.call(srv.subscribers, "/camera/image") == 1
                                 and rb.call(srv.subscribers, "/cmd_vel") == 1, 30, "image bridges")  # fmt: skip
                    sent_at: dict[int, float] = {}

                    async def flood(seconds: float) -> None:
                        t0 = time.monotonic()
                        tick = 0
                        while time.monotonic() - t0 < seconds:
                            srv.publish("/camera/image", "sensor_msgs/Image", image)
                            if tick % 3 == 0:
                                seq = tick // 3
                                sent_at[seq] = time.time()  # noqa: B023 - run within this iteration
                                srv.publish("/cmd_vel", "geometry_msgs/Twist", {"linear": {"x": float(seq)}})
                            tick += 1
                            delay = t0 + tick / 30 - time.monotonic()
                            if delay > 0:
                                await asyncio.sleep(delay)

                    arrivals.clear()
                    log(f"ros: 30 Hz image + 10 Hz Twist for {image_s} s ({label})")
                    await asyncio.wrap_future(rb.submit(flood, image_s))
                    await asyncio.sleep(1.0)
                    images = arrivals.get(f"nodes/{NODE}/components/ros/out/camera/image", [])
                    twists = arrivals.get(f"nodes/{NODE}/components/ros/out/cmd_vel", [])
                    twist_lat = [(t - sent_at[int(json.loads(p)["linear"]["x"])]) * 1e3 for t, p in twists]
                    image_hz = len(images) / image_s
                    twist_p99 = pct(twist_lat, 0.99) if twist_lat else float("nan")
                    details[f"image_twist_{budget}"] = {
                        "image_hz": image_hz, "twist_sent": len(sent_at), "twist_received": len(twists),
                        "twist_p50_ms": pct(twist_lat, 0.5) if twist_lat else None, "twist_p99_ms": twist_p99,
                    }  # fmt: skip
                    rows.append(row(f"30 Hz 640×480 image beside 10 Hz Twist ({label}): image rate delivered",
                                    image_hz, "Hz", None, lower_is_better=False,
                                    target="> 19 Hz (rosbridge, 720p, Jetson TX2)" if budget > 8e6 else ""))  # fmt: skip
                    rows.append(row(f"… Twist p99 latency ({label}, {len(twists)}/{len(sent_at)} delivered)",
                                    twist_p99, "ms", None))  # fmt: skip

                # ---- restoration after rosbridge returns ----
                restores = []
                for _ in range(2 if quick else 10):
                    rb.stop()
                    await _until(lambda: not rb.call(lambda: srv.running), 10, "stop")
                    await asyncio.sleep(0.3)
                    t0 = time.monotonic()
                    rb.start()
                    await _until(lambda: rb.call(srv.subscribers, "/camera/image") == 1
                                 and rb.call(srv.subscribers, "/cmd_vel") == 1, 30, "restoration")  # fmt: skip
                    restores.append(time.monotonic() - t0)
                details["restore_s"] = restores
                rows.append(row("rosbridge back → every subscription restored (max of runs)", max(restores), "s",
                                None, target="≤ 2 s"))  # fmt: skip

                # ---- footprint with the component connected ----
                idle = [{"direction": "ros2mqtt", "ros_topic": "/odom", "ros_type": "nav_msgs/Odometry"},
                        {"direction": "mqtt2ros", "ros_topic": "/cmd_vel", "ros_type": "geometry_msgs/Twist"}]  # fmt: skip
                await _configure(fleet, rb.url, idle)
                await _until(lambda: rb.call(srv.subscribers, "/odom") == 1, 30, "idle bridges")
                await asyncio.sleep(1.5)
                a0, _, _ = proc_stat(agent.proc.pid)
                f0, _, _ = proc_stat(floor.proc.pid)
                t0 = time.monotonic()
                log(f"ros: agent idle for {idle_s} s with the component connected")
                await asyncio.sleep(idle_s)
                window = time.monotonic() - t0
                a1, a_rss, _ = proc_stat(agent.proc.pid)
                f1, f_rss, _ = proc_stat(floor.proc.pid)
                cpu, floor_cpu = 100 * (a1 - a0) / window, 100 * (f1 - f0) / window
                details["footprint"] = {"rss": a_rss, "cpu_percent": cpu, "floor_rss": f_rss,
                                        "floor_cpu_percent": floor_cpu, "window": window}  # fmt: skip
                rows.append(row("agent RSS with the ros component connected (floor: bare roslibpy + paho)",
                                a_rss / 2**20, "MB", f_rss / 2**20, target="≤ 60 MB"))  # fmt: skip
                rows.append(row("agent idle CPU with the ros component connected", cpu, "%", floor_cpu or None,
                                target="≤ 1 %"))  # fmt: skip
        finally:
            console.close()
            floor.close()
            agent.proc.terminate()
            agent.close()
    return {"rows": rows, "details": details}


if __name__ == "__main__":  # python bench/section_ros.py: a quick look
    sys.path.insert(0, str(HERE))
    out = asyncio.run(run(True, print, lambda *a, **k: (a, k)))
    print(json.dumps(out["details"], indent=1, default=str)[:3000])
