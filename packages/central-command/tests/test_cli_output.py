"""What the CLI prints, against a real broker and real agents: JSON an operator can
paste back (never a Python repr), round-trip times, dates, whole lines for a pipe,
messages that name the flag to use, and Ctrl-C that ends cleanly with what it has."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from devfleet_command.cli import main
from devfleet_command.sync import Fleet

DEVFLEET = [sys.executable, "-c", "import sys; from devfleet_command.cli import main; sys.exit(main())"]
ISO_DATE = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"')


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ready(url: str, *names: str) -> None:
    with Fleet.connect(url) as fleet:
        fleet.wait_for(
            # A heartbeat too: a one-shot console judges a node with none (only a retained
            # birth) by waiting an interval for one, and a paused agent would fail that.
            lambda m: all(
                (n := m.get(x)) is not None and n.online and n.cfg is not None and n.heartbeat_at is not None
                for x in names
            ),
            timeout=20,
        )


def read_until(stream: IO[str], predicate: Any, timeout: float = 20.0) -> list[str]:
    """Lines from a subprocess pipe until ``predicate(line)``; fails after ``timeout``."""
    import selectors

    lines: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(deadline - time.monotonic()):
            break
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if predicate(line):
            return lines
    raise AssertionError(f"no matching line within {timeout} s; got {lines!r}")


def read_pty_until(fd: int, predicate: Any, timeout: float = 20.0, must: bool = True) -> str:
    """Text from a pty master until ``predicate(text so far)``."""
    import select

    text = ""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        text += chunk.decode("utf-8", "replace")
        if predicate(text):
            return text
    if must:
        raise AssertionError(f"not seen within {timeout} s: {text!r}")
    return text


def test_answers_are_json_with_round_trip_and_dates(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    agents.start("n1")
    ready(mosquitto.url, "n1")
    url = mosquitto.url
    code, out, _ = run(capsys, "--broker", url, "ping", "n1")
    m = re.fullmatch(r"n1: ok in (\d+\.\d) ms (\{.*\})\n", out)
    assert code == 0 and m, out
    assert json.loads(m.group(2))["pong"] is True
    code, out, _ = run(capsys, "--broker", url, "--json", "ping", "n1")
    assert code == 0 and json.loads(out)["rtt_ms"] >= 0
    code, out, _ = run(capsys, "--broker", url, "ping", "--all")
    assert code == 0 and re.search(r"^n1: ok in \d+\.\d ms$", out, re.M), out
    # cmd prints the node's answer as JSON that parses back
    code, out, _ = run(capsys, "--broker", url, "cmd", "n1", "config_get")
    assert code == 0 and "'" not in out and json.loads(out)["config_version"] == 0
    # config get: JSON, pasteable back into config set
    code, out, _ = run(capsys, "--broker", url, "config", "get", "n1")
    header, _, body = out.partition("\n")
    assert code == 0 and header == "config version 0 (kept: none)", header
    config = json.loads(body)
    groups = json.dumps(config["groups"])  # what an operator copies
    code, out, err = run(capsys, "--broker", url, "config", "set", "n1", f"groups={groups}", "description=42")
    assert code == 0, err
    code, out, _ = run(capsys, "--broker", url, "--json", "config", "get", "n1")
    assert json.loads(out)["config"]["description"] == "42"
    # show: times as dates, sections as JSON
    code, out, _ = run(capsys, "--broker", url, "show", "n1")
    assert code == 0 and "\nmeta:\n{" in out and "\ncfg:\n{" in out
    cfg = json.loads(out.split("\ncfg:\n", 1)[1].split("\n}\n", 1)[0] + "\n}")
    assert ISO_DATE.fullmatch(json.dumps(cfg["ts"])), cfg
    assert not re.search(r'"(ts|\w+_at)": 1\d{9}', out), "an epoch number left in show"


def test_a_pipe_gets_whole_lines(mosquitto: Any, agents: Any) -> None:
    name = "a-node-with-a-name-long-enough-that-80-columns-would-wrap"
    agents.start(name)
    ready(mosquitto.url, name)
    env = {**os.environ, "COLUMNS": "", "DEVFLEET_BROKER": mosquitto.url}
    proc = subprocess.run([*DEVFLEET, "ls"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert len(rows) == 2 and rows[1].startswith(name) and "online" in rows[1], rows
    assert len(rows[1]) > 80


def test_messages_name_the_flag(
    mosquitto: Any, agents: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: Any
) -> None:
    from devfleet_base.signing import Identity

    operator = Identity.generate("op-cli")
    key = operator.save(tmp_path / "console.json")
    agents.start(
        "signed", "--signing-key-file", str(operator.issue_node("signed").save(tmp_path / "node.json"))
    )
    ready(mosquitto.url, "signed")
    url = mosquitto.url
    code, _, err = run(capsys, "--broker", url, "config", "set", "signed", "description=x")
    assert code == 1 and "bad_signature" in err and "--signing-key-file" in err, err
    code, out, _ = run(capsys, "--broker", url, "restart", "--all")
    assert code == 1 and "signed: error" in out and "--signing-key-file" in out, out
    # the key from the environment
    monkeypatch.setenv("DEVFLEET_SIGNING_KEY_FILE", str(key))
    code, out, err = run(capsys, "--broker", url, "config", "set", "signed", "description=x")
    assert code == 0 and "config version 1" in out, err
    # purge of an online node says how to force it
    code, _, err = run(capsys, "--broker", url, "purge", "signed")
    assert code == 1 and "devfleet purge signed --force" in err, err


def test_tls_ca_and_profile_from_the_environment(
    mqtt_broker_tls: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: Any
) -> None:
    url = mqtt_broker_tls.url
    monkeypatch.setenv("DEVFLEET_CONSOLE_CONFIG", str(tmp_path / "none.toml"))
    code, _, err = run(capsys, "--broker", url, "--timeout", "5", "ls")
    assert code == 3, err  # an unknown CA: refused
    monkeypatch.setenv("DEVFLEET_TLS_CA", str(mqtt_broker_tls.ca_path))
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert code == 0 and isinstance(json.loads(out), list), err  # (a shared broker: others' nodes too)
    monkeypatch.delenv("DEVFLEET_TLS_CA")
    cfg = tmp_path / "console.toml"
    cfg.write_text(f'[tls-lab]\nbroker = "{url}"\ntls_ca = "{mqtt_broker_tls.ca_path}"\n')
    monkeypatch.setenv("DEVFLEET_CONSOLE_CONFIG", str(cfg))
    code, out, err = run(capsys, "--profile", "tls-lab", "--json", "ls")
    assert code == 0 and isinstance(json.loads(out), list), err


def test_ctrl_c_during_a_broadcast_prints_the_summary_so_far(mosquitto: Any, agents: Any) -> None:
    agents.start("fast")
    frozen = agents.start("frozen")
    ready(mosquitto.url, "fast", "frozen")
    frozen.pause()  # still "online" to the console: it is waited on, and never answers
    env = {**os.environ, "DEVFLEET_BROKER": mosquitto.url}
    import pty

    master, slave = pty.openpty()  # stderr on a terminal: the progress bar is drawn
    proc = subprocess.Popen(
        [*DEVFLEET, "ping", "--all", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        env=env,
    )
    os.close(slave)
    try:
        progress = read_pty_until(master, lambda text: "ok 1 failed 0" in text)
        assert "ping fleet" in progress
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        err = read_pty_until(master, lambda text: False, timeout=0.5, must=False)
    finally:
        frozen.resume()
        proc.kill()
        os.close(master)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert re.search(r"^fast: ok in \d+\.\d ms$", out, re.M), out
    assert "frozen: pending" in out
    assert "1 ok, 0 failed, 0 timed out, 0 offline, 1 still pending (interrupted)" in out


def test_watch_json_streams_lines_and_the_first_ctrl_c_ends_it(mosquitto: Any, agents: Any) -> None:
    agents.start("w1")
    ready(mosquitto.url, "w1")
    env = {**os.environ, "DEVFLEET_BROKER": mosquitto.url}
    proc = subprocess.Popen(
        [*DEVFLEET, "watch", "--json", "--refresh", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = read_until(proc.stdout, lambda line: True)  # type: ignore[arg-type]
        snapshot = json.loads(first[0])
        assert [n["node"] for n in snapshot["nodes"]] == ["w1"] and snapshot["ts"] > 0
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert time.monotonic() - started < 5  # the first Ctrl-C, not a second one
    assert proc.returncode == 0 and "Traceback" not in err, err  # Ctrl-C is how watch ends
    for line in out.splitlines():  # whatever came after is JSON Lines too
        json.loads(line)
