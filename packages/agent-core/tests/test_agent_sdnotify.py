"""systemd's notify protocol, against a fake NOTIFY_SOCKET, with a real agent process and broker.

The fake is what systemd does: a unix datagram socket with ``SO_PASSCRED``, so
every datagram carries the sender's pid (systemd uses it for ``NotifyAccess=main``).
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.agent import EXIT_CONFIG
from devfleet_agent.sdnotify import SdNotifier
from devfleet_agent.testing import AgentProcess
from devfleet_base import contract

WATCHDOG_USEC = 600_000  # WatchdogSec=0.6: the agent pings every 0.3 s

BLOCKER = (
    "import time\n"
    "async def setup(agent):\n"
    "    agent.state['slept'] = False\n"
    "async def process(agent):\n"
    "    if not agent.state['slept']:\n"
    "        agent.state['slept'] = True\n"
    "        time.sleep(3)  # a hung event loop: nothing else runs meanwhile\n"
    "        await agent.publish(f'nodes/{agent.node}/test/unblocked', {'t': time.time()})\n"
)


@dataclass(frozen=True)
class Datagram:
    at: float
    pid: int
    lines: tuple[str, ...]


class FakeNotifySocket:
    """Receives notify datagrams on ``address`` (``@name``: abstract namespace) with their pid."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.received: list[Datagram] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("iII", cdata[:12])
            with self._cond:
                self.received.append(Datagram(time.monotonic(), pid, tuple(data.decode().split("\n"))))
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Datagram], bool], timeout: float = 15.0, since: int = 0
    ) -> Datagram:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for d in self.received[since:]:
                    if predicate(d):
                        return d
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no such datagram within {timeout} s; got {self.received[since:][-10:]}"
                    )
                self._cond.wait(remaining)

    def mark(self) -> int:
        with self._cond:
            return len(self.received)

    def watchdogs(self, since: int = 0) -> list[Datagram]:
        with self._cond:
            return [d for d in self.received[since:] if "WATCHDOG=1" in d.lines]

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[FakeNotifySocket]:
    fake = FakeNotifySocket(f"@devfleet-test-notify-{os.getpid()}-{time.monotonic_ns()}")
    yield fake
    fake.close()


def _has(line: str) -> Callable[[Datagram], bool]:
    return lambda d: line in d.lines


def _agent(broker: Any, tmp_path: Path, name: str, env: dict[str, str], *extra: str) -> AgentProcess:
    return AgentProcess(
        broker=broker.host,
        port=broker.port,
        name=name,
        data_dir=tmp_path / name,
        extra=("--keepalive", "5", *extra),
        env=env,
    )


def test_ready_after_birth_watchdog_while_healthy_none_while_blocked_stopping_on_sigterm(
    mqtt_broker: Any, probe: Any, notify_socket: FakeNotifySocket, tmp_path: Path
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with _agent(mqtt_broker, tmp_path, "sd1", env, "--allow-code") as agent:
        ready = notify_socket.wait_for(_has("READY=1"))
        assert ready.pid == agent.pid
        # READY=1 means the birth reached the broker: it is retained there now.
        assert probe.retained("nodes/sd1/status")["nodes/sd1/status"].json()["status"] == "online"
        status = next(line for line in ready.lines if line.startswith("STATUS="))
        assert f"connected to 127.0.0.1:{mqtt_broker.port}" in status and "components:" in status

        # Healthy: WATCHDOG=1 at about half the interval, from the agent's own pid.
        mark = notify_socket.mark()
        notify_socket.wait_for(lambda d: len(notify_socket.watchdogs(mark)) >= 4, since=mark)
        beats = notify_socket.watchdogs(mark)
        assert {d.pid for d in beats} == {agent.pid}
        assert max(b.at - a.at for a, b in itertools.pairwise(beats)) < 0.6

        # A blocked event loop sends nothing (systemd would restart it), then resumes.
        probe.subscribe("nodes/sd1/test/unblocked")
        probe.publish("nodes/sd1/spawn", {"name": "blocker", "code": BLOCKER, "poll_interval": 0.1})
        probe.wait_for("nodes/sd1/test/unblocked", timeout=15)
        after = notify_socket.mark()
        notify_socket.wait_for(_has("WATCHDOG=1"), since=after)
        # (All of them: the last beat before the block may precede the spawn.)
        beats = notify_socket.watchdogs()
        assert max(b.at - a.at for a, b in itertools.pairwise(beats)) > 2.5

        # SIGTERM: STOPPING=1, then a clean exit.
        mark = notify_socket.mark()
        assert agent.terminate() == 0
        stopping = notify_socket.wait_for(_has("STOPPING=1"), since=mark, timeout=5)
        assert stopping.pid == agent.pid


def test_no_watchdog_without_watchdog_usec_and_none_for_another_pid(
    mqtt_broker: Any, probe: Any, notify_socket: FakeNotifySocket, tmp_path: Path
) -> None:
    # WATCHDOG_PID names another process (the variables were inherited): no pings.
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": "1"}
    with _agent(mqtt_broker, tmp_path, "sd2", env) as agent:
        ready = notify_socket.wait_for(_has("READY=1"))
        # Pings answered over 1.5 s (5 watchdog ticks): the loop runs, yet no WATCHDOG=1.
        probe.subscribe("nodes/sd2/receipts")
        while time.monotonic() - ready.at < 1.5:
            mark = probe.mark()
            cmd = contract.Command.envelope({}, ttl=10)
            probe.publish("nodes/sd2/cmd/ping", cmd)
            probe.wait_for("nodes/sd2/receipts", lambda m: m.json()["status"] == "ok", since=mark)
        mark = notify_socket.mark()
        assert agent.terminate() == 0
        notify_socket.wait_for(_has("STOPPING=1"), since=mark, timeout=5)
        assert notify_socket.watchdogs() == []


def test_bad_certificate_exits_77_and_names_the_problem(
    mqtt_broker_tls: Any, notify_socket: FakeNotifySocket, tmp_path: Path
) -> None:
    from devfleet_base.testing import TlsFiles

    other = TlsFiles(tmp_path / "other-ca")  # a CA that did not sign the broker's certificate
    env = {"NOTIFY_SOCKET": notify_socket.address}
    agent = _agent(mqtt_broker_tls, tmp_path, "sd3", env, "--tls-ca", str(other.ca_path))
    with agent:
        assert agent.wait(30) == EXIT_CONFIG
    out = agent.output()
    assert "wrong CA?" in out and str(other.ca_path) in out and "not retrying" in out
    assert "cannot reach broker" not in out
    assert not [d for d in notify_socket.received if "READY=1" in d.lines]


def test_notifier_sends_to_a_path_and_reads_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    fake = FakeNotifySocket(str(path))
    try:
        notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"}, pid=42)
        assert notifier.watchdog_interval == 30.0
        assert notifier.notify("READY=1", "STATUS=two\nlines")
        d = fake.wait_for(_has("READY=1"), timeout=5)
        assert d.lines == ("READY=1", "STATUS=two lines") and d.pid == os.getpid()
        notifier.close()
    finally:
        fake.close()
    assert (
        SdNotifier.from_environ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=42).watchdog_interval
        is None
    )
    assert SdNotifier.from_environ({"WATCHDOG_USEC": "x"}).watchdog_interval is None
    assert not SdNotifier.from_environ({}).notify("READY=1")
    # A socket that went away is not an error for the agent.
    assert not SdNotifier(str(tmp_path / "gone")).notify("WATCHDOG=1")


def test_session_health_for_the_watchdog(tmp_path: Path) -> None:
    """Connected, or trying within the watchdog interval, is healthy; a session with no
    connection attempt for longer than the interval is wedged (no WATCHDOG=1)."""
    from devfleet_agent.agent import Agent
    from devfleet_agent.settings import Settings

    agent = Agent(Settings(name="sdh", data_dir=str(tmp_path)), notifier=SdNotifier("@unused", 30.0))
    assert not agent.mqtt.connected
    agent.mqtt.last_activity = time.monotonic() - 5
    assert agent.session_healthy()
    agent.mqtt.last_activity = time.monotonic() - 31
    assert not agent.session_healthy()
    assert agent.service_status() == "connecting to localhost:1883; components: none"


def test_restart_command_reexecutes_without_stopping(
    mqtt_broker: Any, probe: Any, notify_socket: FakeNotifySocket, tmp_path: Path
) -> None:
    """``restart`` re-executes in place (same pid): no STOPPING=1, then READY=1 again."""
    env = {"NOTIFY_SOCKET": notify_socket.address}
    with _agent(mqtt_broker, tmp_path, "sd4", env) as agent:
        notify_socket.wait_for(_has("READY=1"))
        mark = notify_socket.mark()
        probe.publish("nodes/sd4/cmd/restart", contract.Command.envelope({}, ttl=10))
        notify_socket.wait_for(_has("STATUS=re-executing (restart command)"), since=mark)
        again = notify_socket.wait_for(_has("READY=1"), since=mark)
        assert again.pid == agent.pid
        assert not [d for d in notify_socket.received[mark:] if "STOPPING=1" in d.lines]
        assert agent.terminate() == 0
