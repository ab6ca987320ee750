"""Fixtures for the console tests: the test kit's private mosquitto and real agents.

Agents run as subprocesses (``python -m devfleet_agent``) so a test can
kill -9 or SIGSTOP them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentPool


@pytest.fixture
def mosquitto(fresh_broker: Any) -> Any:
    """A mosquitto of this test's own (the test kit's ``fresh_broker``)."""
    return fresh_broker


@pytest.fixture
def agents(mosquitto: Any, tmp_path: Path) -> Iterator[AgentPool]:
    """Start agents with ``agents.start("n1")``; all are killed at teardown."""
    pool = AgentPool(mosquitto, tmp_path / "agents")
    try:
        yield pool
    finally:
        pool.close()
