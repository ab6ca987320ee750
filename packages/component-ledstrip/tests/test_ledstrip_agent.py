"""End to end: the LED strip in a real agent, driven from the console over a real broker."""

from __future__ import annotations

import pytest

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_command import Fleet
from devfleet_command.errors import CommandFailed


def _ledstrip(model, node):
    view = model.get(node)
    return ((view.state or {}).get("components") or {}).get("ledstrip", {}) if view else {}


def test_ledstrip_through_agent_and_console(mqtt_broker, probe, tmp_path):
    node = "led-node"
    with (
        AgentThread(settings_for(mqtt_broker, node, tmp_path / node)),
        Fleet.connect(mqtt_broker.url) as fleet,
    ):
        fleet.wait_for(lambda m: node in m and m.get(node).online, timeout=20)
        settings = {
            "backend": "simulated",
            "led_count": 30,
            "fps": 50,
            "preview": {"enabled": True, "interval": 0.1},
        }
        fleet.config_set(node, {"components.ledstrip": {"enabled": True, "settings": settings}})
        fleet.wait_for(lambda m: _ledstrip(m, node).get("state") == "running", timeout=20)
        probe.subscribe(f"nodes/{node}/components/ledstrip/#")

        result = fleet.component_command(
            node, "ledstrip", "set_effect", {"effect": "rainbow", "params": {"speed": 2}}
        )
        assert result is None or isinstance(result, dict)
        state = probe.wait_for(
            f"nodes/{node}/components/ledstrip/state", lambda m: m.json().get("effect") == "rainbow"
        ).json()
        assert state["led_count"] == 30 and state["backend"] == "simulated"
        preview = probe.wait_for(
            f"nodes/{node}/components/ledstrip/preview", lambda m: m.json().get("effect") == "rainbow"
        ).json()
        assert len(preview["pixels"]) > 0

        fleet.component_command(node, "ledstrip", "brightness", {"value": 40})
        assert probe.wait_for(
            f"nodes/{node}/components/ledstrip/state", lambda m: m.json().get("brightness") == 40
        )
        fleet.component_command(node, "ledstrip", "off")
        assert probe.wait_for(
            f"nodes/{node}/components/ledstrip/state", lambda m: m.json().get("effect") == "off"
        )

        with pytest.raises(CommandFailed) as bad:
            fleet.component_command(node, "ledstrip", "set_effect", {"effect": "disco"})
        assert bad.value.code == "invalid"
        with pytest.raises(CommandFailed) as bad:
            fleet.component_command(node, "ledstrip", "brightness", {"value": 999})
        assert bad.value.code == "invalid"

        # Settings are checked before the node accepts a config.
        with pytest.raises(CommandFailed):
            fleet.call(node, "configure", {"set": {"components.ledstrip.settings.led_count": -1}})
        assert _ledstrip(fleet.model, node).get("state") == "running"
