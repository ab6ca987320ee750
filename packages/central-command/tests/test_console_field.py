"""Field failures of the console library (issue 17) against a real mosquitto and agents."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from devfleet_command.aio import AsyncFleet
from devfleet_command.errors import CommandTimeout, ConnectError
from devfleet_command.model import FleetModel


def online(*names: str) -> Any:
    def check(m: FleetModel) -> bool:
        return all((n := m.get(name)) is not None and n.online and n.cfg is not None for name in names)

    return check


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Poll a condition that has no event to wait on (a library internal), time-boxed."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_send_when_the_broker_dies_mid_call_raises_a_typed_error(mosquitto: Any, agents: Any) -> None:
    agents.start("n1")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("n1"), timeout=20)
        os.kill(mosquitto.pid, signal.SIGSTOP)  # the broker takes the PUBLISH, never acks it
        call = asyncio.create_task(fleet.send("n1", "ping"))
        await until(lambda: bool(fleet.mqtt._acks))
        mosquitto.kill()
        with pytest.raises(ConnectError):
            await call
        assert not call.cancelled()


async def test_a_command_around_a_broker_restart_waits_for_the_node_to_be_back(
    mosquitto: Any, agents: Any
) -> None:
    agent = agents.start("rs-1")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("rs-1"), timeout=20)
        agent.pause()  # the node will be late back: its subscriptions are gone meanwhile
        mosquitto.restart()
        await until(lambda: fleet.mqtt.connects == 2 and fleet.mqtt.connected, timeout=15)
        call = asyncio.create_task(fleet.call("rs-1", "ping", timeout=15))
        await asyncio.sleep(0)  # the command is being held, not published into the void
        agent.resume()
        result = await call
        assert result["pong"] is True


async def test_after_a_broker_restart_a_node_not_back_is_said_so_and_a_broadcast_holds(
    mosquitto: Any, agents: Any
) -> None:
    agent = agents.start("rs-2")
    async with AsyncFleet.connect(mosquitto.url) as fleet:
        await fleet.wait_for(online("rs-2"), timeout=20)
        agent.pause()
        os.kill(mosquitto.pid, signal.SIGKILL)  # a crash: no wills, the console still says online
        mosquitto.restart()
        await until(lambda: fleet.mqtt.connects == 2 and fleet.mqtt.connected, timeout=15)
        with pytest.raises(CommandTimeout, match="not back"):
            await fleet.call("rs-2", "ping", timeout=1.0)
        bc_task = asyncio.create_task(fleet.broadcast("ping", timeout=30))
        agent.resume()
        bc = await (await bc_task).wait()
        assert bc.succeeded == ["rs-2"] and not bc.offline
