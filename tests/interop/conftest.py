"""Fixtures for the mixed-fleet tests: real ``wactorz-node`` processes beside real devfleet agents.

The Wactorz packaged node runner comes from PyPI into the ``interop`` nox session's
own venv (a test peer, never a dependency of a package). Each node gets a HOME of
its own (its state lives under ``~/wactorz/state``) and talks to the test kit's
mosquitto on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentPool, AgentProcess

# The tests import interop_kit.py beside this file (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))


def _wactorz_node_bin() -> str:
    """The ``wactorz-node`` script beside this interpreter (the session's venv), else on PATH."""
    here = Path(sys.executable).with_name("wactorz-node")
    found = str(here) if here.exists() else shutil.which("wactorz-node")
    if not found:
        pytest.fail("wactorz-node is not installed: run these through `python3 dev.py nox -s interop`")
    return found


@dataclass
class WactorzNode:
    """One ``wactorz-node`` subprocess; ``kill()`` is kill -9, ``stop()`` a SIGTERM."""

    name: str
    broker: Any
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.home / "wactorz" / "state"

    @property
    def log(self) -> Path:
        return self.home / "node.log"

    def start(self) -> WactorzNode:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WACTORZ_", "MQTT_", "AGENTFLOW_"))}
        env.update(HOME=str(self.home), PYTHONUNBUFFERED="1", **self.env)
        argv = [_wactorz_node_bin(), "--node", self.name, "--mqtt-broker", self.broker.host]
        argv += ["--mqtt-port", str(self.broker.port), "--loglevel", "DEBUG"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=self.home, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for a failing assertion's message."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Peers:
    """Starts Wactorz nodes and devfleet agents against one broker; stops them at teardown."""

    broker: Any
    root: Path
    nodes: list[WactorzNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.agents = AgentPool(self.broker, self.root)

    def wactorz(self, name: str, **env: str) -> WactorzNode:
        node = WactorzNode(name, self.broker, self.root / name, env=env).start()
        self.nodes.append(node)
        return node

    def devfleet(self, name: str, *extra: str, env: dict[str, str] | None = None) -> AgentProcess:
        return self.agents.start(name, *extra, env=env)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self.agents.close()


@pytest.fixture
def peers(fresh_broker: Any, tmp_path: Path) -> Iterator[Peers]:
    """``peers.wactorz("wz1")`` and ``peers.devfleet("df1", "--allow-code")`` on a broker of the test's own."""
    pool = Peers(fresh_broker, tmp_path / "peers")
    try:
        yield pool
    finally:
        pool.close()
