"""The agent's own failures at start (issue 18): unwritable directories, bad credentials,
one state layout under the data directory. Real subprocesses and a real broker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devfleet_base import contract
from devfleet_base.testing.broker import free_port


def _run_agent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devfleet_agent", "--keepalive", "5", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--data-dir", "--state-dir"])
def test_an_unwritable_directory_is_one_line_and_exit_2_before_connecting(tmp_path, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # unwritable even for root
    dirs = {"--data-dir": str(tmp_path / "data"), "--state-dir": str(tmp_path / "state")}
    dirs[flag] = str(blocker / "sub")
    # Nothing listens on the port: an agent that connected first would retry forever.
    args = ["--broker", "127.0.0.1", "--port", str(free_port()), "--name", "rw1"]
    for key, value in dirs.items():
        args += [key, value]
    proc = _run_agent(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not writable" in lines[0] and flag in lines[0], proc.stderr
    assert "cannot reach broker" not in proc.stderr


def test_a_wrong_password_exits_77_without_a_traceback(mqtt_broker_auth, tmp_path):
    proc = _run_agent(
        "--broker",
        mqtt_broker_auth.host,
        "--port",
        str(mqtt_broker_auth.port),
        "--name",
        "badpw1",
        "--username",
        "admin",
        "--password",
        "wrong-password",
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert proc.returncode == 77, proc.stderr  # EX_NOPERM: systemd's RestartPreventExitStatus
    assert "Traceback" not in proc.stderr
    assert "refused the connection" in proc.stderr and "check username, password" in proc.stderr


def test_the_systemd_unit_does_not_restart_on_2_or_77():
    from pathlib import Path

    unit = Path(__file__).parents[3] / "deploy" / "systemd" / "devfleet-agent.service"
    lines = [line.split("=", 1) for line in unit.read_text().splitlines() if "=" in line]
    prevent = {k.strip(): v.split() for k, v in lines}.get("RestartPreventExitStatus", [])
    assert {"2", "77"} <= set(prevent)


def test_actor_state_lives_under_the_data_dir(agent_factory, probe, tmp_path):
    agent_factory("layout1", allow_code=True, state_dir=None)
    probe.wait_for("nodes/layout1/status", lambda m: m.json()["status"] == "online")
    code = "async def process(agent):\n    agent.persist('n', 1)\n"
    probe.subscribe(contract.agent_topic(contract.actor_id("keeper"), "heartbeat"))
    probe.publish("nodes/layout1/spawn", {"name": "keeper", "code": code, "poll_interval": 0.1})
    probe.wait_for(contract.agent_topic(contract.actor_id("keeper"), "heartbeat"))
    state = tmp_path / "layout1" / "actors" / "keeper.json"
    probe.wait_for("nodes/layout1/state", lambda m: state.exists(), timeout=10)
    assert not (tmp_path / "layout1" / "actors" / "agentflow_keeper_state.json").exists()
    # One documented layout (devfleet_agent.datadirs): nothing else in the data directory.
    names = {p.name for p in (tmp_path / "layout1").iterdir()}
    assert {"actors", "config", "session.json"} <= names
    assert names <= {"actors", "commands.json", "components", "config", "replay.json", "session.json"}


def test_the_agent_says_where_it_keeps_its_files(process_factory, probe, tmp_path):
    proc = process_factory("where1")
    probe.wait_for("nodes/where1/status", lambda m: m.json()["status"] == "online", timeout=15)
    assert f"node where1 keeps its files in {tmp_path / 'where1'}" in proc.output()
