"""Dynamic actors from the console (library and CLI) against real agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devfleet_command.cli import main
from devfleet_command.errors import CommandFailed, InvalidSpec
from devfleet_command.sync import Fleet

COUNTER = """
async def setup(agent):
    agent.state['n'] = agent.recall('n', 0)

async def process(agent):
    agent.state['n'] += 1
    agent.persist('n', agent.state['n'])

async def handle_task(agent, payload):
    return {'n': agent.recall('n', 0), 'node': agent.node, 'echo': payload}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _online(fleet: Fleet, *names: str) -> None:
    fleet.wait_for(lambda m: all(n in m and m.get(n).online for n in names), timeout=20)


def test_spawn_task_migrate_stop_through_the_cli(
    mosquitto: Any, agents: Any, capsys: Any, tmp_path: Path
) -> None:
    agents.start("act-a", "--allow-code")
    agents.start("act-b", "--allow-code")
    url = mosquitto.url
    with Fleet.connect(url) as fleet:
        _online(fleet, "act-a", "act-b")
    spec = tmp_path / "counter.json"
    spec.write_text(json.dumps({"name": "counter", "code": COUNTER, "poll_interval": 0.05}))
    code, out, err = run(capsys, "--broker", url, "spawn", "act-a", str(spec))
    assert code == 0, err
    assert "spawned counter" in out
    with Fleet.connect(url) as fleet:
        fleet.wait_for(lambda m: "counter" in ((m.get("act-a").state or {}).get("actors") or {}), timeout=10)
        first = fleet.task("counter", {"hello": 1})
        assert first["node"] == "act-a" and first["echo"] == {"hello": 1}
    code, out, _ = run(capsys, "--broker", url, "--json", "actors")
    rows = json.loads(out)
    assert [(r["node"], r["name"], r["state"]) for r in rows] == [("act-a", "counter", "running")]
    code, out, err = run(capsys, "--broker", url, "migrate", "counter", "--to", "act-b")
    assert code == 0, err
    assert "from act-a to act-b" in out
    code, out, _ = run(capsys, "--broker", url, "--json", "task", "counter", '"x"')
    answer = json.loads(out)
    assert answer["node"] == "act-b" and answer["n"] >= first["n"]  # the count moved with the actor
    code, out, _ = run(capsys, "--broker", url, "stop", "act-b", "counter")
    assert code == 0 and "stopped counter" in out
    code, _, err = run(capsys, "--broker", url, "stop", "act-b", "counter")
    assert code == 1 and "not_found" in err


def test_spawn_refusals(mosquitto: Any, agents: Any, capsys: Any, tmp_path: Path) -> None:
    agents.start("act-nocode")
    url = mosquitto.url
    code_file = tmp_path / "a.py"
    code_file.write_text(COUNTER)
    with Fleet.connect(url) as fleet:
        _online(fleet, "act-nocode")
        with pytest.raises(CommandFailed) as refused:
            fleet.spawn("act-nocode", {"name": "x", "code": COUNTER})
        assert refused.value.code == "forbidden"
        with pytest.raises(InvalidSpec):
            fleet.spawn("act-nocode", {"name": "bad/name", "code": COUNTER})
    code, _, err = run(
        capsys, "--broker", url, "spawn", "act-nocode", "--name", "x", "--code", str(code_file)
    )
    assert code == 1 and "forbidden" in err
    code, _, err = run(capsys, "--broker", url, "spawn", "act-nocode", "--code", str(code_file))
    assert code == 2 and "--name" in err
    code, _, err = run(capsys, "--broker", url, "task", "nobody-home", "{}", "--timeout", "1")
    assert code == 3


def test_signed_spawn(mosquitto: Any, agents: Any, capsys: Any, tmp_path: Path) -> None:
    from devfleet_base.signing import Identity

    operator = Identity.generate("console-cli")
    key = operator.save(tmp_path / "console.json")
    node_key = operator.issue_node("act-signed").save(tmp_path / "node.json")
    agents.start("act-signed", "--allow-code", "--signing-key-file", str(node_key))
    url = mosquitto.url
    code_file = tmp_path / "a.py"
    code_file.write_text(COUNTER)
    with Fleet.connect(url) as fleet:
        _online(fleet, "act-signed")
    args = ("spawn", "act-signed", "--name", "c1", "--code", str(code_file))
    code, _, err = run(capsys, "--broker", url, *args)
    assert code == 1 and "bad_signature" in err
    code, out, err = run(capsys, "--broker", url, "--signing-key-file", str(key), *args)
    assert "spawned c1" in out
    assert code == 0, err
