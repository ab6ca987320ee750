"""TLS failures name the certificate problem; those no retry can fix stop the session (real mosquitto)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from devfleet_base.mqtt import ClientOptions, MqttClient, TlsCertificateError, TlsOptions
from devfleet_base.testing import TlsFiles


def _session(broker: Any, tls: TlsOptions, host: str = "127.0.0.1") -> MqttClient:
    options = ClientOptions(host=host, port=broker.port, tls=tls, backoff_min=0.05, backoff_max=0.1)
    return MqttClient(options, on_message=lambda msg: None)


async def test_a_wrong_ca_is_fatal_and_named(mqtt_broker_tls: Any, tmp_path: Path) -> None:
    other = TlsFiles(tmp_path / "other")
    session = _session(mqtt_broker_tls, TlsOptions(ca=str(other.ca_path)))
    with pytest.raises(TlsCertificateError) as caught:
        await asyncio.wait_for(session.run(), 10)
    assert "wrong CA?" in caught.value.message and str(other.ca_path) in caught.value.message
    assert "127.0.0.1" in caught.value.message


async def test_an_unreadable_ca_file_is_fatal_and_named(mqtt_broker_tls: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    session = _session(mqtt_broker_tls, TlsOptions(ca=str(missing)))
    with pytest.raises(TlsCertificateError, match="cannot load") as caught:
        await asyncio.wait_for(session.run(), 10)
    assert str(missing) in caught.value.message


async def test_tls_to_a_plain_port_is_retried_with_a_clear_reason(mqtt_broker: Any) -> None:
    session = _session(mqtt_broker, TlsOptions())
    task = asyncio.ensure_future(session.run())
    try:
        error = await asyncio.wait_for(session.wait_attempt_failed(), 10)
        assert "TLS" in str(error) and "8883" in str(error)
        assert not task.done()  # still retrying: the broker may be reconfigured
    finally:
        await session.close()
        await asyncio.wait_for(task, 5)


async def test_the_right_ca_connects(mqtt_broker_tls: Any) -> None:
    session = _session(mqtt_broker_tls, TlsOptions(ca=str(mqtt_broker_tls.ca_path)))
    task = asyncio.ensure_future(session.run())
    try:
        await session.wait_connected(10)
    finally:
        await session.close()
        await asyncio.wait_for(task, 5)
