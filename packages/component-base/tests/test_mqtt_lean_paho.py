"""The MQTT client's paho leaves no cyclic garbage per message and skips its DEBUG lines
unless they are wanted (issue 20), while paho's warnings and per-topic callbacks stay."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from devfleet_base import mqtt as mqtt_mod
from devfleet_base.mqtt import ClientOptions, MqttClient, MqttMessage


def _client() -> Any:
    return MqttClient(ClientOptions(host="127.0.0.1", port=1), on_message=lambda m: None)._make_client("5")


def test_the_topic_filter_table_answers_at_once_when_empty_and_still_matches() -> None:
    paho_client = _client()
    filters = paho_client._on_message_filtered
    assert isinstance(filters, mqtt_mod._Filters)
    assert list(filters.iter_match("nodes/a/cmd/ping")) == []
    seen: list[str] = []
    paho_client.message_callback_add("nodes/+/cmd/#", lambda c, u, m: seen.append(m.topic))
    assert len(list(filters.iter_match("nodes/a/cmd/ping"))) == 1
    assert list(filters.iter_match("other/topic")) == []
    paho_client.message_callback_remove("nodes/+/cmd/#")
    assert list(filters.iter_match("nodes/a/cmd/ping")) == []


def test_debug_lines_are_skipped_unless_enabled_and_warnings_always_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    paho_client = _client()
    with caplog.at_level(logging.INFO, logger="devfleet.mqtt.paho"):
        paho_client._easy_log(mqtt_mod.paho.MQTT_LOG_DEBUG, "Sending %s", "PUBLISH")
        paho_client._easy_log(mqtt_mod.paho.MQTT_LOG_WARNING, "odd %s", "thing")
    assert [r.getMessage() for r in caplog.records] == ["odd thing"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="devfleet.mqtt.paho"):
        paho_client._easy_log(mqtt_mod.paho.MQTT_LOG_DEBUG, "Sending %s", "PUBLISH")
    assert [r.getMessage() for r in caplog.records] == ["Sending PUBLISH"]


async def test_messages_in_and_out_leave_no_cyclic_garbage(mqtt_broker: Any) -> None:
    inbox: asyncio.Queue[MqttMessage] = asyncio.Queue()
    client = MqttClient(
        ClientOptions(host=mqtt_broker.host, port=mqtt_broker.port), on_message=inbox.put_nowait
    )
    task = asyncio.ensure_future(client.run())
    try:
        await client.wait_connected(10)
        await client.subscribe([("lean/#", 1)])
        assert await client.publish("lean/warm", b"x", qos=1, wait=True)
        await asyncio.wait_for(inbox.get(), 10)
        gc.collect()
        collecting = gc.isenabled()
        gc.disable()
        try:
            for i in range(20):
                assert await client.publish(f"lean/{i}", b"payload", qos=1, wait=True)
                await asyncio.wait_for(inbox.get(), 10)
            found = gc.collect()
        finally:
            if collecting:
                gc.enable()
        assert found == 0  # paho's topic matcher made a cycle per inbound message
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)
