"""End to end: a real agent in a venv of its own installs, upgrades, rolls back and
uninstalls a component from a local wheelhouse, driven over the broker.

Wheels of a test component are built into ``tmp_path/wheelhouse``: 1.0 is good,
2.0 crashes in setup, 3.0 fails its health check. The agent runs with
``--allow-install --install-find-links wheelhouse`` (``pip --no-index``), so
nothing is fetched from anywhere else.
"""

from __future__ import annotations

import itertools
import subprocess
import textwrap

import pytest

from devfleet_agent.testing import AgentProcess, build_wheel, venv_with_agent
from devfleet_base import contract

_ids = itertools.count()

COMPONENT = """
from devfleet_base import Component, Health, command, hookimpl

VERSION = "{version}"


class Widget(Component):
    name = "widget"
    version = VERSION

    async def _setup(self):
        if VERSION == "2.0":
            raise RuntimeError("widget 2.0 cannot find its hardware")

    async def _health(self):
        if VERSION == "3.0":
            return Health(False, "widget 3.0 is miscalibrated")
        return Health(True)

    @command("hello")
    async def hello(self, args):
        return {{"version": VERSION}}


@hookimpl
def devfleet_register_components(register):
    register(Widget)
"""

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "devfleet-test-widget"
version = "{version}"
dependencies = ["devfleet-component-base"]

[project.entry-points."devfleet.components"]
widget = "devfleet_testwidget"

[tool.hatch.build.targets.wheel]
packages = ["src/devfleet_testwidget"]
"""

REPO = __import__("pathlib").Path(__file__).resolve().parents[3]


def run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def wheelhouse(tmp_path):
    house = tmp_path / "wheelhouse"
    for version in ("1.0", "2.0", "3.0"):
        src = tmp_path / f"widget-{version}"
        pkg = src / "src" / "devfleet_testwidget"
        pkg.mkdir(parents=True)
        (src / "pyproject.toml").write_text(PYPROJECT.format(version=version))
        (pkg / "__init__.py").write_text(textwrap.dedent(COMPONENT.format(version=version)))
        build_wheel(src, house)
    assert len(list(house.glob("devfleet_test_widget-*.whl"))) == 3
    return house


@pytest.fixture
def venv(tmp_path):
    """A fresh venv with component-base and agent-core installed editable from the repo."""
    return venv_with_agent(tmp_path / "venv", REPO)


def send(probe, node, verb, args=None, timeout=120):
    inbox = f"replies/e2e{next(_ids)}"
    env = contract.Command.envelope(args or {}, reply_to=inbox, ttl=600)
    probe.subscribe(inbox)
    probe.publish(contract.node_command_topic(node, verb), env)
    return probe.wait_for(
        inbox, lambda m: m.json()["id"] == env["id"] and m.json()["status"] != "accepted", timeout=timeout
    ).json()


def widget_state(probe, node, pred, timeout=30):
    msg = probe.wait_for(
        f"nodes/{node}/state",
        lambda m: pred(m.json().get("components", {}).get("widget", {})),
        timeout=timeout,
    )
    return msg.json()["components"]["widget"]


def test_install_upgrade_rollback_uninstall_in_a_fresh_venv(mqtt_broker, probe, tmp_path, wheelhouse, venv):
    node = "e2e-install"
    settings = tmp_path / "agent.toml"
    settings.write_text(
        "component_verify_cycles = 3\ncomponent_verify_interval = 0.2\ncomponent_verify_timeout = 5.0\n"
    )
    agent = AgentProcess(
        broker=mqtt_broker.host,
        port=mqtt_broker.port,
        name=node,
        data_dir=tmp_path / node,
        python=str(venv),
        extra=(
            "--allow-install",
            "--allow-code",
            "--install-find-links",
            str(wheelhouse),
            "--config",
            str(settings),
            "--state-dir",
            str(tmp_path / "state"),
        ),
    )
    with agent:
        probe.wait_for(f"nodes/{node}/status", lambda m: m.json()["status"] == "online", timeout=30)
        r = send(
            probe,
            node,
            "configure",
            {"set": {"components_allowed": ["devfleet-test-*"], "components": {"widget": {}}}},
        )
        assert r["status"] == "ok", r
        assert widget_state(probe, node, lambda w: w.get("state") == "not_installed")

        # install 1.0
        r = send(probe, node, "install", {"spec": "devfleet-test-widget==1.0"})
        assert r["status"] == "ok", (r, agent.output()[-3000:])
        assert r["result"] == {
            "installed": True,
            "dist": "devfleet-test-widget",
            "version": "1.0",
            "previous": None,
            "rolled_back": False,
            "components": ["widget"],
            "restart_required": False,
        }
        assert widget_state(probe, node, lambda w: w.get("state") == "running")["version"] == "1.0"
        assert send(probe, node, "component", {"component": "widget", "command": "hello"})["result"] == {
            "version": "1.0"
        }
        meta = probe.wait_for(
            f"nodes/{node}/meta", lambda m: any(c["name"] == "widget" for c in m.json()["components"])
        ).json()
        assert [c["dist_version"] for c in meta["components"] if c["name"] == "widget"] == ["1.0"]

        # upgrade to 2.0, which crashes in setup: rolled back to 1.0
        r = send(probe, node, "upgrade", {"spec": "devfleet-test-widget==2.0"})
        assert r["status"] == "error" and r["code"] == "failed", r
        assert "setup failed" in r["message"] and "rolled back to 1.0" in r["message"]
        assert r["result"]["rolled_back"] is True
        assert (r["result"]["version"], r["result"]["previous"], r["result"]["attempted"]) == (
            "1.0",
            "1.0",
            "2.0",
        )
        assert widget_state(probe, node, lambda w: w.get("state") == "running")["version"] == "1.0"
        assert send(probe, node, "component", {"component": "widget", "command": "hello"})["result"] == {
            "version": "1.0"
        }

        # upgrade to 3.0, which fails its health check: rolled back to 1.0
        r = send(probe, node, "upgrade", {"spec": "devfleet-test-widget==3.0"})
        assert r["status"] == "error" and r["code"] == "failed", r
        assert "failed its health check: widget 3.0 is miscalibrated" in r["message"]
        assert r["result"]["rolled_back"] is True and r["result"]["version"] == "1.0"
        assert send(probe, node, "component", {"component": "widget", "command": "hello"})["result"] == {
            "version": "1.0"
        }

        # the listing, then uninstall
        listing = send(probe, node, "components")["result"]
        assert listing["installed"] == [
            {"dist": "devfleet-test-widget", "version": "1.0", "components": ["widget"]}
        ]
        r = send(probe, node, "uninstall", {"spec": "devfleet-test-widget"})
        assert r["status"] == "ok", r
        assert r["result"] == {
            "uninstalled": True,
            "dist": "devfleet-test-widget",
            "version": "1.0",
            "components": ["widget"],
        }
        assert widget_state(probe, node, lambda w: w.get("state") == "not_installed")
        meta = probe.wait_for(f"nodes/{node}/meta", lambda m: m.json()["components"] == []).json()
        assert meta["component_errors"] == []
        assert send(probe, node, "ping")["status"] == "ok"
        listed = run([str(venv), "-m", "pip", "list", "--format=freeze"]).stdout
        assert "devfleet-test-widget" not in listed and "devfleet_test_widget" not in listed

        # A Wactorz spawn whose "install" list is pip-installed (for real) before its code runs.
        probe.subscribe(f"e2e/{node}/widget")
        probe.publish(
            contract.node_topic(node, "spawn"),
            {
                "name": "uses-widget",
                "install": ["devfleet-test-widget==1.0"],
                "poll_interval": 0.2,
                "code": (
                    "import devfleet_testwidget\n"
                    "async def setup(agent):\n    pass\n"
                    "async def process(agent):\n"
                    f"    await agent.publish('e2e/{node}/widget', {{'version': devfleet_testwidget.VERSION}})\n"
                ),
            },
            retain=True,
        )
        assert probe.wait_for(f"e2e/{node}/widget", timeout=120).json() == {"version": "1.0"}
        assert agent.terminate() == 0
    listed = run([str(venv), "-m", "pip", "list", "--format=freeze"]).stdout
    assert "devfleet-test-widget==1.0" in listed
