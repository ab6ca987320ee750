"""The console tour (`python3 dev.py tour`), end to end: on mosquitto and on the embedded broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devfleet_base.testing.broker import amqtt_available

DEMO = Path(__file__).resolve().parents[1] / "devfleet_demo.py"


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_demo_runs_end_to_end(kind):
    if kind == "amqtt" and not amqtt_available():
        pytest.fail("amqtt must be installed: the demo falls back to it when mosquitto is missing")
    r = subprocess.run(
        [sys.executable, str(DEMO), "--nodes", "2", "--duration", "1", "--broker-kind", kind],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"broker: {'mosquitto' if kind == 'mosquitto' else 'embedded'}" in out
    assert "succeeded: demo-1, demo-2" in out
    assert "config version 0 -> 1" in out
    assert "answered: demo-1" in out
    assert "ledstrip running, effect rainbow" in out
    assert "greeter answered: {'greeting': 'hello operator from demo-2'}" in out
    assert out.count("offline") >= 2
