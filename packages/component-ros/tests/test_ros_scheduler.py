"""The byte-budget scheduler alone: a big-message bridge never starves a small one."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from devfleet_ros.bridges import Bridge, Item, Scheduler


def _settings(topic: str, **extra: Any) -> dict[str, Any]:
    base = {"direction": "ros2mqtt", "ros_topic": topic, "ros_type": "x/Y", "mqtt_topic": "out" + topic,
            "qos": 0, "retain": False, "throttle_rate_ms": 0, "queue_length": 2, "max_bytes": 10_000_000}  # fmt: skip
    return {**base, **extra}


async def test_small_messages_pass_a_saturating_big_stream() -> None:
    sent: list[tuple[str, float]] = []

    def sender(name: str) -> Any:
        async def send(item: Item) -> None:
            sent.append((name, time.monotonic()))

        return send

    sched = Scheduler(budget_bytes_per_s=2_000_000, log=logging.getLogger("test"))
    image = Bridge(_settings("/image"), sender("image"))
    control = Bridge(_settings("/cmd_vel", queue_length=10), sender("control"))
    sched.bridges = [image, control]
    task = asyncio.create_task(sched.run())
    try:
        t0 = time.monotonic()
        control_times = []
        for tick in range(30):  # 1 s: 30 frames of 1 MB against a 2 MB/s budget, 10 small messages
            image.offer(Item({"frame": tick}, 1_000_000, time.time()))
            if tick % 3 == 0:
                control_times.append(time.monotonic())
                control.offer(Item({"v": tick}, 100, time.time()))
            sched.wake()
            await asyncio.sleep(max(0.0, t0 + (tick + 1) / 30 - time.monotonic()))
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    controls = [t for name, t in sent if name == "control"]
    images = [t for name, t in sent if name == "image"]
    assert len(controls) == 10 and control.stats.drops == 0
    assert all(sent_at - queued < 0.1 for sent_at, queued in zip(controls, control_times, strict=True))
    assert 1 <= len(images) <= 4  # the budget's share of 1 MB frames (plus the full bucket at start)
    assert image.stats.drops == 30 - len(images) - len(image.queue)


def test_oversize_is_counted_not_queued() -> None:
    async def send(item: Item) -> None:
        return None

    bridge = Bridge(_settings("/a", max_bytes=100), send)
    assert not bridge.offer(Item({}, 101, 0.0))
    assert bridge.stats.oversize == 1 and not bridge.queue
