"""Fixtures for the console tests: the test kit's private mosquitto and real agents.

Agents run as subprocesses (``python -m devfleet_agent``) so a test can
kill -9 or SIGSTOP them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentProcess


@pytest.fixture
def mosquitto(fresh_broker: Any) -> Any:
    """A mosquitto of this test's own (the test kit's ``fresh_broker``)."""
    return fresh_broker


@dataclass
class Agents:
    """Starts real agents (subprocesses) against one broker; kills them at teardown."""

    broker: Any
    root: Path
    procs: list[AgentProcess] = field(default_factory=list)

    def start(self, name: str, *extra: str) -> AgentProcess:
        data = self.root / name
        proc = AgentProcess(
            broker=self.broker.host,
            port=self.broker.port,
            name=name,
            data_dir=data,
            extra=["--state-dir", str(data), *extra],
            env={"PYTHONUNBUFFERED": "1"},
        ).start()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.__exit__()


@pytest.fixture
def agents(mosquitto: Any, tmp_path: Path) -> Iterator[Agents]:
    """Start agents with ``agents.start("n1")``; all are killed at teardown."""
    pool = Agents(mosquitto, tmp_path / "agents")
    try:
        yield pool
    finally:
        pool.close()
