"""The runner's command line (what ``python3 dev.py demo`` runs): it ends by itself, prints
the summary and the picture's path, leaves no process behind, and refuses bad options in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

CLI = [sys.executable, "-m", "devfleet_foraging"]


def _session_members(sid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


@pytest.mark.timeout(120)
def test_a_short_headless_run_ends_by_itself_and_leaves_nothing_running(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "--robots", "2", "--duration", "5", "--no-kill", "--headless", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # every process it starts shares this session id
    )
    out, err = proc.communicate(timeout=110)
    assert proc.returncode == 0, out + err
    assert "foraging: 2 robots, 5 s of foraging" in out and "Ctrl-C stops it" in out
    assert "web view: http://127.0.0.1:" in out and "/#/map" in out  # its address, at the start
    assert "items collected" in out and f"picture           {tmp_path / 'arena.png'}" in out
    assert (tmp_path / "arena.png").stat().st_size > 1000 and (tmp_path / "summary.json").exists()
    assert "Traceback" not in err
    assert _session_members(proc.pid) == []  # broker, agents: all gone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--robots", "0"], "--robots must be between 1 and 20"),
        (["--duration", "1"], "--duration must be between 5 and 3600"),
        (["--seed", "-1"], "--seed must be between 0"),
        (["--speed", "50"], "--speed must be between 0.1 and 10"),
    ],
)
def test_bad_options_are_refused_in_one_line(args: list[str], message: str) -> None:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
