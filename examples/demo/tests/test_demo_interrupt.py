"""The tour script on a terminal: it says how long the live view lasts and how to
stop it, and Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it)
ends it cleanly, without a traceback."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "devfleet_demo.py"


def _read(fd: int, text: str, until: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while until not in text and (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child side closed
            break
        if not chunk:
            break
        text += chunk.decode("utf-8", "replace")
    return text


def test_ctrl_c_in_the_live_view_ends_the_tour_cleanly() -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--nodes", "1", "--duration", "300"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # its own group: the Ctrl-C below reaches only the tour
    )
    os.close(slave)
    try:
        text = _read(master, "", "Ctrl-C ends it early", 120)
        assert "the live fleet view for 300 s (devfleet watch); Ctrl-C ends it early" in text, text
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
        text = _read(master, text, "never", 2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)
    assert code == 130, text[-2000:]
    assert "Traceback" not in text, text[-4000:]
    assert "interrupted." in text
