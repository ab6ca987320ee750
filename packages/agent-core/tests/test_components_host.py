"""Components in a real agent on a real broker: config, supervision, state, commands, receipts.

Each test builds its own registry (STYLE #4): classes are registered directly,
nothing installed is discovered.
"""

from __future__ import annotations

import importlib.metadata as md
import itertools

import pytest

from devfleet_agent.components import ComponentHost, ComponentRegistry, purge_modules
from devfleet_agent.supervisor import RestartPolicy
from devfleet_agent.testing import AgentThread, settings_for
from devfleet_base import Component, Field, Health, Schema, command, contract
from devfleet_base.errors import CommandError

_ids = itertools.count()


class Echo(Component):
    name = "echo"
    version = "1.2"
    config_schema = Schema(
        "echo", {"prefix": Field("str", default=">"), "inplace": Field("bool", default=True)}
    )

    async def _setup(self):
        self.ctx.report_state({"prefix": self.config["prefix"]})
        self.ctx.persist("starts", self.ctx.recall("starts", 0) + 1)

    @command("say", args=Schema("say", {"text": Field("str", required=True)}))
    async def say(self, args):
        await self.ctx.publish("said", {"text": self.config["prefix"] + args["text"]})
        return {"said": self.config["prefix"] + args["text"], "starts": self.ctx.recall("starts")}

    @command("refuse")
    async def refuse(self, args):
        raise CommandError("not today", code="busy")

    async def _reconfigure(self, config):
        if not config["inplace"]:
            raise NotImplementedError
        self.ctx.report_state({"prefix": config["prefix"]})


class Crashy(Component):
    name = "crashy"
    poll_interval = 0.01

    async def _process(self):
        raise RuntimeError("sensor unplugged")


class BadSetup(Component):
    name = "badsetup"

    async def _setup(self):
        raise OSError("no /dev/ttyUSB0")


class Sick(Component):
    name = "sick"

    async def _health(self):
        return Health(False, "lamp cold")


FAST = RestartPolicy(max_restarts=2, restart_delay=0.05, escalate_after=2, health_interval=0.05)


@pytest.fixture
def node(mqtt_broker, probe, tmp_path, request):
    """An agent whose host knows Echo, Crashy, BadSetup and Sick only."""
    made = []

    def make(*classes, entry_points=(), **settings):
        name = f"cmp{abs(hash(request.node.name)) % 10**7}{len(made)}"
        agent_thread = AgentThread(settings_for(mqtt_broker, name, tmp_path / name, **settings), attach=False)
        registry = ComponentRegistry(entry_points=lambda: entry_points)
        for cls in classes or (Echo, Crashy, BadSetup, Sick):
            registry.add(cls)
        host = ComponentHost(agent_thread.agent, registry, policy=FAST)
        agent_thread.agent.add_subsystem(host)
        agent_thread.start()
        made.append(agent_thread)
        probe.wait_for(f"nodes/{name}/status", lambda m: m.json()["status"] == "online")
        agent_thread.name, agent_thread.host = name, host
        return agent_thread

    yield make
    for a in made:
        a.stop()


def send(probe, node, verb, args=None):
    inbox = f"replies/h{next(_ids)}"
    env = contract.Command.envelope(args or {}, reply_to=inbox)
    probe.subscribe(inbox)
    probe.publish(contract.node_command_topic(node, verb), env)
    return probe.wait_for(
        inbox, lambda m: m.json()["id"] == env["id"] and m.json()["status"] != "accepted"
    ).json()


def configure(probe, node, components):
    r = send(probe, node, "configure", {"set": {"components": components}})
    assert r["status"] == "ok", r
    return r


def wait_state(probe, node, pred, timeout=10):
    return probe.wait_for(
        f"nodes/{node}/state", lambda m: pred(m.json().get("components", {})), timeout=timeout
    ).json()["components"]


def test_config_starts_a_component_and_commands_reach_it(node, probe):
    a = node()
    probe.subscribe(f"nodes/{a.name}/components/#")
    configure(probe, a.name, {"echo": {"settings": {"prefix": "#"}}})
    comps = wait_state(probe, a.name, lambda c: c.get("echo", {}).get("state") == "running")
    assert comps["echo"]["version"] == "1.2" and comps["echo"]["enabled"] is True
    r = send(probe, a.name, "component", {"component": "echo", "command": "say", "args": {"text": "hi"}})
    assert r["status"] == "ok" and r["result"] == {"said": "#hi", "starts": 1}
    assert probe.wait_for(f"nodes/{a.name}/components/echo/said").json() == {"text": "#hi"}
    retained = probe.retained(f"nodes/{a.name}/components/echo/state")
    assert retained[f"nodes/{a.name}/components/echo/state"].json() == {"prefix": "#"}
    assert (a.host.data_dir / "echo.json").exists()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"component": "echo", "command": "nope"}, "unknown_command"),
        ({"component": "echo", "command": "say", "args": {"txt": 1}}, "invalid"),
        ({"component": "echo", "command": "refuse"}, "busy"),
        ({"component": "ghost", "command": "say"}, "not_found"),
        ({"component": "sick", "command": "say"}, "unavailable"),
        ({"command": "say"}, "invalid"),
    ],
)
def test_component_command_errors_get_error_receipts(node, probe, args, code):
    a = node()
    configure(probe, a.name, {"echo": {}})
    wait_state(probe, a.name, lambda c: c.get("echo", {}).get("state") == "running")
    r = send(probe, a.name, "component", args)
    assert r["status"] == "error" and r["code"] == code, r


def test_settings_are_validated_before_the_config_is_accepted(node, probe):
    a = node()
    r = send(probe, a.name, "configure", {"set": {"components": {"echo": {"settings": {"prefix": 3}}}}})
    assert r["status"] == "error" and r["code"] == "invalid" and "prefix" in r["message"]
    r = send(probe, a.name, "configure", {"set": {"components": {"echo": {"settings": {"colour": "red"}}}}})
    assert r["code"] == "invalid" and "colour" in r["message"]
    r = send(probe, a.name, "configure", {"set": {"components": {"echo": {"enabld": True}}}})
    assert r["code"] == "invalid" and "enabld" in r["message"]
    r = send(probe, a.name, "config_get")
    assert r["result"]["config_version"] == 0 and r["result"]["config"]["components"] == {}
    # A component that is not installed yet is accepted as it is: checked when it starts.
    configure(probe, a.name, {"later": {"settings": {"anything": 1}}})
    comps = wait_state(probe, a.name, lambda c: "later" in c)
    assert comps["later"]["state"] == "not_installed"


def test_reconfigure_in_place_or_by_restart(node, probe):
    a = node()
    configure(probe, a.name, {"echo": {}})
    wait_state(probe, a.name, lambda c: c.get("echo", {}).get("state") == "running")
    configure(probe, a.name, {"echo": {"settings": {"prefix": "!"}}})
    comps = wait_state(probe, a.name, lambda c: (c["echo"]["reported"] or {}).get("prefix") == "!")
    r = send(probe, a.name, "component", {"component": "echo", "command": "say", "args": {"text": "x"}})
    assert r["result"] == {"said": "!x", "starts": 1}  # in place: not restarted
    configure(probe, a.name, {"echo": {"settings": {"prefix": "?", "inplace": False}}})
    wait_state(probe, a.name, lambda c: (c["echo"]["reported"] or {}).get("prefix") == "?")
    r = send(probe, a.name, "component", {"component": "echo", "command": "say", "args": {"text": "x"}})
    assert r["result"] == {"said": "?x", "starts": 2}  # NotImplementedError: restarted with new settings
    assert comps["echo"]["state"] == "running"


def test_supervised_failures_show_in_state_and_the_agent_keeps_running(node, probe):
    a = node()
    configure(probe, a.name, {"crashy": {}, "badsetup": {}, "sick": {}, "echo": {}})
    comps = wait_state(
        probe,
        a.name,
        lambda c: all(c.get(n, {}).get("state") == "failed" for n in ("crashy", "badsetup", "sick")),
    )
    assert "setup failed: OSError: no /dev/ttyUSB0" in comps["badsetup"]["last_error"]
    assert "restart budget exhausted" in comps["crashy"]["last_error"]
    assert comps["sick"]["health"] == {"ok": False, "detail": "lamp cold"}
    assert comps["echo"]["state"] == "running"
    assert send(probe, a.name, "ping")["status"] == "ok"
    # Disabling stops it deliberately; removing the section forgets it.
    configure(probe, a.name, {"echo": {"enabled": False}})
    comps = wait_state(
        probe, a.name, lambda c: c.get("echo", {}).get("state") == "disabled" and "crashy" not in c
    )
    assert a.host.supervisor.get("component:echo") is None


def test_components_verb_lists_installed_available_configured(node, probe):
    a = node(Echo)
    configure(probe, a.name, {"echo": {}})
    wait_state(probe, a.name, lambda c: c.get("echo", {}).get("state") == "running")
    r = send(probe, a.name, "components")
    assert r["status"] == "ok"
    assert [c["name"] for c in r["result"]["available"]] == ["echo"]
    assert r["result"]["available"][0]["commands"] == ["refuse", "say"]
    assert r["result"]["configured"]["echo"]["state"] == "running"
    assert r["result"]["installed"] == [] and r["result"]["errors"] == []
    meta = probe.retained(f"nodes/{a.name}/meta")[f"nodes/{a.name}/meta"].json()
    assert [c["name"] for c in meta["components"]] == ["echo"]
    assert {"component", "components", "install", "upgrade", "uninstall"} <= set(meta["commands"])


def test_a_component_whose_import_raises_is_reported_and_the_agent_keeps_running(
    node, probe, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "dfx_explodes.py").write_text("raise RuntimeError('boom at import')\n")
    eps = (md.EntryPoint("explodes", "dfx_explodes", "devfleet.components"),)
    try:
        a = node(Echo, entry_points=eps)
        meta = probe.wait_for(f"nodes/{a.name}/meta", lambda m: m.json().get("component_errors")).json()
        assert meta["component_errors"] == [
            {
                "name": "explodes",
                "dist": None,
                "version": None,
                "error": "import failed: RuntimeError: boom at import",
            }
        ]
        configure(probe, a.name, {"explodes": {}, "echo": {}})
        comps = wait_state(
            probe, a.name, lambda c: c.get("echo", {}).get("state") == "running" and "explodes" in c
        )
        assert comps["explodes"]["state"] == "not_installed" and "boom" in comps["explodes"]["last_error"]
        assert send(probe, a.name, "ping")["status"] == "ok"
    finally:
        purge_modules({"dfx_explodes"})


def test_install_commands_are_refused_without_allow_install(node, probe):
    a = node(Echo)
    r = send(probe, a.name, "install", {"spec": "devfleet-example-minimal"})
    assert r["code"] == "forbidden" and "--allow-install" in r["message"]


def test_install_specs_are_checked_against_the_allow_list(node, probe, tmp_path):
    a = node(Echo, allow_install=True)
    r = send(probe, a.name, "install", {"spec": "requests"})
    assert r["code"] == "forbidden" and "components_allowed" in r["message"]
    r = send(probe, a.name, "install", {"spec": "--index-url=http://evil/ x"})
    assert r["code"] == "invalid"
    r = send(probe, a.name, "uninstall", {"spec": "paho-mqtt"})
    assert r["code"] == "forbidden" and "provides no devfleet component" in r["message"]
    r = send(probe, a.name, "upgrade", {"spec": "devfleet-agent-core"})
    assert r["code"] == "forbidden"
