"""An idle agent imports only what it uses (issue 20: the agent must fit a Pi Zero).

The agent runs as a user runs it (``python -m devfleet_agent`` on the test broker)
with Python's own import log switched on (``PYTHONPROFILEIMPORTTIME``: one stderr
line per module as it is imported, nothing added to the agent). After its birth
and a heartbeat it is killed (SIGKILL: no shutdown path imports anything) and the
log must not name a module that only an install, a signing identity or an actor's
code needs. Add an eager import of one of them back and these tests fail.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from devfleet_agent.testing import AgentProcess

# Imported on first use only; each is a measurable share of the idle RSS.
HEAVY_AT_IDLE = (
    "packaging",  # requirement parsing: install/upgrade commands and spawn requirements
    "cryptography",  # signing: only with a signing identity or a signed message
    "devfleet_base.payload_schemas",  # the wire's JSON schemas: the console's and the tests' reader
    "tomllib",  # the config file: this agent runs from flags
)
# On a node with no component installed, component discovery needs no importlib.metadata.
HEAVY_WITHOUT_COMPONENTS = (*HEAVY_AT_IDLE, "importlib.metadata")

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)\s*$", re.MULTILINE)


def _idle_imports(broker, probe, tmp_path: Path, name: str, *, env=None, python=None) -> set[str]:
    """Modules a started agent imported up to its birth and first heartbeat."""
    proc = AgentProcess(
        broker=broker.host,
        port=broker.port,
        name=name,
        data_dir=tmp_path / name,
        extra=["--loglevel", "WARNING"],
        env={"PYTHONPROFILEIMPORTTIME": "1", "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    if python is not None:
        proc.args[:1] = python
    with proc.start():
        probe.wait_for(f"nodes/{name}/status", lambda m: m.json()["status"] == "online", timeout=20)
        probe.wait_for(f"nodes/{name}/heartbeat", timeout=30)
        proc.kill()
    imported = {m.group(2) for m in _IMPORT_LINE.finditer(proc.output())}
    assert "devfleet_agent.agent" in imported, f"the import log was not captured: {proc.output()[-500:]}"
    return imported


def _among(imported: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported for h in heavy if m == h or m.startswith(h + "."))


def test_an_idle_agent_has_not_imported_what_it_does_not_use(mqtt_broker, probe, tmp_path):
    imported = _idle_imports(mqtt_broker, probe, tmp_path, "idle1")
    assert _among(imported, HEAVY_AT_IDLE) == []


def test_an_agent_without_components_does_not_import_importlib_metadata(mqtt_broker, probe, tmp_path):
    # A node with the agent and its dependencies only: no site-packages (-S), so none
    # of the component distributions installed in this test environment is seen.
    bare = tmp_path / "site"
    bare.mkdir()
    for package in ("devfleet_agent", "devfleet_base", "paho", "psutil", "pluggy", "packaging"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        (bare / package).symlink_to(next(iter(spec.submodule_search_locations)), target_is_directory=True)
    imported = _idle_imports(
        mqtt_broker, probe, tmp_path, "idle2", env={"PYTHONPATH": str(bare)}, python=[sys.executable, "-S"]
    )
    assert "psutil" in imported and "pluggy" in imported  # it ran, with its own dependencies
    assert _among(imported, HEAVY_WITHOUT_COMPONENTS) == []
