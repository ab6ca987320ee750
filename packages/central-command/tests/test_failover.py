"""Several brokers: the agent and the console move on to the next when theirs dies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentProcess
from devfleet_command.cli import main
from devfleet_command.sync import Fleet


def _hostport(url: str) -> str:
    return url.split("://", 1)[1]


def test_agent_and_console_fail_over_to_the_next_broker(
    broker_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two independent brokers stand in for two cluster nodes (a NATS cluster cannot
    # take new QoS 1 subscriptions while one of 3 nodes is down: docs/scaling.md).
    a, b = broker_factory(), broker_factory()
    urls = f"{a.url},{b.url}"
    data = tmp_path / "fo1"
    with AgentProcess(
        broker=urls, port=1883, name="fo1", data_dir=data, extra=["--state-dir", str(data)]
    ) as agent:
        with Fleet.connect([a.url, b.url], stale_check_interval=0.2) as fleet:
            fleet.wait_for(
                lambda m: (v := m.get("fo1")) is not None and v.online and v.broker == _hostport(a.url),
                timeout=30,
            )
            killed_at = time.monotonic()
            a.kill()
            fleet.wait_for(
                lambda m: (
                    (v := m.get("fo1")) is not None
                    and v.online
                    and v.broker == _hostport(b.url)
                    and (v.meta or {}).get("broker") == _hostport(b.url)
                ),  # re-birthed there
                timeout=30,
            )
            moved = time.monotonic() - killed_at
            assert fleet.aio.mqtt.broker == _hostport(b.url)  # the console moved too
            assert fleet.call("fo1", "ping", timeout=15)["pong"] is True
        assert "lost; reconnecting to " + _hostport(b.url) in agent.output()
    capsys.readouterr()
    code = main(["--broker", a.url, "--broker", b.url, "--json", "ls"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and rows[0]["node"] == "fo1" and rows[0]["broker"] == _hostport(b.url)
    with capsys.disabled():
        print(f"\nbroker killed: the node is online on the next broker after {moved:.2f} s")
