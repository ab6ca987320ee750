"""``--loglevel DEBUG`` start-up checks (seed 001, "Verbose diagnostics").

Printed straight to stderr so they show even if logging is misconfigured.
"""

from __future__ import annotations

import importlib.util
import socket
import sys

from .settings import Settings

__all__ = ["startup_checks"]

_DEPENDENCIES = ("paho.mqtt", "psutil", "pluggy", "devfleet_base")


def _say(line: str) -> None:
    print(f"[diag] {line}", file=sys.stderr, flush=True)


def startup_checks(settings: Settings) -> bool:
    """Report dependencies and whether the broker is TCP-reachable (5 s timeout)."""
    ok = True
    for name in _DEPENDENCIES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        _say(f"dependency {name}: {'installed' if found else 'MISSING'}")
        ok &= found
    try:
        with socket.create_connection((settings.broker, settings.port), timeout=5.0):
            _say(f"broker {settings.broker}:{settings.port}: reachable")
    except OSError as exc:
        _say(f"broker {settings.broker}:{settings.port}: NOT reachable ({exc})")
        ok = False
    _say(f"node {settings.name}, data in {settings.resolved_data_dir}")
    return ok
