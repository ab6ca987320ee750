from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from devfleet_base import CommandError, Component, hookspecs
from devfleet_base.testing import FakeContext
from devfleet_ledstrip import (
    LedStrip,
    SimulatedStrip,
    Ws281xStrip,
    is_raspberry_pi,
    plugin,
    select_backend,
)


def make(config: dict[str, Any] | None = None) -> tuple[LedStrip, FakeContext]:
    ctx = FakeContext(name="ledstrip")
    cfg = {"backend": "simulated", "led_count": 30, "fps": 30.0}
    cfg.update(config or {})
    return LedStrip(ctx, cfg), ctx


def sim(strip: LedStrip) -> SimulatedStrip:
    assert isinstance(strip.strip, SimulatedStrip)
    return strip.strip


async def test_renders_one_frame_per_process_call() -> None:
    strip, ctx = make()
    assert strip.poll_interval == pytest.approx(1 / 30)
    await strip.start()
    for _ in range(5):
        await strip.process()
    assert sim(strip).shown == 5
    assert ctx.state is not None and ctx.state["effect"] == "off"
    await strip.stop()


async def test_set_effect_reports_state_and_switches_on_next_frame() -> None:
    strip, ctx = make()
    await strip.start()
    await strip.process()
    result = await strip.handle_command("set_effect", {"effect": "solid", "color": "#ff0000"})
    assert result["effect"] == "solid"
    assert ctx.state is not None
    assert ctx.state["effect"] == "solid" and ctx.state["params"]["color"] == "#ff0000"
    await strip.process()
    assert sim(strip).last == [0xFF0000] * 30
    # params nested under "params" work too, and a new effect restarts at frame 0
    await strip.handle_command("set_effect", {"effect": "rainbow", "params": {"speed": 2}})
    assert strip.frame_no == 0
    await strip.process()
    assert ctx.state["params"]["speed"] == 2.0
    assert ctx.store["effect"]["effect"] == "rainbow"
    await strip.stop()


async def test_brightness_and_off_commands() -> None:
    strip, ctx = make()
    await strip.start()
    await strip.handle_command("set_effect", {"effect": "solid", "color": [200, 100, 0]})
    await strip.handle_command("brightness", {"value": 128})
    assert ctx.state is not None and ctx.state["brightness"] == 128
    await strip.process()
    assert sim(strip).visible()[0] == (100 << 16) | (50 << 8)
    await strip.handle_command("off", {})
    await strip.process()
    assert ctx.state["effect"] == "off"
    assert sim(strip).last == [0] * 30
    await strip.stop()


async def test_set_effect_may_set_brightness() -> None:
    strip, ctx = make()
    await strip.start()
    await strip.handle_command("set_effect", {"effect": "solid", "brightness": 10})
    assert ctx.state is not None and ctx.state["brightness"] == 10
    await strip.stop()


@pytest.mark.parametrize(
    "args",
    [
        {"effect": "disco"},
        {"effect": "solid", "color": "chartreuse"},
        {"effect": "solid", "speed": -1},
        {"effect": "solid", "wobble": 3},
        {"color": "#ffffff"},
        {"effect": "solid", "brightness": 300},
    ],
)
async def test_malformed_effect_args_are_refused(args: dict[str, Any]) -> None:
    strip, ctx = make()
    await strip.start()
    with pytest.raises(CommandError) as info:
        await strip.handle_command("set_effect", args)
    assert info.value.code == "invalid"
    assert ctx.state is not None and ctx.state["effect"] == "off"
    with pytest.raises(CommandError):
        await strip.handle_command("brightness", {"value": -1})
    await strip.stop()


async def test_duration_switches_off_after_it_elapses() -> None:
    strip, ctx = make({"fps": 10.0})
    await strip.start()
    await strip.handle_command("set_effect", {"effect": "solid", "duration": 0.5})
    for _ in range(6):
        await strip.process()
    assert ctx.state is not None and ctx.state["effect"] == "off"
    assert sim(strip).last == [0] * 30
    await strip.stop()


async def test_preview_is_published_at_its_own_pace() -> None:
    strip, ctx = make({"fps": 20.0, "preview": {"enabled": True, "interval": 0.5, "size": 5}})
    await strip.start()
    await strip.handle_command("set_effect", {"effect": "solid", "color": "#123456"})
    for _ in range(21):
        await strip.process()
    previews = ctx.messages("preview")
    assert len(previews) == 3  # frames 0, 10, 20
    assert previews[0]["pixels"] == ["#123456"] * 5
    assert previews[0]["effect"] == "solid"
    await strip.stop()


async def test_no_preview_unless_enabled() -> None:
    strip, ctx = make()
    await strip.start()
    for _ in range(40):
        await strip.process()
    assert ctx.messages("preview") == []
    await strip.stop()


async def test_saved_effect_is_restored_on_start() -> None:
    strip, ctx = make()
    await strip.start()
    await strip.handle_command("set_effect", {"effect": "theatre_chase", "spacing": 4})
    await strip.stop()
    again = LedStrip(ctx, {"backend": "simulated", "led_count": 30})
    await again.start()
    assert again.effect.name == "theatre_chase"
    assert again.effect.params["spacing"] == 4
    await again.stop()


async def test_reconfigure_in_place_and_restart_for_hardware_changes() -> None:
    strip, _ = make()
    await strip.start()
    await strip.reconfigure({"backend": "simulated", "led_count": 30, "fps": 60.0})
    assert strip.poll_interval == pytest.approx(1 / 60)
    with pytest.raises(NotImplementedError):
        await strip.reconfigure({"backend": "simulated", "led_count": 31})
    await strip.stop()


async def test_health_reports_backend_and_effect() -> None:
    strip, _ = make()
    await strip.start()
    health = await strip.health()
    assert health.ok and "simulated" in health.detail
    await strip.stop()


def test_auto_backend_is_simulated_off_a_pi(tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert not is_raspberry_pi(model)  # missing file
    model.write_bytes(b"Generic x86 board\x00")
    assert isinstance(select_backend("auto", 10, model_path=model), SimulatedStrip)
    model.write_bytes(b"Raspberry Pi Zero W Rev 1.1\x00")
    # Constructing the wrapper is safe: rpi_ws281x is only imported in start().
    assert isinstance(select_backend("auto", 10, model_path=model), Ws281xStrip)


def test_simulated_strip_keeps_history_and_previews() -> None:
    strip = SimulatedStrip(4, history=2)
    strip.start()
    for c in (1, 2, 3):
        strip.show([c] * 4)
    assert list(strip.frames) == [[2] * 4, [3] * 4]
    assert strip.shown == 3
    assert strip.preview(2) == ["#000003", "#000003"]
    with pytest.raises(ValueError):
        strip.show([0])


def test_plugin_registers_the_component() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    found: list[type[Component]] = []
    pm.hook.devfleet_register_components(register=found.append)
    assert found == [LedStrip]
    assert "set_effect" in LedStrip.describe()["commands"]


async def test_provides_the_ledstrip_interface_while_running() -> None:
    """A neighbour on the node (the foraging state light) fills the strip in-process."""
    from devfleet_base import ContractError
    from devfleet_ledstrip.api import INTERFACE

    strip, ctx = make()
    assert ctx.interfaces.get(INTERFACE) is None
    await strip.start()
    control = await ctx.interfaces.wait_for(INTERFACE, timeout=1.0)
    state = control.fill("#00ff00")
    assert state["effect"] == "solid" and state["params"]["color"] == "#00ff00"
    assert ctx.state is not None and ctx.state["params"]["color"] == "#00ff00"  # retained as before
    await strip.process()
    assert sim(strip).last == [0x00FF00] * 30
    assert control.set_effect("rainbow", {"period": 2})["effect"] == "rainbow"
    with pytest.raises(ContractError):
        control.fill("not a colour")
    with pytest.raises(ContractError):
        control.set_effect("nope")
    await strip.stop()
    assert ctx.interfaces.get(INTERFACE) is None  # withdrawn when the strip stops
