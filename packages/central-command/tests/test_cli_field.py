"""What a new operator hit (issue 18) and field failures (issue 17) through the CLI,
against a real mosquitto and real agents."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devfleet_base.testing import MqttProbe
from devfleet_command.cli import main
from devfleet_command.sync import Fleet


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ready(url: str, *names: str) -> None:
    with Fleet.connect(url) as fleet:
        fleet.wait_for(
            lambda m: all((n := m.get(x)) is not None and n.online and n.cfg is not None for x in names),
            timeout=20,
        )


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"mqtt://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()
    for conn in held:
        conn.close()


def test_a_silent_broker_does_not_overrun_the_timeout(
    silent_broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code, _, err = run(capsys, "--broker", silent_broker, "--timeout", "5", "ls")
    elapsed = time.monotonic() - started
    assert code == 3 and "within 5 s" in err
    assert elapsed < 6.0, f"took {elapsed:.1f} s for --timeout 5"


def test_ls_on_an_empty_broker_says_so(mosquitto: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--broker", mosquitto.url, "ls")
    assert code == 0 and out.strip() == f"no nodes on {mosquitto.url}"


def test_commands_to_a_node_never_seen_fail_at_once_and_leave_nothing(
    mosquitto: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "a", "code": "async def process(agent):\n    pass\n"}))
    url = mosquitto.url
    for argv in (
        ["ping", "nosuch"],
        ["restart", "nosuch"],
        ["config", "get", "nosuch"],
        ["config", "set", "nosuch", "description=x", "--desired"],
        ["components", "nosuch"],
        ["cmd", "nosuch", "ping"],
        ["component", "nosuch", "led", "on"],
        ["install", "nosuch", "somepkg"],
        ["spawn", "nosuch", str(spec)],
        ["stop", "nosuch", "a"],
        ["purge", "nosuch"],
        ["migrate", "a", "--to", "nosuch"],
        ["logs", "nosuch"],
        ["ping", "--group", "nosuch"],
        ["install", "--group", "nosuch", "somepkg"],
    ):
        started = time.monotonic()
        code, out, err = run(capsys, "--broker", url, "--timeout", "10", *argv)
        assert code == 3, (argv, out, err)
        assert "nosuch" in err and time.monotonic() - started < 5, argv
    with MqttProbe.connect_to(mosquitto) as probe:
        assert probe.retained("nodes/nosuch/#", timeout=2) == {}


def test_wait_for_node_waits_for_a_node_being_provisioned(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    result: dict[str, Any] = {}

    def ping() -> None:
        result["code"] = main(
            ["--broker", mosquitto.url, "--wait-for-node", "30", "--timeout", "30", "ping", "late"]
        )

    thread = threading.Thread(target=ping)
    thread.start()
    agents.start("late")
    thread.join(60)
    assert result["code"] == 0


FLAKY = """
import asyncio

async def handle_task(agent, payload):
    if agent.node == "tk-bad":
        raise RuntimeError("broken here")
    await asyncio.sleep(0.5)
    return {"node": agent.node}
"""


def test_task_error_exits_non_zero_and_does_not_shadow_a_healthy_instance(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    agents.start("tk-bad", "--allow-code")
    agents.start("tk-good", "--allow-code")
    url = mosquitto.url
    ready(url, "tk-bad", "tk-good")
    with Fleet.connect(url) as fleet:
        fleet.spawn("tk-bad", {"name": "flaky", "code": FLAKY})
        fleet.spawn("tk-good", {"name": "flaky", "code": FLAKY})
    code, out, err = run(capsys, "--broker", url, "--json", "task", "flaky", "{}")
    assert code == 0, err
    assert json.loads(out)["node"] == "tk-good"
    with Fleet.connect(url) as fleet:
        fleet.stop_actor("tk-good", "flaky")
        fleet.wait_for(
            lambda m: "flaky" not in ((m.get("tk-good").state or {}).get("actors") or {}),  # type: ignore[union-attr]
            timeout=10,
        )
    code, out, err = run(capsys, "--broker", url, "task", "flaky", "{}")
    assert code == 1 and "broken here" in err and "tk-bad" in err


def test_migrate_to_a_node_that_refuses_code_says_forbidden_at_once(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    agents.start("mg-src", "--allow-code")
    agents.start("mg-nocode")
    url = mosquitto.url
    ready(url, "mg-src", "mg-nocode")
    with Fleet.connect(url) as fleet:
        fleet.spawn("mg-src", {"name": "mover", "code": "async def process(agent):\n    pass\n"})
    started = time.monotonic()
    code, _, err = run(capsys, "--broker", url, "migrate", "mover", "--to", "mg-nocode")
    assert code == 1 and "does not accept actor code" in err
    assert time.monotonic() - started < 5


def test_spawn_honours_the_timeout(mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]) -> None:
    agent = agents.start("sp-frozen", "--allow-code")
    url = mosquitto.url
    ready(url, "sp-frozen")
    agent.pause()
    try:
        started = time.monotonic()
        code, _, err = run(
            capsys,
            "--broker",
            url,
            "--timeout",
            "2",
            "spawn",
            "sp-frozen",
            "--no-retain",
            "--name",
            "x",
            "--code",
            __file__,
        )
        assert code == 3 and time.monotonic() - started < 5, err
    finally:
        agent.resume()


def _fast_heartbeats(url: str, name: str) -> None:
    with Fleet.connect(url) as fleet:
        fleet.config_set(name, {"heartbeat.interval": 1.0})


def _ls(capsys: pytest.CaptureFixture[str], url: str) -> dict[str, dict[str, Any]]:
    code, out, err = run(capsys, "--broker", url, "ls", "--json")
    assert code == 0, err
    return {row["node"]: row for row in json.loads(out)}


def _until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_one_shot_listing_shows_the_latest_figures(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    agents.start("fig-1")
    ready(mosquitto.url, "fig-1")
    with Fleet.connect(mosquitto.url) as fleet:  # the first heartbeat has gone out
        fleet.wait_for(lambda m: (n := m.get("fig-1")) is not None and n.heartbeat is not None, timeout=20)
    row = _ls(capsys, mosquitto.url)["fig-1"]
    assert row["health"] == "online" and isinstance(row["cpu"], float) and row["heartbeat_at"] is not None
    code, out, _ = run(capsys, "--broker", mosquitto.url, "ls")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("fig-1"))
    assert line.split()[5] != "-"  # CPU%


def test_a_node_that_died_with_the_broker_is_not_online_to_a_one_shot_console(
    broker_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devfleet_agent.testing import AgentProcess

    broker = broker_factory(persistence=True)
    data = tmp_path / "dead-1"
    agent = AgentProcess(
        broker=broker.host, port=broker.port, name="dead-1", data_dir=data, extra=["--state-dir", str(data)]
    ).start()
    try:
        ready(broker.url, "dead-1")
        _fast_heartbeats(broker.url, "dead-1")
        agent.pause()  # the connection stays open: no will yet
        os.kill(broker.pid, signal.SIGUSR1)  # mosquitto saves its database (status "online")
        _until(lambda: (Path(broker.dir) / "mosquitto.db").exists())
        broker.kill()  # a power cut takes both; no will is ever published
        agent.kill()
        broker.start()
        # Within one stale window it cannot be told from a live node; after it, a
        # one-shot console (no heartbeat ever seen live) must not call it online.
        _until(lambda: _ls(capsys, broker.url)["dead-1"]["health"] == "stale")
        started = time.monotonic()
        code, out, err = run(capsys, "--broker", broker.url, "--json", "ping", "--all")
        assert code == 0 and json.loads(out)["offline"] == ["dead-1"], err
        assert time.monotonic() - started < 5
        code, out, err = run(capsys, "--broker", broker.url, "purge", "dead-1")
        assert code == 0, err
    finally:
        agent.kill()


def test_purge_clears_the_will_a_frozen_node_still_holds(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = agents.start("frozen-1", "--keepalive", "5")
    url = mosquitto.url
    ready(url, "frozen-1")
    _fast_heartbeats(url, "frozen-1")
    agent.pause()  # a half-open connection: the broker fires the will ~7.5 s later
    _until(lambda: _ls(capsys, url)["frozen-1"]["health"] == "stale")
    code, out, err = run(capsys, "--broker", url, "purge", "frozen-1", "--linger", "12")
    assert code == 0, err
    assert "frozen-1/status" in "".join(out) or "purged" in out
    with MqttProbe.connect_to(mosquitto) as probe:
        assert probe.retained("nodes/frozen-1/#", timeout=2) == {}
    assert "frozen-1" not in _ls(capsys, url)


def test_a_retained_online_with_no_heartbeat_gets_one_interval_then_shows_stale(
    mosquitto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with MqttProbe.connect_to(mosquitto) as probe:
        for leaf, version, extra in (
            ("meta", 1, {}),
            ("status", 2, {"status": "online"}),
            ("cfg", 3, {"config_version": 1, "config": {"heartbeat": {"interval": 1.0}}}),
        ):
            body = {"node": "ghost-1", "session": 1, "version": version, "ts": 1.0, **extra}
            probe.publish(f"nodes/ghost-1/{leaf}", body, retain=True)
    started = time.monotonic()
    code, out, err = run(capsys, "--broker", mosquitto.url, "ls")
    assert code == 0 and "waiting up to 2 s for a heartbeat from ghost-1" in err
    assert "stale" in next(line for line in out.splitlines() if line.startswith("ghost-1"))
    assert time.monotonic() - started < 5
    code, out, err = run(capsys, "--broker", mosquitto.url, "purge", "ghost-1")  # stale: no --force needed
    assert code == 0, err


def test_names_outside_the_grammar_are_counted_and_purgeable(
    mosquitto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with MqttProbe.connect_to(mosquitto) as probe:
        probe.publish(
            "nodes/Kitchen Pi/meta", {"node": "Kitchen Pi", "session": 1, "version": 1}, retain=True
        )
        probe.publish(
            "nodes/Kitchen Pi/status",
            {"node": "Kitchen Pi", "session": 1, "version": 2, "status": "online"},
            retain=True,
        )
    code, out, err = run(capsys, "--broker", mosquitto.url, "ls")
    assert code == 0 and "Kitchen" not in out and "'Kitchen Pi'" in err
    code, out, err = run(capsys, "--broker", mosquitto.url, "show", "Kitchen Pi")
    assert code == 3, (out, err)  # not a node the console lists: no ghost
    code, out, err = run(capsys, "--broker", mosquitto.url, "purge", "Kitchen Pi")
    assert code == 0 and "purged 2" in out, err
    with MqttProbe.connect_to(mosquitto) as probe:
        assert probe.retained("nodes/+/#", timeout=2) == {}
