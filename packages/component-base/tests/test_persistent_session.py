"""Persistent MQTT sessions (``ClientOptions.persistent``) on a real mosquitto, MQTT 5 and 3.1.1:
the broker keeps the subscriptions and queues QoS 1 messages for a client that is away."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devfleet_base.mqtt import ClientOptions, MqttClient, MqttMessage


async def _connected(
    broker: Any, protocol: str, *, persistent: bool, inbox: list[MqttMessage]
) -> tuple[MqttClient, asyncio.Task[None]]:
    session = MqttClient(
        ClientOptions(
            host=broker.host,
            port=broker.port,
            client_id=f"ps-{protocol}-{persistent}",
            protocol=protocol,
            persistent=persistent,
            subscriptions=[(f"ps/{protocol}/{persistent}/#", 1)],
        ),
        on_message=inbox.append,
    )
    task = asyncio.create_task(session.run())
    await session.wait_connected(10)
    return session, task


async def _until(inbox: list[MqttMessage], payload: bytes) -> None:
    async with asyncio.timeout(10):
        while payload not in [m.payload for m in inbox]:
            await asyncio.sleep(0.02)


async def _publish(broker: Any, topic: str, payload: bytes) -> None:
    sender = MqttClient(ClientOptions(host=broker.host, port=broker.port), on_message=lambda m: None)
    task = asyncio.create_task(sender.run())
    await sender.wait_connected(10)
    assert await sender.publish(topic, payload, qos=1, wait=True)
    await sender.close()
    await task


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("persistent", [True, False])
async def test_a_kept_session_is_resumed_with_what_came_while_away(
    fresh_broker: Any, protocol: str, persistent: bool
) -> None:
    inbox: list[MqttMessage] = []
    first, task = await _connected(fresh_broker, protocol, persistent=persistent, inbox=inbox)
    assert first.session_present is False  # a new client id: nothing kept yet
    await first.close()
    await task

    await _publish(fresh_broker, f"ps/{protocol}/{persistent}/cmd", b"queued")

    again, task = await _connected(fresh_broker, protocol, persistent=persistent, inbox=inbox)
    try:
        assert again.session_present is persistent
        # A marker sent now arrives after anything the broker had queued for the session.
        await _publish(fresh_broker, f"ps/{protocol}/{persistent}/marker", b"marker")
        await _until(inbox, b"queued" if persistent else b"marker")
        await _until(inbox, b"marker")
        expected = [b"queued", b"marker"] if persistent else [b"marker"]
        assert [m.payload for m in inbox] == expected
    finally:
        await again.close()
        await task
