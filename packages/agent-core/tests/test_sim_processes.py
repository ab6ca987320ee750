"""``devfleet-sim --processes``: the workers end with their parent, on a real broker.

SIGTERM to the parent is passed on and waited for (the workers are gone when it
exits); a killed parent's workers notice (Linux: ``PR_SET_PDEATHSIG``; anywhere:
their stdin, the parent's pipe, reaches end of file) and stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    """The parent pid and state letter of a process; None once it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]  # the name may hold ")" and spaces
    return None if state in "ZX" else (int(ppid), state)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _ppid_and_state(int(entry.name))) and info[0] == pid:
            out.append(int(entry.name))
    return out


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """Poll until every pid is gone or ``seconds`` pass; return those still running."""
    deadline = time.monotonic() + seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _ppid_and_state(p) is not None]
    return alive


def _sim(broker: Any, *extra: str, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devfleet_agent.sim.cli", "--broker", broker.url, "--nodes", "4",
         "--heartbeat-interval", "3600", "--telemetry-interval", "3600", "--json", *extra],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _statuses(probe: Any, prefix: str, status: str) -> None:
    for i in range(4):
        probe.wait_for(f"nodes/{prefix}-{i:05d}/status", lambda m: m.json()["status"] == status, timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_workers_end_with_their_parent(mqtt_broker: Any, probe: Any, sig: signal.Signals) -> None:
    prefix = f"orphan-{sig.name.lower()}-{os.getpid()}"
    # No report in the test's time: a worker must not end only because its next line
    # finds the parent's pipe broken.
    proc = _sim(mqtt_broker, "--processes", "2", "--prefix", prefix, "--report", "3600")
    workers: list[int] = []
    try:
        _statuses(probe, prefix, "online")  # both workers run their nodes
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(proc.pid, sig)
        code = proc.wait(30)
        if sig == signal.SIGTERM:
            assert code == 0
            # Passed on and waited for: no worker outlives the parent.
            assert [p for p in workers if _ppid_and_state(p) is not None] == []
        else:
            assert _gone_within(workers, 20) == []
        _statuses(probe, prefix, "offline")  # a clean stop either way, not the will ("lost")
    finally:
        for pid in [*workers, proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def test_a_worker_stops_when_its_parents_pipe_closes(mqtt_broker: Any) -> None:
    """The portable way a worker notices its parent died (no signal comes): its stdin,
    the parent's pipe, reaches end of file. Here the test is the parent."""
    proc = _sim(
        mqtt_broker,
        "--parent",
        str(os.getpid()),
        "--prefix",
        "pipe",
        "--report",
        "0.3",
        stdin=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"devfleet-sim exited ({proc.wait()}) before its first report"
        assert json.loads(line)["nodes"] == 4
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
