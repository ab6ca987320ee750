"""``devfleet rollout`` and ``devfleet job ...``: --json, exit codes, abort and resume,
against simulated nodes (on a loop of their own) and a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_command.cli import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sim(mosquitto: Any) -> Iterator[SimFleet]:
    """Eight simulated nodes with ``ledstrip`` 1.0, run on a thread's event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    options = FleetOptions(
        host=mosquitto.host,
        port=mosquitto.port,
        nodes=8,
        prefix="cj",
        heartbeat_interval=1.0,
        components=(("ledstrip", "1.0"),),
    )

    async def start() -> SimFleet:
        fleet = SimFleet(options)
        await fleet.start()
        await fleet.wait_connected(30)
        return fleet

    fleet = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield fleet
    finally:
        asyncio.run_coroutine_threadsafe(fleet.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rollout_ls_show_watch_json(
    mosquitto: Any, sim: SimFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    code, out, err = run(
        capsys,
        "--broker",
        url,
        "--json",
        "rollout",
        "upgrade",
        "ledstrip==1.1",
        "--all",
        "--select",
        "components.ledstrip.version<1.1",
        "--canary",
        "2",
        "--batch",
        "50%",
        "--soak",
        "0.2",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["state"] == "completed" and doc["counts"] == {"done": 8}
    assert [s["nodes"] for s in doc["stages"]] == [2, 4, 2]
    job = doc["job"]
    code, out, _ = run(capsys, "--broker", url, "--json", "job", "ls")
    assert code == 0 and [j["state"] for j in json.loads(out) if j["job"] == job] == ["completed"]
    code, out, _ = run(capsys, "--broker", url, "--json", "job", "show", job)
    shown = json.loads(out)
    assert code == 0 and len(shown["progress"]) == 8 and shown["spec"]["operation"]["verb"] == "upgrade"
    code, out, _ = run(capsys, "--broker", url, "job", "watch", job)
    assert code == 0 and "completed" in out
    code, _, err = run(capsys, "--broker", url, "job", "resume", job)
    assert code == 2 and "already ended" in err
    # Nothing left to select: refused before anything is retained.
    code, _, err = run(
        capsys,
        "--broker",
        url,
        "rollout",
        "upgrade",
        "ledstrip==1.1",
        "--select",
        "components.ledstrip.version<1.1",
    )
    assert code == 2 and "no node matches" in err


def test_abort_of_a_job_whose_console_is_gone(
    mosquitto: Any, sim: SimFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    code, out, err = run(
        capsys,
        "--broker",
        url,
        "rollout",
        "configure",
        "description=x",
        "--nodes",
        "cj-00000,cj-00001",
        "--detach",
    )
    assert code == 0, err
    job = out.strip()
    code, out, err = run(capsys, "--broker", url, "--json", "job", "abort", job)
    assert code == 1, err  # aborted
    doc = json.loads(out)
    assert doc["state"] == "aborted" and doc["counts"] == {"skipped": 2}
    assert all(n.store.config["description"] == "" for n in sim)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollout", "upgrade", "--all"], "takes one SPEC"),
        (["rollout", "upgrade", "x==1", "--select", "version<banana"], "not a version"),
        (["rollout", "upgrade", "x==1", "--all", "--canary", "-3"], "neither a node count"),
        (["rollout", "upgrade", "x==1"], "choose the nodes"),
        (["rollout", "ping", "--nodes", "nope"], "no node named nope"),
        (["job", "show", "no-such-job"], "no job no-such-job"),
        (["job", "show", "bad/id"], "job id"),
    ],
)
def test_usage_errors_exit_2(
    mosquitto: Any, sim: SimFleet, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", *argv)
    assert code == 2 and message in err, err
