"""systemd's notify protocol: ``READY=1``, ``WATCHDOG=1``, ``STATUS=...``, ``STOPPING=1``.

The protocol is one datagram per message on the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), with
newline-separated ``KEY=value`` lines; see sd_notify(3) and
https://systemd.io/NOTIFY/ ("it is recommended to reimplement it" — about
twenty lines). No dependency: the ``sdnotify`` and ``systemd-python``
packages would add an import (the latter a C build on a Pi Zero) for the same
datagram.

The CLI reads the environment (:meth:`SdNotifier.from_environ`); the agent only
calls :meth:`SdNotifier.notify`. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SdNotifier"]

log = logging.getLogger("devfleet.agent.sdnotify")


class SdNotifier:
    """Sends notify datagrams to one socket address.

    Args:
        address: the socket path, or ``@name`` for the abstract namespace; None
            disables every call.
        watchdog_interval: seconds systemd waits between ``WATCHDOG=1`` before it
            restarts the service (``WatchdogSec``), or None when the watchdog is off.
    """

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_interval
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> SdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (sd_watchdog_enabled(3)).

        The watchdog counts only when ``WATCHDOG_PID`` is unset or names ``pid``
        (this process), so a child that inherited the variables stays quiet.
        """
        address = environ.get("NOTIFY_SOCKET") or None
        interval: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        wd_pid = environ.get("WATCHDOG_PID", "")
        mine = not wd_pid or wd_pid == str(pid if pid is not None else os.getpid())
        if usec.isdigit() and int(usec) > 0 and mine:
            interval = int(usec) / 1_000_000
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) as one datagram.

        Returns:
            Whether the datagram was sent (False outside systemd or on a socket
            error, which is logged once per error and never raised: the service
            manager going away must not stop the agent).
        """
        if self.address is None:
            return False
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        data = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, addr)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
