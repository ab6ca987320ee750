"""Wactorz remote node, node side: spawn, replace, stop, stop_all, list, refusals (real broker)."""

from __future__ import annotations

import pytest

from devfleet_agent.actors import control as control_module
from devfleet_agent.actors.control import check_requirements
from devfleet_base import contract
from devfleet_base.errors import CommandError, ContractError

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


def receipt(probe, node, cmd, *, since=0, status=None, id=None, timeout=10):
    return probe.wait_for(
        f"nodes/{node}/receipts",
        lambda m: (
            m.json()["cmd"] == cmd
            and (status is None or m.json()["status"] == status)
            and (id is None or m.json()["id"] == id)
        ),
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


TICKER = "async def process(agent):\n    agent.state['n'] = agent.state.get('n', 0) + 1\n"


def spawn(probe, node, name, code=TICKER, **extra):
    """Publish a spawn (after subscribing to the actor's topics, so its first heartbeat is seen)."""
    if "/" not in name:
        probe.subscribe(f"agents/{contract.actor_id(name)}/#")
    probe.publish(f"nodes/{node}/spawn", {"name": name, "code": code, "poll_interval": 0.5, **extra})


def test_retained_spawn_is_cleared_after_processing(node, probe):
    topic = f"nodes/{node.name}/spawn"
    probe.subscribe(topic)
    probe.subscribe(f"agents/{contract.actor_id('kept')}/heartbeat")
    mark = probe.mark()
    probe.publish(topic, {"name": "kept", "code": TICKER}, retain=True)
    beat(probe, "kept", node.name)
    probe.wait_for(topic, lambda m: m.payload == b"", since=mark)
    assert probe.retained(topic) == {}


def test_non_retained_spawn_works_too(node, probe):
    probe.subscribe(f"nodes/{node.name}/receipts")
    probe.publish(f"nodes/{node.name}/spawn", {"name": "plain", "code": TICKER, "_id": "sp-1"})
    r = receipt(probe, node.name, "spawn")
    assert r["status"] == "ok" and r["id"] == "sp-1"


def test_duplicate_is_ignored_and_replace_restarts(node, probe):
    probe.subscribe(f"nodes/{node.name}/receipts")
    aid = contract.actor_id("dup")
    probe.subscribe(f"agents/{aid}/logs")
    code_v1 = "async def setup(agent):\n    await agent.log('v1')\nasync def process(agent):\n    pass\n"
    code_v2 = code_v1.replace("v1", "v2")
    spawn(probe, node.name, "dup", code_v1)
    probe.wait_for(f"agents/{aid}/logs", lambda m: m.json()["message"] == "v1")
    mark = probe.mark()
    spawn(probe, node.name, "dup", code_v2, _id="dup-2")
    r = receipt(probe, node.name, "spawn", id="dup-2")
    assert r["status"] == "error" and r["code"] == "conflict"
    assert "replace" in r["message"]
    err = probe.wait_for(f"agents/{aid}/logs", lambda m: m.json()["level"] == "error", since=mark).json()
    assert "already running" in err["message"]
    assert not [m for m in probe.messages(f"agents/{aid}/logs", since=mark) if m.json()["message"] == "v2"]
    mark = probe.mark()
    spawn(probe, node.name, "dup", code_v2, replace=True, _id="dup-3")
    probe.wait_for(f"agents/{aid}/logs", lambda m: m.json()["message"] == "v2", since=mark)
    assert receipt(probe, node.name, "spawn", id="dup-3")["status"] == "ok"
    assert contract.actor_id("dup") == aid  # stable across restarts and replacements


def test_stop_one_actor(node, probe):
    probe.subscribe(f"nodes/{node.name}/receipts")
    spawn(probe, node.name, "doomed")
    spawn(probe, node.name, "survivor")
    beat(probe, "doomed", node.name)
    beat(probe, "survivor", node.name)
    mark = probe.mark()
    probe.publish(f"nodes/{node.name}/stop", {"name": "doomed"})
    assert receipt(probe, node.name, "stop", since=mark)["status"] == "ok"
    state = probe.wait_for(
        f"nodes/{node.name}/state", lambda m: "doomed" not in m.json()["actors"], since=mark
    ).json()
    assert state["actors"]["survivor"]["state"] == "running"
    mark = probe.mark()
    probe.publish(f"nodes/{node.name}/stop", {"name": "doomed"})
    r = receipt(probe, node.name, "stop", since=mark)
    assert r["status"] == "error" and r["code"] == "not_found"


def test_list_answers_on_agents(node, probe):
    spawn(probe, node.name, "l1")
    spawn(probe, node.name, "l2")
    beat(probe, "l1", node.name)
    beat(probe, "l2", node.name)
    probe.subscribe(f"nodes/{node.name}/agents")
    probe.publish(f"nodes/{node.name}/list", {})
    answer = probe.wait_for(f"nodes/{node.name}/agents").json()
    assert answer["node"] == node.name and answer["timestamp"] > 0
    assert [(a["name"], a["actor_id"]) for a in answer["agents"]] == [
        ("l1", contract.actor_id("l1")),
        ("l2", contract.actor_id("l2")),
    ]


def test_node_heartbeat_and_state_report_actors(node, probe):
    spawn(probe, node.name, "counted")
    beat(probe, "counted", node.name)
    state = probe.wait_for(f"nodes/{node.name}/state", lambda m: "counted" in m.json()["actors"]).json()
    entry = state["actors"]["counted"]
    assert entry["actor_id"] == contract.actor_id("counted") and entry["restarts"] == 0
    assert entry["last_error"] is None
    mark = probe.mark()
    env = contract.Command.envelope({"set": {"heartbeat.interval": 1}}, reply_to="replies/hb-act")
    probe.publish(contract.node_command_topic(node.name, "configure"), env)
    hb = probe.wait_for(
        f"nodes/{node.name}/heartbeat", lambda m: m.json()["agent_count"] == 1, since=mark
    ).json()
    assert hb["agents"] == ["counted"] and hb["node_id"] == contract.node_id(node.name)
    assert hb["broker"].endswith(str(node.settings.port))


def test_stop_all_stops_actors_and_the_agent(agent_factory, probe):
    agent = agent_factory("stopall1", allow_code=True)
    probe.wait_for("nodes/stopall1/status", _online)
    probe.subscribe(f"agents/{contract.actor_id('s1')}/logs")
    spawn(probe, "stopall1", "s1")
    beat(probe, "s1", "stopall1")
    mark = probe.mark()
    probe.publish("nodes/stopall1/stop_all", {})
    probe.wait_for("nodes/stopall1/status", lambda m: m.json()["status"] == "offline", since=mark)
    logs = probe.messages(f"agents/{contract.actor_id('s1')}/logs", since=mark)
    assert any(m.json().get("event", {}).get("kind") == "stopped" for m in logs)
    agent._thread.join(15)  # the agent exits by itself
    assert not agent._thread.is_alive()
    assert agent.exit_code == 0 and agent.agent.stop_reason == "stop_all"


def test_spawn_without_allow_code_is_refused(agent_factory, probe):
    agent_factory("nocode1")
    probe.wait_for("nodes/nocode1/status", _online)
    aid = contract.actor_id("evil")
    probe.subscribe(f"agents/{aid}/logs")
    probe.subscribe("nodes/nocode1/receipts")
    spawn(probe, "nocode1", "evil", "import os\nasync def process(agent):\n    os.system('true')\n")
    r = receipt(probe, "nocode1", "spawn")
    assert r["status"] == "error" and r["code"] == "forbidden" and "allow-code" in r["message"]
    err = probe.wait_for(f"agents/{aid}/logs").json()
    assert err["level"] == "error" and err["node"] == "nocode1"
    assert not probe.messages(f"agents/{aid}/heartbeat")


def test_install_needs_allow_install_and_plain_names(node, probe):
    probe.subscribe(f"nodes/{node.name}/receipts")
    mark = probe.mark()
    spawn(probe, node.name, "inst", install=["adafruit-circuitpython-dht"])
    r = receipt(probe, node.name, "spawn", since=mark)
    assert r["code"] == "forbidden" and "allow-install" in r["message"]
    for bad in ("--index-url=http://evil", "https://evil/x.whl", "../x", "pkg @ file:///x", "a b", "-e ."):
        mark = probe.mark()
        spawn(probe, node.name, "inst", install=[bad])
        r = receipt(probe, node.name, "spawn", since=mark)
        assert r["status"] == "error" and r["code"] == "invalid", bad


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"{not json", "bad_json", "JSON"),
        (b"[1, 2]", "invalid", "object"),
        ({"name": "nocode"}, "invalid", "code"),
        ({"name": "bad/name", "code": TICKER}, "invalid", "name"),
        ({"name": "syntax", "code": "async def process(agent):\n    return (\n"}, "failed", "compile"),
        ({"name": "noproc", "code": "x = 1\n"}, "failed", "none of"),
        (
            {
                "name": "setupfail",
                "code": "async def setup(agent):\n    1/0\nasync def process(agent):\n    pass\n",
            },
            "failed",
            "ZeroDivisionError",
        ),
    ],
)
def test_malformed_spawn_is_answered_and_disturbs_nothing(node, probe, payload, code, fragment):
    probe.subscribe(f"nodes/{node.name}/receipts")
    spawn(probe, node.name, "bystander")
    beat(probe, "bystander", node.name)
    receipt(probe, node.name, "spawn", status="ok")
    if isinstance(payload, dict) and "/" not in payload["name"]:
        probe.subscribe(f"agents/{contract.actor_id(payload['name'])}/logs")
    mark = probe.mark()
    probe.publish(f"nodes/{node.name}/spawn", payload)
    r = receipt(probe, node.name, "spawn", since=mark)
    assert r["status"] == "error" and r["code"] == code and fragment in r["message"], r
    if isinstance(payload, dict) and "/" not in payload["name"] and code == "failed":
        aid = contract.actor_id(payload["name"])
        fatal = probe.wait_for(
            f"agents/{aid}/logs", lambda m: m.json()["level"] == "fatal", since=mark
        ).json()
        assert fatal["event"]["kind"] == "fatal"
    # The bystander keeps running, and the node still answers.
    host_state = probe.wait_for(
        f"nodes/{node.name}/state",
        lambda m: m.json()["actors"].get("bystander", {}).get("state") == "running",
    )
    assert host_state
    probe.subscribe(f"nodes/{node.name}/agents")
    probe.publish(f"nodes/{node.name}/list", {})
    answer = probe.wait_for(f"nodes/{node.name}/agents", since=mark).json()
    assert "bystander" in [a["name"] for a in answer["agents"]]
    assert node.agent.mqtt.connected


@pytest.mark.parametrize(
    "good", ["adafruit-circuitpython-dht", "requests==2.31.0", "foo[bar,baz]>=1.0,<2", "a", "x.y_z~=1.4"]
)
def test_plain_requirements_are_accepted(good):
    assert check_requirements([good]) == [good]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-r x",
        "--pre",
        "git+https://x/y",
        "/abs/path",
        "./rel",
        "pkg @ url",
        "a;python_version<'3'",
        "a b",
    ],
)
def test_other_requirements_are_refused(bad):
    with pytest.raises(ContractError):
        check_requirements([bad])


def test_install_runs_the_installer_before_compiling(agent_factory, probe, monkeypatch):
    calls = []

    async def fake_install(requirements, settings):
        calls.append(list(requirements))
        if "broken-pkg" in requirements:
            raise CommandError("install of broken-pkg failed: no such project", code="failed")

    monkeypatch.setattr(control_module, "_pip_install", fake_install)
    agent_factory("inst-ok", allow_code=True, allow_install=True)
    probe.wait_for("nodes/inst-ok/status", _online)
    probe.subscribe("nodes/inst-ok/receipts")
    spawn(probe, "inst-ok", "dht", install=["adafruit-circuitpython-dht"], _id="i1")
    assert receipt(probe, "inst-ok", "spawn", id="i1")["status"] == "ok"
    spawn(probe, "inst-ok", "broken", install=["broken-pkg"], _id="i2")
    r = receipt(probe, "inst-ok", "spawn", id="i2")
    assert r["code"] == "failed" and "broken-pkg" in r["message"]
    assert calls == [["adafruit-circuitpython-dht"], ["broken-pkg"]]


def test_debug_diagnostics_show_actor_traffic(process_factory, probe, tmp_path):
    extra = ("--keepalive", "5", "--loglevel", "DEBUG", "--allow-code", "--state-dir", str(tmp_path / "st"))
    proc = process_factory("dbg-node", extra=extra)
    probe.wait_for("nodes/dbg-node/status", _online, timeout=20)
    probe.subscribe("sensors/temperature")
    probe.publish("nodes/dbg-node/spawn", {**DHT22, "node": "dbg-node"}, retain=True)
    probe.wait_for("sensors/temperature", lambda m: m.json()["node"] == "dbg-node")
    assert proc.terminate() == 0
    out = proc.output()
    assert "[diag] broker" in out
    assert "receive #" in out and "nodes/dbg-node/spawn" in out
    assert "publish #" in out and "sensors/temperature" in out
    assert f"agents/{contract.actor_id('temp-sensor-agent')}/heartbeat" in out
