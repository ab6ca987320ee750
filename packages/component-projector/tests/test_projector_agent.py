"""End to end: a projector on a real pty, in a real agent, driven from the console."""

from __future__ import annotations

import pytest

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_command import Fleet
from devfleet_command.errors import CommandFailed
from devfleet_projector.simulator import ProjectorSimulator


def _projector(model, node):
    view = model.get(node)
    return ((view.state or {}).get("components") or {}).get("projector", {}) if view else {}


@pytest.mark.parametrize("protocol", ["epson", "benq"])
def test_projector_through_agent_and_console(mqtt_broker, probe, tmp_path, protocol):
    node = f"proj-{protocol}"
    with (
        ProjectorSimulator(protocol, warmup=0.3, cooldown=0.3) as sim,
        AgentThread(settings_for(mqtt_broker, node, tmp_path / node)),
        Fleet.connect(mqtt_broker.url) as fleet,
    ):
        fleet.wait_for(lambda m: node in m and m.get(node).online, timeout=20)
        settings = {
            "protocol": protocol,
            "port": sim.path,
            "timeout": 0.5,
            "poll_interval": 0.2,
            "retry_interval": 0.05,
        }
        fleet.config_set(node, {"components.projector": {"enabled": True, "settings": settings}})
        fleet.wait_for(lambda m: _projector(m, node).get("state") == "running", timeout=20)

        fleet.component_command(node, "projector", "power", {"state": "on", "wait": True}, timeout=20)
        assert sim.power == "on"
        fleet.component_command(node, "projector", "input", {"source": "hdmi"}, timeout=20)
        status = fleet.component_command(node, "projector", "status", timeout=20)
        assert status["power"] == "on" and status["lamp_hours"] >= 1200

        probe.subscribe(f"nodes/{node}/components/projector/state")
        sim.unplug()
        with pytest.raises(CommandFailed) as silent:
            fleet.component_command(node, "projector", "status", timeout=20)
        assert silent.value.code == "timeout"
        probe.wait_for(
            f"nodes/{node}/components/projector/state", lambda m: m.json().get("state") == "degraded"
        )
        sim.replug()
        probe.wait_for(
            f"nodes/{node}/components/projector/state", lambda m: m.json().get("state") == "ok", timeout=10
        )
        assert fleet.component_command(node, "projector", "status", timeout=20)["power"] == "on"
