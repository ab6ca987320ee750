"""Reference-counted subscriptions (``MqttClient.subscription``) on a real mosquitto:
two operations listening on one filter must not end each other's subscription."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devfleet_base.mqtt import ClientOptions, MqttClient, MqttMessage


async def _session(
    broker: Any, inbox: list[MqttMessage], protocol: str
) -> tuple[MqttClient, asyncio.Task[None]]:
    session = MqttClient(
        ClientOptions(
            host=broker.host, port=broker.port, protocol=protocol, subscriptions=[("refs/marker", 1)]
        ),
        on_message=inbox.append,
    )
    task = asyncio.create_task(session.run())
    await session.wait_connected(10)
    return session, task


async def _published_then_marker(
    session: MqttClient, inbox: list[MqttMessage], topic: str, n: int
) -> list[bytes]:
    """Publish to ``topic`` then to the marker on the same connection: the broker handles
    both in order, so once the marker is back, ``topic``'s copy has come too if it will."""
    await session.publish(topic, b"probe", qos=1, wait=True)
    marker = f"marker-{n}".encode()
    await session.publish("refs/marker", marker, qos=1, wait=True)
    async with asyncio.timeout(10):
        while marker not in [m.payload for m in inbox]:
            await asyncio.sleep(0.01)
    return [m.payload for m in inbox if m.topic == topic]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_the_first_holder_to_leave_does_not_unsubscribe_the_other(
    mqtt_broker: Any, protocol: str
) -> None:
    inbox: list[MqttMessage] = []
    session, task = await _session(mqtt_broker, inbox, protocol)
    topic = f"refs/{protocol}/receipts"
    try:
        async with session.subscription([(topic, 1)]):
            async with session.subscription([(topic, 1)]):
                assert session.holders(topic) == 2
            assert session.holders(topic) == 1
            assert await _published_then_marker(session, inbox, topic, 1) == [b"probe"]
        assert session.holders(topic) == 0
        inbox.clear()
        assert await _published_then_marker(session, inbox, topic, 2) == []  # the last holder left
    finally:
        await session.close()
        await task


async def test_a_fresh_subscription_brings_the_retained_messages_again(mqtt_broker: Any) -> None:
    inbox: list[MqttMessage] = []
    session, task = await _session(mqtt_broker, inbox, "5")
    topic = "refs/retained/desc"
    try:
        await session.publish(topic, b"kept", qos=1, retain=True, wait=True)
        async with session.subscription([(topic, 1)]):
            async with asyncio.timeout(10):
                while not any(m.topic == topic for m in inbox):
                    await asyncio.sleep(0.01)
            inbox.clear()
            async with session.subscription([(topic, 1)], fresh=True):
                async with asyncio.timeout(10):
                    while not any(m.topic == topic and m.retain for m in inbox):
                        await asyncio.sleep(0.01)
    finally:
        await session.publish(topic, b"", qos=1, retain=True, wait=True)
        await session.close()
        await task


async def test_unsubscribing_a_filter_nobody_holds_is_ignored(mqtt_broker: Any) -> None:
    inbox: list[MqttMessage] = []
    session, task = await _session(mqtt_broker, inbox, "5")
    try:
        await session.unsubscribe(["refs/never"])
        assert session.holders("refs/never") == 0
        assert session.holders("refs/marker") == 1  # the options' own subscription
    finally:
        await session.close()
        await task
