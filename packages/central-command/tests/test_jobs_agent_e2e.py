"""A fleet job over a real agent: a component upgrade with a real pip install from a
local wheelhouse, then a job whose health gate fails and whose abort puts the
previous version back with pip (no index: ``--install-find-links`` only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentProcess, build_wheel, venv_with_agent
from devfleet_command.aio import AsyncFleet
from devfleet_command.jobs import Gate, JobRunner, JobState, Operation, new_job

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[3]
NODE = "job-e2e"

COMPONENT = """
from devfleet_base import Component, command, hookimpl

VERSION = "{version}"


class Gadget(Component):
    name = "gadget"
    version = VERSION

    @command("hello")
    async def hello(self, args):
        return {{"version": VERSION}}


@hookimpl
def devfleet_register_components(register):
    register(Gadget)
"""

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "devfleet-test-gadget"
version = "{version}"
dependencies = ["devfleet-component-base"]

[project.entry-points."devfleet.components"]
gadget = "devfleet_testgadget"

[tool.hatch.build.targets.wheel]
packages = ["src/devfleet_testgadget"]
"""


@pytest.fixture
def agent_python(tmp_path: Path) -> tuple[Path, Path]:
    """A wheelhouse with gadget 1.0 and 2.0, and a venv with the agent (editable)."""
    house = tmp_path / "wheelhouse"
    for version in ("1.0", "2.0"):
        pkg = tmp_path / f"gadget-{version}" / "src" / "devfleet_testgadget"
        pkg.mkdir(parents=True)
        (pkg.parents[1] / "pyproject.toml").write_text(PYPROJECT.format(version=version))
        (pkg / "__init__.py").write_text(COMPONENT.format(version=version))
        build_wheel(pkg.parents[1], house)
    return venv_with_agent(tmp_path / "venv", REPO), house


async def test_a_job_upgrades_a_real_agent_and_an_abort_reverts_with_pip(
    mqtt_broker: Any, tmp_path: Path, agent_python: tuple[Path, Path]
) -> None:
    python, house = agent_python
    settings = tmp_path / "agent.toml"
    settings.write_text(
        "component_verify_cycles = 2\ncomponent_verify_interval = 0.2\ncomponent_verify_timeout = 5.0\n"
    )
    agent = AgentProcess(
        broker=mqtt_broker.host,
        port=mqtt_broker.port,
        name=NODE,
        data_dir=tmp_path / NODE,
        python=str(python),
        extra=(
            "--allow-install",
            "--install-find-links",
            str(house),
            "--config",
            str(settings),
            "--state-dir",
            str(tmp_path / "state"),
        ),
    )
    with agent:
        async with AsyncFleet(f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}", wait_for_node=30) as fleet:
            await fleet.wait_for(lambda m: (n := m.get(NODE)) is not None and n.online, 30)
            await fleet.config_set(
                NODE, {"components_allowed": ["devfleet-test-*"], "components": {"gadget": {}}}
            )
            await fleet.install(NODE, "devfleet-test-gadget==1.0", timeout=120)

            def gadget(m: Any) -> dict[str, Any]:
                return (m.get(NODE).components or {}).get("gadget") or {}

            await fleet.wait_for(
                lambda m: gadget(m).get("version") == "1.0" and gadget(m).get("state") == "running", 30
            )

            # A clean job: the upgrade to 2.0 passes its soak and the component's own command.
            hello = {"verb": "component", "args": {"component": "gadget", "command": "hello"}}
            spec = new_job(
                fleet,
                Operation("upgrade", {"spec": "devfleet-test-gadget==2.0"}, timeout=180),
                [NODE],
                gate=Gate(soak=0.5, health=hello),
                expires_in=240,
            )
            state = await JobRunner(fleet, JobState.fresh(spec)).run()
            assert state.state == "completed", (state.reason, agent.output()[-3000:])
            assert state.nodes[NODE].previous == "1.0"
            assert await fleet.component_command(NODE, "gadget", "hello") == {"version": "2.0"}

            # Back to 1.0 by a job whose health gate fails: the abort reinstalls 2.0 with pip.
            spec = new_job(
                fleet,
                Operation("install", {"spec": "devfleet-test-gadget==1.0"}, timeout=180),
                [NODE],
                gate=Gate(soak=0.2, health={"verb": "no_such_check", "args": {}}),
                expires_in=240,
            )
            state = await JobRunner(fleet, JobState.fresh(spec)).run()
            assert state.state == "aborted", state.reason
            progress = state.nodes[NODE]
            assert (progress.state, progress.previous) == ("reverted", "2.0"), progress
            assert "no_such_check" in (progress.error or "")
            await fleet.wait_for(
                lambda m: gadget(m).get("version") == "2.0" and gadget(m).get("state") == "running", 30
            )
            assert await fleet.component_command(NODE, "gadget", "hello") == {"version": "2.0"}
