"""The devfleet CLI: --json output and exit codes, against real agents."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

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


def test_help_is_fast_and_lists_exit_codes() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; from devfleet_command.cli import main; sys.argv=['devfleet','--help']; main()",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert "exit codes:" in proc.stdout and "3  timeout or unreachable" in proc.stdout
    for heavy in ("rich", "paho"):
        assert f" {heavy}" not in proc.stderr.replace("|", " "), f"{heavy} imported by --help"


def test_ls_show_ping_json(mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]) -> None:
    agents.start("n1")
    agents.start("n2")
    ready(mosquitto.url, "n1", "n2")
    code, out, _ = run(capsys, "--broker", mosquitto.url, "ls", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["node"] for r in rows] == ["n1", "n2"] and {r["health"] for r in rows} == {"online"}
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "show", "n1")
    assert code == 0 and json.loads(out)["meta"]["node"] == "n1"
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "ping", "n1")
    assert code == 0 and json.loads(out)["result"]["pong"] is True
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "ping", "--all")
    assert code == 0 and json.loads(out)["succeeded"] == ["n1", "n2"]
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "watch", "--once")
    assert code == 0 and len(json.loads(out)) == 2
    code, out, _ = run(capsys, "--broker", mosquitto.url, "watch", "--once")
    assert code == 0 and "n1" in out and "online" in out


def test_config_and_exit_codes(mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]) -> None:
    agents.start("n1")
    ready(mosquitto.url, "n1")
    url = mosquitto.url
    code, out, _ = run(capsys, "--broker", url, "--json", "config", "get", "n1")
    assert code == 0
    version = json.loads(out)["config_version"]
    code, out, _ = run(
        capsys,
        "--broker",
        url,
        "--json",
        "config",
        "set",
        "n1",
        "telemetry.interval=5",
        "description=lab bench",
        "--expect-version",
        str(version),
    )
    assert code == 0 and json.loads(out)["config_version"] == version + 1
    # stale version: the node reports failure -> 1, one line, no traceback
    code, _, err = run(
        capsys, "--broker", url, "config", "set", "n1", "telemetry.interval=6", "--expect-version", "0"
    )
    assert code == 1 and err.startswith("devfleet: ") and "conflict" in err and "Traceback" not in err
    # invalid value: refused client-side -> 2
    code, _, err = run(capsys, "--broker", url, "config", "set", "n1", "telemetry.interval=fast")
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(capsys, "--broker", url, "config", "set", "n1", "novalue")
    assert code == 2
    # unknown verb -> error receipt -> 1
    code, _, err = run(capsys, "--broker", url, "cmd", "n1", "frobnicate", "x=1")
    assert code == 1 and "unknown_command" in err
    # unknown node -> 3; no target -> 2
    code, _, _ = run(capsys, "--broker", url, "show", "ghost")
    assert code == 3
    code, _, _ = run(capsys, "--broker", url, "ping")
    assert code == 2
    code, out, _ = run(capsys, "--broker", url, "--json", "drift")
    assert code == 0 and json.loads(out) == []


def test_unreachable_broker_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nobody listens: refused at once, not after the timeout.
    code, _, err = run(capsys, "--broker", f"mqtt://127.0.0.1:{port}", "--timeout", "30", "ls")
    assert code == 3 and "refused the connection" in err
    # Something listens but never answers MQTT: the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        code, _, err = run(capsys, "--broker", f"mqtt://127.0.0.1:{port}", "--timeout", "1", "ls")
    assert code == 3 and err.startswith("devfleet: cannot reach the broker") and "within 1 s" in err
    code, _, err = run(capsys, "--broker", "mqtt://no-such-host.invalid:1883", "ls")
    assert code == 3 and "cannot resolve" in err
    code, _, err = run(capsys, "--broker", "http://x", "ls")
    assert code == 2
    for bad in ("-1", "0", "nan", "soon"):
        with pytest.raises(SystemExit) as usage:
            run(capsys, "--timeout", bad, "ls")
        assert usage.value.code == 2


def test_purge_and_offline_broadcast(mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]) -> None:
    agents.start("n1")
    gone = agents.start("n2")
    ready(mosquitto.url, "n1", "n2")
    gone.stop()
    with Fleet.connect(mosquitto.url) as fleet:
        fleet.wait_for(lambda m: m.get("n2").status == "offline", timeout=15)  # type: ignore[union-attr]
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "ping", "--all")
    assert code == 0
    summary = json.loads(out)
    assert summary["succeeded"] == ["n1"] and summary["offline"] == ["n2"]
    code, _, err = run(capsys, "--broker", mosquitto.url, "purge", "n1")
    assert code == 1 and "online" in err
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "purge", "n2")
    assert code == 0 and "nodes/n2/meta" in json.loads(out)["cleared"]
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "ls")
    assert [r["node"] for r in json.loads(out)] == ["n1"]


def test_logs_json(mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]) -> None:
    agents.start("n1")
    ready(mosquitto.url, "n1")
    # the agent logs every command it refuses; ship them by asking for a bad one
    import threading

    def poke() -> None:
        with Fleet.connect(mosquitto.url) as fleet:
            for _ in range(5):
                fleet.send("n1", "ping", ttl=-1).wait()

    t = threading.Timer(0.5, poke)
    t.start()
    code, out, _ = run(capsys, "--broker", mosquitto.url, "--json", "--timeout", "6", "logs", "n1")
    t.join()
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records and all(r["node"] == "n1" for r in records)
    assert any("expired" in r["msg"] for r in records)
