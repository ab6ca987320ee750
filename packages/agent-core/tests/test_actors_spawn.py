"""Wactorz remote node, node side: spawn, replace, stop, stop_all, list, refusals (real broker)."""

from __future__ import annotations

import pytest
from devfleet_base import contract

# The seed's DHT22 example, as a Wactorz main machine or mosquitto_pub sends it.
DHT22 = {
    "name": "temp-sensor-agent",
    "node": "rpi-livingroom",
    "type": "dynamic",
    "description": "Reads temperature from DHT22 sensor",
    "poll_interval": 0.2,
    "max_restarts": 5,
    "restart_delay": 3.0,
    "code": (
        "async def setup(agent):\n"
        "    await agent.log('DHT22 sensor agent ready')\n"
        "\n"
        "async def process(agent):\n"
        "    import random  # replace with real adafruit_dht read\n"
        "    temp = round(20 + random.uniform(-2, 2), 1)\n"
        "    await agent.publish('sensors/temperature', {'value': temp, 'unit': 'C', 'node': agent.node})\n"
        "    await agent.log(f'Temperature: {temp}C')\n"
    ),
}


def _online(msg):
    return msg.json()["status"] == "online"


@pytest.fixture
def node(agent_factory, probe, request):
    """A node that accepts code, named after the test."""
    name = f"a{abs(hash(request.node.name)) % 10**8}"
    agent = agent_factory(name, allow_code=True)
    probe.wait_for(f"nodes/{name}/status", _online)
    agent.name = name
    return agent


def beat(probe, name, node, *, since=0, timeout=10, state="running"):
    topic = contract.agent_topic(contract.actor_id(name), "heartbeat")
    return probe.wait_for(
        topic, lambda m: m.json()["node"] == node and m.json()["state"] == state, timeout=timeout, since=since
    ).json()


def receipt(probe, node, cmd, *, since=0, status=None, timeout=10):
    return probe.wait_for(
        f"nodes/{node}/receipts",
        lambda m: m.json()["cmd"] == cmd and (status is None or m.json()["status"] == status),
        timeout=timeout,
        since=since,
    ).json()


def test_seed_dht22_spawn_runs_and_publishes_readings(node, probe):
    probe.subscribe("sensors/temperature")
    probe.subscribe(f"nodes/{node.name}/receipts")
    aid = contract.actor_id("temp-sensor-agent")
    probe.subscribe(f"agents/{aid}/#")
    probe.publish(f"nodes/{node.name}/spawn", {**DHT22, "node": node.name}, retain=True)
    reading = probe.wait_for("sensors/temperature", lambda m: m.json()["node"] == node.name).json()
    assert 18 <= reading["value"] <= 22 and reading["unit"] == "C"
    hb = beat(probe, "temp-sensor-agent", node.name)
    assert hb["actor_id"] == aid and hb["name"] == "temp-sensor-agent"
    assert {"timestamp", "restarts"} <= set(hb)
    probe.wait_for(f"agents/{aid}/logs", lambda m: m.json()["message"] == "DHT22 sensor agent ready")
    ok = receipt(probe, node.name, "spawn", status="ok")
    assert ok["result"]["actor_id"] == aid
