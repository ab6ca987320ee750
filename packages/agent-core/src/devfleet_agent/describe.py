"""What a node says about itself in ``meta``: host facts gathered once at start."""

from __future__ import annotations

import platform
import socket
import sys
from typing import Any

from devfleet_base.contract import PROTOCOL_VERSION

from . import __version__

__all__ = ["host_facts"]


def _board_model() -> str | None:
    try:
        with open("/proc/device-tree/model", "rb") as fh:
            return fh.read().rstrip(b"\0").decode(errors="replace").strip() or None
    except OSError:
        return None


def host_facts() -> dict[str, Any]:
    """Host name, OS, architecture, Python and agent versions."""
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "os": f"{uname.system} {uname.release}",
        "arch": uname.machine,
        "board": _board_model(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "agent_version": __version__,
        "protocol": PROTOCOL_VERSION,
    }
