from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentProcess, AgentThread, settings_for
from devfleet_base.signing import Identity


@pytest.fixture(scope="session")
def operator() -> Identity:
    """The operator (console) identity of a signed test fleet."""
    return Identity.generate("console-test")


@pytest.fixture
def provision(operator: Identity, tmp_path: Path) -> Callable[[str], str]:
    """``provision(node)``: a node identity certified by :func:`operator`; its file path."""

    def make(node: str) -> str:
        return str(operator.issue_node(node).save(tmp_path / "keys" / f"{node}.json"))

    return make


@pytest.fixture
def agent_factory(mqtt_broker: Any, tmp_path: Path) -> Iterator[Callable[..., AgentThread]]:
    """Start in-process agents on the session broker; stopped after the test."""
    made: list[AgentThread] = []

    def make(name: str, *, broker: Any = None, **overrides: Any) -> AgentThread:
        overrides.setdefault("state_dir", str(tmp_path / name / "actors"))
        settings = settings_for(broker or mqtt_broker, name, tmp_path / name, **overrides)
        agent = AgentThread(settings).start()
        made.append(agent)
        return agent

    yield make
    for agent in reversed(made):
        agent.stop()


@pytest.fixture
def process_factory(mqtt_broker: Any, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents as subprocesses; killed after the test if still running."""
    made: list[AgentProcess] = []

    def make(name: str, *, broker: Any = None, extra: tuple[str, ...] = ("--keepalive", "5")) -> AgentProcess:
        b = broker or mqtt_broker
        proc = AgentProcess(
            broker=b.host, port=b.port, name=name, data_dir=tmp_path / name, extra=extra
        ).start()
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.__exit__()
