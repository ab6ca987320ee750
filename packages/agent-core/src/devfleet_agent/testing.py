"""Run real agents in tests: in a thread of their own, or as a subprocess.

Used by devfleet's own tests and available to anyone testing against real
agents (``from devfleet_agent.testing import AgentThread, AgentProcess``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .agent import Agent
from .settings import Settings

__all__ = ["AgentPool", "AgentProcess", "AgentThread", "build_wheel", "settings_for", "venv_with_agent"]


class AgentThread:
    """An :class:`Agent` running on its own event loop in a daemon thread.

    Args:
        settings: the agent's settings (give ``data_dir`` a temp path).
        attach: also attach the production subsystems (components, actors).
    """

    def __init__(self, settings: Settings, *, attach: bool = True) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.agent = Agent(settings)
        if attach:
            from .wiring import attach_subsystems

            attach_subsystems(self.agent)
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"agent-{settings.name}", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.exit_code = self.loop.run_until_complete(self.agent.run())
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> AgentThread:
        self._thread.start()
        return self

    def call(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the agent's loop."""
        self.loop.call_soon_threadsafe(fn, *args)

    def run_coro(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the agent's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask the agent to stop cleanly and wait for its thread."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.agent.request_stop, "test stop")
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"agent {self.settings.name} did not stop within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.exit_code

    def crash(self) -> None:
        """Drop the connection without DISCONNECT (the broker sends the will), then stop."""
        self.run_coro(_abort(self.agent))
        self.stop()

    def __enter__(self) -> AgentThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _abort(agent: Agent) -> None:
    agent.mqtt.abort()
    agent.request_stop("crash (test)")


class AgentProcess:
    """``python -m devfleet_agent`` as a subprocess with the given flags.

    ``python`` runs the agent with another interpreter (e.g. of a fresh venv).
    """

    def __init__(
        self,
        *,
        broker: str,
        port: int,
        name: str,
        data_dir: Path,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.name = name
        self.args = [
            python or sys.executable,
            "-m",
            "devfleet_agent",
            "--broker",
            broker,
            "--port",
            str(port),
            "--name",
            name,
            "--data-dir",
            str(data_dir),
            *extra,
        ]
        self.log_path = data_dir.parent / f"{name}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self._env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the agent publishes ``offline`` and disconnects cleanly."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    stop = terminate

    def pause(self) -> None:
        """SIGSTOP: the connection stays open but heartbeats stop (the node goes stale)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> int:
        """SIGKILL: no goodbye, the broker publishes the will after the keepalive."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait(10.0)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(Exception):
            self._log.close()


@dataclass
class AgentPool:
    """Starts real agents (subprocesses) against one test broker; :meth:`close` kills them.

    Each agent keeps its data and actor state in ``root/{name}`` and logs to
    ``root/{name}.log``; ``extra`` flags go to every agent started from this pool.
    """

    broker: Any
    root: Path
    extra: Sequence[str] = ()
    procs: list[AgentProcess] = field(default_factory=list)

    def start(self, name: str, *extra: str, env: dict[str, str] | None = None) -> AgentProcess:
        """Start agent ``name`` with the pool's flags plus ``extra``; returns it running."""
        data = self.root / name
        proc = AgentProcess(
            broker=self.broker.host,
            port=self.broker.port,
            name=name,
            data_dir=data,
            extra=["--state-dir", str(data), *self.extra, *extra],
            env={"PYTHONUNBUFFERED": "1", **(env or {})},
        ).start()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.__exit__()


def settings_for(broker: Any, name: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings pointing at a test broker (``host``/``port`` attributes)."""
    base = Settings(broker=broker.host, port=broker.port, name=name, data_dir=str(data_dir), keepalive=5)
    return replace(base, **overrides)


def _run_checked(args: Sequence[str]) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def build_wheel(source: Path, wheelhouse: Path) -> None:
    """Build the project at ``source`` into ``wheelhouse`` (no dependencies, no
    build isolation: hatchling must be installed; nothing is downloaded).

    Raises:
        RuntimeError: pip failed (its output in the message).
    """
    _run_checked(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheelhouse),
            str(source),
        ]
    )


def venv_with_agent(where: Path, repo: Path) -> Path:
    """A fresh venv at ``where`` with component-base and agent-core installed editable
    from the ``repo`` checkout, for an agent that pip-installs into its own
    environment; returns its python.

    Raises:
        RuntimeError: venv or pip failed.
    """
    _run_checked([sys.executable, "-m", "venv", str(where)])
    python = where / "bin" / "python"
    packages = repo / "packages"
    _run_checked(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "-e",
            str(packages / "component-base"),
            "-e",
            str(packages / "agent-core"),
        ]
    )
    return python
