from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pluggy
import pytest

from devfleet_base import CommandError, Component, hookspecs
from devfleet_base.testing import FakeContext
from devfleet_projector import Projector, plugin
from devfleet_projector.simulator import ProjectorSimulator

FAST = {
    "timeout": 0.3,
    "power_timeout": 0.5,
    "busy_deadline": 5.0,
    "retry_interval": 0.05,
    "poll_interval": 0.05,
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Re-check ``check`` until true; fail after ``timeout`` seconds."""

    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


class Rig:
    def __init__(self, protocol: str, **sim: Any) -> None:
        self.sim = ProjectorSimulator(protocol, **sim).start()
        self.ctx = FakeContext(name="projector")
        self.projector = Projector(self.ctx, {"protocol": protocol, "port": self.sim.path, **FAST})

    async def cmd(self, verb: str, args: dict[str, Any] | None = None) -> Any:
        return await self.projector.handle_command(verb, args or {})

    async def close(self) -> None:
        await self.projector.stop()
        self.sim.stop()


@pytest.fixture(params=["epson", "benq"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    r = Rig(request.param, warmup=0.4, cooldown=0.4)
    await r.projector.start()
    yield r
    await r.close()


async def test_start_reports_status(rig: Rig) -> None:
    state = rig.ctx.state
    assert state is not None
    assert state["state"] == "ok" and state["power"] == "off"
    assert state["lamp_hours"] == 1200
    assert (await rig.projector.health()).ok


async def test_power_on_then_input_during_warm_up_waits_and_succeeds(rig: Rig) -> None:
    result = await rig.cmd("power", {"state": "on"})
    assert result["power"] in ("warming", "on")  # BenQ reports ON while warming
    assert rig.sim.power == "warming"
    # The projector refuses input changes while warming; the component retries.
    assert await rig.cmd("input", {"source": "computer"}) == {"input": "computer"}
    assert rig.sim.power == "on"
    assert rig.sim.source == ("10" if rig.sim.protocol == "epson" else "rgb")
    assert rig.ctx.state is not None and rig.ctx.state["input"] == "computer"


async def test_power_on_with_wait_returns_when_lit(rig: Rig) -> None:
    assert await rig.cmd("power", {"state": "on", "wait": True}) == {"power": "on"}
    assert rig.sim.power == "on"


async def test_mute_and_status(rig: Rig) -> None:
    await rig.cmd("power", {"state": "on", "wait": True})
    assert await rig.cmd("mute", {"state": "on"}) == {"mute": True}
    assert rig.sim.mute
    await rig.cmd("input", {"source": "hdmi"})
    status = await rig.cmd("status")
    assert status["power"] == "on"
    assert status["input"] == "hdmi"
    assert status["mute"] is True
    assert status["lamp_hours"] == 1200
    expected_errors = [] if rig.sim.protocol == "epson" else None
    assert status["errors"] == expected_errors
    assert rig.ctx.state is not None and rig.ctx.state["mute"] is True


async def test_input_while_off_is_refused_clearly(rig: Rig) -> None:
    with pytest.raises(CommandError) as info:
        await rig.cmd("input", {"source": "hdmi"})
    assert info.value.code == "unavailable"
    assert "off" in info.value.message


async def test_power_on_during_cool_down_waits_past_it(rig: Rig) -> None:
    await rig.cmd("power", {"state": "on", "wait": True})
    await rig.cmd("power", {"state": "off"})
    assert rig.sim.power == "cooling"
    await rig.cmd("power", {"state": "on"})  # refused until cooled, then accepted
    assert rig.sim.power in ("warming", "on")


async def test_busy_deadline_gives_a_busy_error() -> None:
    r = Rig("epson", warmup=30)
    r.projector.config["busy_deadline"] = 0.2
    await r.projector.start()
    try:
        await r.cmd("power", {"state": "on"})
        with pytest.raises(CommandError) as info:
            await r.cmd("mute", {"state": "on"})
        assert info.value.code == "busy"
        assert "warming" in info.value.message
    finally:
        await r.close()


async def test_silent_projector_times_out_degrades_and_recovers(rig: Rig) -> None:
    rig.sim.unplug()
    with pytest.raises(CommandError) as info:
        await rig.cmd("status")
    assert info.value.code == "timeout"
    assert "no answer" in info.value.message
    state = rig.ctx.state
    assert state is not None and state["state"] == "degraded" and state["reachable"] is False
    health = await rig.projector.health()
    assert not health.ok and "not answering" in health.detail
    # The status poll keeps failing quietly while unplugged (no crash) ...
    await rig.projector.process()
    assert rig.ctx.state is not None and rig.ctx.state["state"] == "degraded"
    # ... and recovers once the projector answers again.
    rig.sim.replug()

    async def recovered() -> bool:
        await rig.projector.process()
        return rig.ctx.state is not None and rig.ctx.state["state"] == "ok"

    await eventually(recovered)
    assert (await rig.projector.health()).ok
    assert rig.ctx.state is not None and rig.ctx.state["last_error"] is None


async def test_late_answers_time_out_and_are_not_mistaken_for_the_next() -> None:
    r = Rig("epson", response_delay=0.5)
    await r.projector.start()  # the start-up refresh times out: not fatal
    try:
        assert r.ctx.state is not None and r.ctx.state["state"] == "degraded"
        r.sim.response_delay = 0.0

        async def ok() -> bool:
            try:
                status = await r.cmd("status")
            except CommandError:
                return False
            return bool(status["power"] == "off")

        await eventually(ok)
        assert r.ctx.state is not None and r.ctx.state["state"] == "ok"
    finally:
        await r.close()


async def test_missing_port_is_unavailable_not_fatal() -> None:
    ctx = FakeContext(name="projector")
    projector = Projector(ctx, {"port": "/nonexistent/ttyUSB9", **FAST})
    await projector.start()
    try:
        assert ctx.state is not None and ctx.state["state"] == "degraded"
        with pytest.raises(CommandError) as info:
            await projector.handle_command("power", {"state": "on"})
        assert info.value.code == "unavailable"
    finally:
        await projector.stop()


@pytest.mark.parametrize(
    ("verb", "args"),
    [
        ("power", {"state": "maybe"}),
        ("power", {}),
        ("power", {"state": "on", "extra": 1}),
        ("input", {"source": "floppy"}),
        ("input", {"source": 3}),
        ("mute", {"state": True}),
        ("status", {"verbose": True}),
        ("reboot", {}),
    ],
)
async def test_malformed_args_are_refused(rig: Rig, verb: str, args: dict[str, Any]) -> None:
    sent = len(rig.sim.received)
    with pytest.raises(CommandError) as info:
        await rig.cmd(verb, args)
    assert info.value.code in ("invalid", "unknown_command")
    assert len(rig.sim.received) == sent  # nothing reached the projector


async def test_input_unknown_to_the_protocol_is_invalid() -> None:
    r = Rig("epson")
    await r.projector.start()
    try:
        with pytest.raises(CommandError) as info:
            await r.cmd("input", {"source": "displayport"})  # a BenQ-only name
        assert info.value.code == "invalid"
    finally:
        await r.close()


async def test_bad_config_is_refused() -> None:
    from devfleet_base import ContractError

    with pytest.raises(ContractError):
        Projector(FakeContext(), {"protocol": "sony", "port": "loop://"})
    with pytest.raises(ContractError):
        Projector(FakeContext(), {})


def test_plugin_registers_the_component() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    found: list[type[Component]] = []
    pm.hook.devfleet_register_components(register=found.append)
    assert found == [Projector]
    assert Projector.describe()["commands"] == ["input", "mute", "power", "status"]
