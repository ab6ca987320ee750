"""End to end: the ros component in a real agent, a real broker, the console and its CLI,
against the test kit's rosbridge v2 server (restarted 20 times, flooded with images)."""

from __future__ import annotations

import base64
import json
import os
import queue
import threading
import time
from typing import Any

import pytest
from devfleet_ros.testing import RosbridgeThread

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_command import Fleet
from devfleet_command.cli import main

_NODES = iter(range(1, 1000))
NODE = ""
TWIST = "geometry_msgs/Twist"
IMAGE = "sensor_msgs/Image"


def _ros(model: Any) -> dict[str, Any]:
    view = model.get(NODE)
    return ((view.state or {}).get("components") or {}).get("ros", {}) if view else {}


def _reported(model: Any) -> dict[str, Any]:
    return _ros(model).get("reported") or {}


def _bridge(model: Any, ros_topic: str) -> dict[str, Any]:
    for b in _reported(model).get("bridges", []):
        if b["ros_topic"] == ros_topic:
            return dict(b)
    return {}


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _resources() -> tuple[int, int, int]:
    """(threads, open fds, RSS in KiB) of this process, which hosts the agent."""
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return threading.active_count(), len(os.listdir("/proc/self/fd")), rss


@pytest.fixture
def robot(mqtt_broker, tmp_path):
    global NODE  # one node name per test: the session broker keeps each node's retained topics
    NODE = f"robot-{os.getpid()}-{next(_NODES)}"
    with (
        RosbridgeThread() as rb,
        AgentThread(settings_for(mqtt_broker, NODE, tmp_path / NODE)),
        Fleet.connect(mqtt_broker.url) as fleet,
    ):
        fleet.wait_for(lambda m: NODE in m and m.get(NODE).online, timeout=20)
        yield rb, fleet


def _configure(fleet: Any, rb: RosbridgeThread, bridges: list[dict[str, Any]], **extra: Any) -> None:
    settings = {"url": rb.url, "state_interval": 0.2, "reconnect_max_s": 0.5, "bridges": bridges, **extra}
    fleet.config_set(NODE, {"components.ros": {"enabled": True, "settings": settings}})


BRIDGES = [
    {"direction": "ros2mqtt", "ros_topic": "/odom", "ros_type": "geometry_msgs/Pose2D"},
    {"direction": "mqtt2ros", "ros_topic": "/cmd_vel", "ros_type": TWIST, "qos": 1},
]


def test_flows_cli_runtime_mapping_and_type_mismatch(robot, probe, mqtt_broker, capsys) -> None:
    rb, fleet = robot
    heard: queue.Queue[dict[str, Any]] = queue.Queue()
    rb.call(rb.server.on_publish, "/cmd_vel", heard.put)
    rb.call(rb.server.advertise_service, "/add", "x/AddTwoInts", lambda a: {"sum": a["a"] + a["b"]})
    # a stale command the broker kept: the bridge's subscription must not replay it to the robot
    probe.publish(f"nodes/{NODE}/components/ros/in/cmd_vel", {"linear": {"x": 9.0}}, retain=True)
    _configure(fleet, rb, BRIDGES)
    fleet.wait_for(lambda m: _reported(m).get("connected") is True, timeout=20)
    _wait(lambda: rb.call(rb.server.subscribers, "/odom") == 1, 10, "the /odom subscription")

    # ros2mqtt: a ROS publisher reaches an MQTT subscriber
    out = f"nodes/{NODE}/components/ros/out/odom"
    probe.subscribe(out)
    rb.call(rb.server.publish, "/odom", "geometry_msgs/Pose2D", {"x": 1.0, "y": 2.0, "theta": 3.0})
    assert probe.wait_for(out, timeout=10).json() == {"x": 1.0, "y": 2.0, "theta": 3.0}

    # mqtt2ros: an MQTT publisher reaches a ROS subscriber; the retained (stale) one did not
    probe.publish(f"nodes/{NODE}/components/ros/in/cmd_vel", {"linear": {"x": 0.25}, "angular": {"z": 0.5}})
    assert heard.get(timeout=10) == {"linear": {"x": 0.25}, "angular": {"z": 0.5}}

    # the console's CLI: call_service, with its errors as exit codes
    url = mqtt_broker.url
    code = main(
        [
            "--broker",
            url,
            "--json",
            "component",
            NODE,
            "ros",
            "call_service",
            "service=/add",
            'args={"a": 2, "b": 40}',
        ]
    )
    out_text, _ = capsys.readouterr()
    assert code == 0 and json.loads(out_text)["result"] == {"sum": 42}
    code = main(["--broker", url, "component", NODE, "ros", "call_service", "service=/nosuch"])
    _, err = capsys.readouterr()
    assert code == 1 and "does not exist" in err
    code = main(["--broker", url, "--json", "component", NODE, "ros", "topics"])
    out_text, _ = capsys.readouterr()
    assert code == 0 and json.loads(out_text)["result"]["topics"]["/odom"] == "geometry_msgs/Pose2D"

    # a type mismatch is counted and reported, and the bridge keeps working
    probe.publish(f"nodes/{NODE}/components/ros/in/cmd_vel", {"linear": {"x": "fast"}})
    fleet.wait_for(lambda m: _bridge(m, "/cmd_vel").get("errors") == 1, timeout=10)
    assert "linear.x" in _bridge(fleet.model, "/cmd_vel")["last_error"]

    # a mapping changed at runtime: no restart, no reconnect, the other bridge untouched
    connects = _reported(fleet.model)["connects"]
    _configure(
        fleet,
        rb,
        [*BRIDGES, {"direction": "ros2mqtt", "ros_topic": "/battery", "ros_type": "std_msgs/Float32"}],
    )
    fleet.wait_for(lambda m: _bridge(m, "/battery"), timeout=10)
    _wait(lambda: rb.call(rb.server.subscribers, "/battery") == 1, 10, "the /battery subscription")
    probe.subscribe(f"nodes/{NODE}/components/ros/out/battery")
    rb.call(rb.server.publish, "/battery", "std_msgs/Float32", {"data": 0.5})
    assert probe.wait_for(f"nodes/{NODE}/components/ros/out/battery", timeout=10).json() == {"data": 0.5}
    assert _reported(fleet.model)["connects"] == connects
    assert _bridge(fleet.model, "/cmd_vel")["errors"] == 1  # counters kept: the bridge was not rebuilt
    assert rb.call(rb.server.subscribers, "/odom") == 1
    probe.publish(f"nodes/{NODE}/components/ros/in/cmd_vel", b"", retain=True)  # clear the stale command


def test_twenty_rosbridge_restarts_restore_everything_without_leaks(robot, probe) -> None:
    rb, fleet = robot
    camera = {
        "direction": "ros2mqtt",
        "ros_topic": "/camera/image",
        "ros_type": IMAGE,
    }  # bulk: a 2nd connection
    _configure(fleet, rb, [*BRIDGES, camera])
    fleet.wait_for(lambda m: _reported(m).get("connected") is True, timeout=20)
    # an advertisement to restore too: the first mqtt2ros message advertises /cmd_vel
    probe.publish(f"nodes/{NODE}/components/ros/in/cmd_vel", {"linear": {"x": 0.1}})
    _wait(lambda: rb.call(rb.server.advertisers, "/cmd_vel") == 1, 10, "the /cmd_vel advertisement")
    _wait(lambda: rb.call(rb.server.subscribers, "/odom") == 1, 10, "the /odom subscription")
    out = f"nodes/{NODE}/components/ros/out/odom"
    probe.subscribe(out)
    baseline = None
    for cycle in range(20):
        rb.stop()
        fleet.wait_for(lambda m: _reported(m).get("connected") is False, timeout=10)
        assert _reported(fleet.model)["state"] == "degraded" and _reported(fleet.model)["reason"]
        assert fleet.model.get(NODE).online  # the agent is unaffected
        rb.start()
        _wait(
            lambda: (
                rb.call(rb.server.subscribers, "/odom") == 1
                and rb.call(rb.server.subscribers, "/camera/image") == 1
                and rb.call(rb.server.advertisers, "/cmd_vel") == 1
            ),
            10,
            f"restoration after restart {cycle + 1}",
        )
        mark = probe.mark()
        rb.call(rb.server.publish, "/odom", "geometry_msgs/Pose2D", {"x": float(cycle)})
        assert probe.wait_for(out, timeout=10, since=mark).json() == {"x": float(cycle)}
        if cycle == 1:
            baseline = _resources()
    assert baseline is not None
    threads, fds, rss = _resources()
    assert threads <= baseline[0], (baseline, (threads, fds, rss))
    assert fds <= baseline[1] + 2, (
        baseline,
        (threads, fds, rss),
    )  # a probe/broker socket may be mid-reconnect
    assert rss - baseline[2] < 20_000, (baseline, (threads, fds, rss))  # KiB; a leak per cycle would show
    fleet.wait_for(
        lambda m: _reported(m).get("connects", 0) >= 21 and _reported(m).get("bulk_connected"), timeout=10
    )


def test_image_flood_never_starves_the_control_topic(robot, probe) -> None:
    rb, fleet = robot
    bridges = [
        {"direction": "ros2mqtt", "ros_topic": "/camera/image", "ros_type": IMAGE, "queue_length": 2},
        {"direction": "ros2mqtt", "ros_topic": "/odom", "ros_type": "geometry_msgs/Pose2D"},
    ]
    _configure(fleet, rb, bridges, budget_bytes_per_s=3_000_000)
    fleet.wait_for(lambda m: _reported(m).get("connected") is True, timeout=20)
    _wait(lambda: rb.call(rb.server.subscribers, "/camera/image") == 1, 10, "the image subscription")
    _wait(lambda: rb.call(rb.server.subscribers, "/odom") == 1, 10, "the odom subscription")
    probe.subscribe(f"nodes/{NODE}/components/ros/out/#", qos=0)
    frame = {
        "header": {"stamp": {"secs": 0, "nsecs": 0}, "frame_id": "cam"},
        "height": 480,
        "width": 640,
        "encoding": "rgb8",
        "step": 1920,
        "data": base64.b64encode(bytes(640 * 480 * 3)).decode(),
    }
    start = time.monotonic()
    for tick in range(60):  # 2 s: 30 Hz images, 10 Hz odom
        rb.call(rb.server.publish, "/camera/image", IMAGE, frame)
        if tick % 3 == 0:
            rb.call(rb.server.publish, "/odom", "geometry_msgs/Pose2D", {"x": float(tick)})
        time.sleep(max(0.0, start + (tick + 1) / 30 - time.monotonic()))
    odom_topic = f"nodes/{NODE}/components/ros/out/odom"
    _wait(lambda: len(probe.messages(odom_topic)) == 20, 10, "every odom message")
    assert [m.json()["x"] for m in probe.messages(odom_topic)] == [float(t) for t in range(0, 60, 3)]
    images = probe.messages(f"nodes/{NODE}/components/ros/out/camera/image")
    assert 0 < len(images) < 60  # the budget (3 MB/s of ~1.2 MB frames) lets some through
    fleet.wait_for(lambda m: _bridge(m, "/camera/image").get("drops", 0) > 0, timeout=10)
    assert _bridge(fleet.model, "/odom")["drops"] == 0
