"""The component commands of the console, against a real agent running the minimal example."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devfleet_command.cli import main
from devfleet_command.sync import Fleet


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_components_listing_and_component_command(mosquitto: Any, agents: Any, capsys: Any) -> None:
    agents.start("comp1")
    url = mosquitto.url
    with Fleet.connect(url) as fleet:
        fleet.wait_for(lambda m: "comp1" in m and m.get("comp1").online, timeout=20)
        fleet.config_set("comp1", {"components.counter": {"enabled": True, "settings": {"interval": 0.05}}})
        fleet.wait_for(
            lambda m: (
                (m.get("comp1").state or {}).get("components", {}).get("counter", {}).get("state")
                == "running"
            ),
            timeout=20,
        )
        assert fleet.component_command("comp1", "counter", "bump", {"by": 5})["count"] >= 5
    code, out, _ = run(capsys, "--broker", url, "--json", "components", "comp1")
    assert code == 0
    info = json.loads(out)
    assert info["configured"]["counter"]["state"] == "running"
    code, out, _ = run(capsys, "--broker", url, "components", "comp1")
    assert code == 0 and "counter" in out and "running" in out
    code, out, _ = run(capsys, "--broker", url, "--json", "component", "comp1", "counter", "bump", "by=2")
    assert code == 0 and json.loads(out)["result"]["count"] >= 7
    code, _, err = run(capsys, "--broker", url, "component", "comp1", "counter", "bump", "by=0")
    assert code == 1 and "by" in err
    code, _, err = run(capsys, "--broker", url, "component", "comp1", "nosuch", "bump")
    assert code == 1 and err.startswith("devfleet:")


def test_install_is_refused_without_allow_install(mosquitto: Any, agents: Any, capsys: Any) -> None:
    agents.start("inst1")
    agents.start("inst2")
    url = mosquitto.url
    with Fleet.connect(url) as fleet:
        fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in ("inst1", "inst2")), timeout=20)
    code, _, err = run(capsys, "--broker", url, "install", "inst1", "devfleet-component-ledstrip")
    assert code == 1 and "allow" in err
    code, out, _ = run(capsys, "--broker", url, "--json", "install", "--all", "devfleet-component-ledstrip")
    result = json.loads(out)
    assert code == 1 and sorted(result["failed"]) == ["inst1", "inst2"]
    # NODE and --all together: options may sit between positionals, the targets still conflict
    code, _, err = run(capsys, "--broker", url, "install", "inst1", "--all", "x")
    assert code == 2 and "name one NODE" in err
    code, _, err = run(capsys, "--broker", url, "install", "--all", "--group", "g", "some-spec")
    assert code == 2 and "name one NODE" in err
