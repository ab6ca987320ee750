"""An idle agent imports only what it uses (issue 20: the agent must fit a Pi Zero).

The agent runs as a user runs it (``python -m devfleet_agent`` on the test broker)
with Python's own import log switched on (``PYTHONPROFILEIMPORTTIME``: one stderr
line per module as it is imported, nothing added to the agent). After its birth
and a heartbeat it is killed (SIGKILL: no shutdown path imports anything) and the
log must not name a module that only an install, a signing identity or an actor's
code needs. Add an eager import of one of them back and this test fails.
"""

from __future__ import annotations

import re

from devfleet_agent.testing import AgentProcess

# Imported on first use only; each is a measurable share of the idle RSS.
HEAVY_AT_IDLE = (
    "packaging",  # requirement parsing: install/upgrade commands and spawn requirements
    "cryptography",  # signing: only with a signing identity or a signed message
    "devfleet_base.payload_schemas",  # the wire's JSON schemas: the console's and the tests' reader
)

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)\s*$", re.MULTILINE)


def _imported(log: str) -> set[str]:
    return {m.group(2) for m in _IMPORT_LINE.finditer(log)}


def test_an_idle_agent_has_not_imported_what_it_does_not_use(mqtt_broker, probe, tmp_path):
    proc = AgentProcess(
        broker=mqtt_broker.host,
        port=mqtt_broker.port,
        name="idle1",
        data_dir=tmp_path / "idle1",
        extra=["--loglevel", "WARNING"],
        env={"PYTHONPROFILEIMPORTTIME": "1", "PYTHONUNBUFFERED": "1"},
    ).start()
    with proc:
        probe.wait_for("nodes/idle1/status", lambda m: m.json()["status"] == "online", timeout=20)
        probe.wait_for("nodes/idle1/heartbeat", timeout=30)
        proc.kill()
    imported = _imported(proc.output())
    assert "devfleet_agent.agent" in imported, "the import log was not captured"
    loaded = sorted(m for m in imported for heavy in HEAVY_AT_IDLE if m == heavy or m.startswith(heavy + "."))
    assert loaded == [], f"an idle agent imported {loaded}"
