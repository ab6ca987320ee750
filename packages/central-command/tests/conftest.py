"""Fixtures for the console tests: a private mosquitto and real agents.

Minimal on purpose: the shared test kit in component-base will provide broker
fixtures; until it lands these start ``mosquitto`` on a free loopback port and
run agents as subprocesses (``python -m devfleet_agent``), so a test can kill -9
or SIGSTOP them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)  # polling a port with a deadline, not waiting for an outcome
    raise RuntimeError(f"mosquitto did not listen on {port}")


@dataclass
class Broker:
    """A private mosquitto."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto of this test's own on a free loopback port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        pytest.skip("mosquitto is not installed")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n"
        "max_queued_messages 100000\n"
    )
    proc = subprocess.Popen(
        [exe, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "mosquitto.log", "wb"),  # noqa: SIM115 - the child owns it
    )
    try:
        _wait_port(port, proc, time.monotonic() + 10)
        yield Broker("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class AgentProc:
    """One agent subprocess."""

    name: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM: a clean stop (the agent publishes ``offline``)."""
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the broker publishes the will (``lost``)."""
        self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the connection stays open but heartbeats stop."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@dataclass
class Agents:
    """Starts real agents (subprocesses) against one broker; stops them at teardown."""

    broker: Broker
    root: Path
    procs: list[AgentProc] = field(default_factory=list)

    def start(self, name: str, *extra: str) -> AgentProc:
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devfleet_agent",
                "--broker",
                self.broker.host,
                "--port",
                str(self.broker.port),
                "--name",
                name,
                "--data-dir",
                str(data),
                "--state-dir",
                str(data),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115 - the child owns it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        agent = AgentProc(name, proc, data, log)
        self.procs.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.procs:
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGCONT)
                agent.proc.kill()
                agent.proc.wait(10)


@pytest.fixture
def agents(mosquitto: Broker, tmp_path: Path) -> Iterator[Agents]:
    """Start agents with ``agents.start("n1")``; all are killed at teardown."""
    pool = Agents(mosquitto, tmp_path / "agents")
    try:
        yield pool
    finally:
        pool.close()
