"""The ROS bridge (component-ros) against a bare roslibpy → paho re-publisher, same run.

Three processes besides the broker, as on a real robot: the robot
(``ros_robot.py``: the test kit's rosbridge server and the ROS publishers), the
agent with the ``ros`` component, and the floor (``floor_ros.py``: roslibpy's
asyncio transport, one callback that publishes with raw paho). The console (this
process) receives both paths.

- Added latency, ROS publish → MQTT message at a console, p50/p99: the
  component and the floor subscribe the same topic, so each message is timed on
  both paths at once.
- The rate at which it starts dropping: steps of rising message rates; the
  first step where fewer than 99 % of the messages arrive.
- A 30 Hz 640×480 rgb8 image (noise, ~1.2 MB of JSON each) beside a 10 Hz
  Twist: the image rate delivered and the Twist's latency to the console, with
  a budget that is not the limit (the pipeline's figure) and with the default
  8 MB/s budget; the component's own view (receive → MQTT publish) is in the
  details.
- Restoration after the rosbridge server returns (start → every subscription back).
- The agent's RSS and idle CPU with the component connected (two idle bridges).
"""

from __future__ import annotations

import asyncio
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


class Robot:
    """``ros_robot.py`` in a subprocess: one command line in, one JSON line out."""

    async def start(self) -> int:
        self.proc = await asyncio.create_subprocess_exec(
            PY, str(HERE / "ros_robot.py"), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        word, port = line.decode().split()
        assert word == "ready", line
        return int(port)

    async def ask(self, line: str, timeout: float = 60.0) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), timeout))

    async def subs(self, topic: str) -> int:
        return int((await self.ask(f"subs {topic}"))["subs"])

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def _until(check: Any, timeout: float, what: str) -> float:
    """Wait for an async ``check()``; returns the seconds it took."""
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"ros bench: timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def _configure(fleet: Any, url: str, bridges: list[dict[str, Any]], **extra: Any) -> None:
    settings = {"url": url, "bridges": bridges, "state_interval": 1.0, **extra}
    await fleet.config_set(NODE, {"components.ros": {"enabled": True, "settings": settings}})


def _component_view(fleet: Any) -> dict[str, Any]:
    view = fleet.model.get(NODE)
    reported = (((view.state or {}) if view else {}).get("components") or {}).get("ros", {}).get(
        "reported"
    ) or {}
    return {
        b["ros_topic"]: {k: b[k] for k in ("latency_ms", "drops", "messages")}
        for b in reported.get("bridges", [])
    }


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    from devfleet_base.testing.broker import MosquittoBroker
    from devfleet_command.aio import AsyncFleet

    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    latency_n = 50 if quick else 2000
    steps = [500] if quick else [100, 250, 500, 1000, 2000, 4000, 8000]
    step_s = 0.3 if quick else 3.0
    image_s = 0.5 if quick else 10.0
    idle_s = 0.5 if quick else 30.0
    settle = 0.3 if quick else 2.0  # seconds for queues to drain after a burst
    budgets = [("ample budget", 100_000_000)] + ([] if quick else [("default 8 MB/s budget", 8_000_000)])
    robot = Robot()
    port = await robot.start()
    url = f"ws://127.0.0.1:{port}"
    with (
        tempfile.TemporaryDirectory(prefix="bench-ros-") as tmp,
        MosquittoBroker(extra_config=["max_queued_messages 0", "max_inflight_messages 0"]) as broker,
    ):
        agent = Child(
            [PY, "-m", "devfleet_agent", "--broker", broker.host, "--port", str(broker.port), "--name", NODE,
             "--data-dir", tmp, "--loglevel", "WARNING"],
            ready=False,
        )  # fmt: skip
        floor = Child([PY, str(HERE / "floor_ros.py"), broker.host, str(broker.port), url, "/bench",
                       "std_msgs/Float64", "floor/bench"])  # fmt: skip
        arrivals: dict[str, list[tuple[float, bytes]]] = {}

        def on_message(topic: str, payload: bytes, retain: bool) -> None:
            arrivals.setdefault(topic, []).append((time.time(), payload))

        # Two console connections: a viewer of the camera, and the operator's view of everything
        # else, so a Twist never queues behind images in one TCP stream from the broker.
        console = RawClient("ros-bench-console", on_message)
        viewer = RawClient("ros-bench-viewer", on_message)
        out = f"nodes/{NODE}/components/ros/out"
        bridge_topic = f"{out}/bench"
        for client, filters in (
            (console, [("floor/bench", 0), (f"{out}/+", 0)]),
            (viewer, [(f"{out}/camera/+", 0)]),
        ):
            await client.connect(broker.host, broker.port)
            await client.subscribe(filters)
        try:
            async with AsyncFleet.connect(broker.url) as fleet:
                await fleet.wait_for(lambda m: NODE in m and m.get(NODE).online, timeout=60)
                bench_bridge = {"direction": "ros2mqtt", "ros_topic": "/bench", "ros_type": "std_msgs/Float64",
                                "queue_length": 100}  # fmt: skip
                await _configure(fleet, url, [bench_bridge], budget_bytes_per_s=100_000_000)
                await _until(lambda: _eq(robot.subs("/bench"), 2), 60, "both /bench subscribers")

                # ---- latency, both paths at once ----
                log(f"ros: latency over {latency_n} messages at 100 Hz")
                arrivals.clear()
                await robot.ask(f"paced /bench {latency_n} 100", timeout=latency_n / 100 + 60)

                async def both_in() -> bool:
                    return (len(arrivals.get(bridge_topic, [])) >= latency_n
                            and len(arrivals.get("floor/bench", [])) >= latency_n)  # fmt: skip

                await _until(both_in, 30, "latency messages")
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
                first_drop = floor_drop = None
                for rate in steps:
                    n = int(rate * step_s)
                    arrivals.clear()
                    log(f"ros: {rate} msg/s for {step_s} s")
                    await robot.ask(f"paced /bench {n} {rate}", timeout=step_s * 10 + 60)
                    await asyncio.sleep(settle)  # let the queues drain
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
                bridges = [
                    {"direction": "ros2mqtt", "ros_topic": "/camera/image", "ros_type": "sensor_msgs/Image",
                     "queue_length": 2},
                    {"direction": "ros2mqtt", "ros_topic": "/cmd_vel", "ros_type": "geometry_msgs/Twist"},
                ]  # fmt: skip
                for label, budget in budgets:
                    await _configure(fleet, url, bridges, budget_bytes_per_s=budget)
                    await _until(lambda: _eq(robot.subs("/camera/image"), 1), 30, "the image bridge")
                    await _until(lambda: _eq(robot.subs("/cmd_vel"), 1), 30, "the Twist bridge")
                    arrivals.clear()
                    log(f"ros: 30 Hz image + 10 Hz Twist for {image_s} s ({label})")
                    sent = await robot.ask(f"flood {image_s} {budget}", timeout=image_s * 5 + 60)
                    await asyncio.sleep(settle)  # what is still on the way arrives, or was dropped
                    sent_at = {int(k): v for k, v in sent["twists"].items()}
                    images = arrivals.get(f"{out}/camera/image", [])
                    twists = [
                        (t, int(json.loads(p)["linear"]["x"])) for t, p in arrivals.get(f"{out}/cmd_vel", [])
                    ]
                    twist_lat = [(t - sent_at[seq]) * 1e3 for t, seq in twists if seq in sent_at]
                    image_hz = len(images) / image_s
                    if not twist_lat:
                        raise RuntimeError(
                            f"ros bench: no Twist of {len(sent_at)} reached the console ({label})"
                        )
                    twist_p99 = pct(twist_lat, 0.99)
                    details[f"image_twist_{budget}"] = {
                        "image_hz": image_hz, "images_sent": sent["images"], "twist_sent": len(sent_at),
                        "twist_received": len(twist_lat), "twist_p50_ms": pct(twist_lat, 0.5),
                        "twist_p99_ms": twist_p99, "component_state": _component_view(fleet),
                    }  # fmt: skip
                    rows.append(row(f"30 Hz 640×480 image beside 10 Hz Twist ({label}): image rate delivered",
                                    image_hz, "Hz", None, lower_is_better=False,
                                    target="> 19 Hz (rosbridge, 720p, Jetson TX2)" if budget > 8e6 else ""))  # fmt: skip
                    rows.append(row(f"… Twist p99, ROS publish → console ({label}, {len(twist_lat)}/{len(sent_at)} "
                                    "delivered)", twist_p99, "ms", None))  # fmt: skip

                # ---- restoration after rosbridge returns ----
                restores = []
                for _ in range(1 if quick else 10):
                    await robot.ask("stop")
                    await fleet.wait_for(lambda m: not _connected(m), timeout=30)
                    await asyncio.sleep(0.3)
                    t0 = time.monotonic()
                    await robot.ask("start")

                    async def restored() -> bool:
                        return await robot.subs("/camera/image") == 1 and await robot.subs("/cmd_vel") == 1

                    await _until(restored, 30, "restoration")
                    restores.append(time.monotonic() - t0)
                details["restore_s"] = restores
                rows.append(row("rosbridge back → every subscription restored (max of runs)", max(restores), "s",
                                None, target="≤ 2 s"))  # fmt: skip

                # ---- footprint with the component connected ----
                idle = [{"direction": "ros2mqtt", "ros_topic": "/odom", "ros_type": "nav_msgs/Odometry"},
                        {"direction": "mqtt2ros", "ros_topic": "/cmd_vel", "ros_type": "geometry_msgs/Twist"}]  # fmt: skip
                await _configure(fleet, url, idle)
                await _until(lambda: _eq(robot.subs("/odom"), 1), 30, "idle bridges")
                await asyncio.sleep(settle)
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
                                a_rss / 2**20, "MB", f_rss / 2**20, target="≤ 1.5×"))  # fmt: skip
                rows.append(row("agent idle CPU with the ros component connected", cpu, "%", floor_cpu or None,
                                target="≤ 1 %"))  # fmt: skip
        finally:
            console.close()
            viewer.close()
            floor.close()
            agent.proc.terminate()
            agent.close()
            await robot.close()
    return {"rows": rows, "details": details}


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value == expected)


def _connected(model: Any) -> bool:
    view = model.get(NODE)
    reported = (((view.state or {}) if view else {}).get("components") or {}).get("ros", {}).get(
        "reported"
    ) or {}
    return bool(reported.get("connected"))


if __name__ == "__main__":  # python bench/section_ros.py: a quick look
    sys.path.insert(0, str(HERE))
    result = asyncio.run(run("--full" not in sys.argv, print, lambda *a, **k: (a, k)))
    print(json.dumps(result["details"], indent=1, default=str)[:6000])
