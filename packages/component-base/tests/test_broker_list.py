"""Several broker URLs (a cluster's nodes), and the session's order of trying them."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_base.broker_url import BrokerListAction, parse_broker_urls
from devfleet_base.errors import ContractError
from devfleet_base.mqtt import ClientOptions, MqttClient


def test_lists_in_every_spelling() -> None:
    one = parse_broker_urls("mqtt://a:1, b:2,mqtt://a:1")
    assert [(x.host, x.port) for x in one] == [("a", 1), ("b", 2)]  # order kept, duplicates dropped
    two = parse_broker_urls(["mqtt://a:1", "mqtt://c:3,mqtt://d:4"])
    assert [(x.host, x.port) for x in two] == [("a", 1), ("c", 3), ("d", 4)]


@pytest.mark.parametrize("value", ["", ",", "mqtt://a:1,,b", [], "mqtts://a,mqtt://b"])
def test_bad_lists(value: object) -> None:
    with pytest.raises(ContractError):
        parse_broker_urls(value)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_hostile_lists_raise_contract_errors_only(text: str) -> None:
    try:
        got = parse_broker_urls(text)
    except ContractError:
        return
    assert got and all(0 < a.port < 65536 and a.host for a in got)


def test_repeated_flag_joins_and_replaces_the_default() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--broker", default="mqtt://env:1", action=BrokerListAction)
    assert p.parse_args([]).broker == "mqtt://env:1"
    assert p.parse_args(["--broker", "a", "--broker", "b"]).broker == "a,b"


async def test_session_tries_the_next_broker_when_one_is_down(mqtt_broker) -> None:  # type: ignore[no-untyped-def]
    from devfleet_base.testing.broker import free_port

    dead = free_port()
    session = MqttClient(
        ClientOptions(
            host="127.0.0.1",
            port=dead,
            fallbacks=[(mqtt_broker.host, mqtt_broker.port)],
            backoff_min=0.05,
        ),
        on_message=lambda msg: None,
    )
    assert session.brokers == [f"127.0.0.1:{dead}", f"{mqtt_broker.host}:{mqtt_broker.port}"]
    task = asyncio.create_task(session.run())
    try:
        await session.wait_connected(20)
        assert session.broker == f"{mqtt_broker.host}:{mqtt_broker.port}"
    finally:
        await session.close()
        await asyncio.wait_for(task, 10)
