"""A tiny supervisor for targets without systemd; ``devfleet deploy`` uploads this file.

It runs on the target with the venv's Python (standard library only)::

    python supervise.py start PIDFILE LOGFILE -- devfleet-agent --config ... --data-dir ...
    python supervise.py stop PIDFILE
    python supervise.py status PIDFILE

``start`` detaches (double fork, new session, so the SSH channel can close), writes
PIDFILE, and restarts the agent when it exits, with a back-off doubling from 1 s to
60 s, except on exit 2 (bad settings) or 77 (bad credentials), which a restart cannot
fix; the same rule as ``RestartPreventExitStatus`` in deploy/systemd. ``stop`` sends
SIGTERM (the supervisor forwards it; the agent publishes ``offline``) and waits up
to 20 s, then SIGKILL. Exit status of ``stop``/``status``: 0 stopped/running, 1 not
running/not stopped. Nothing here survives a reboot: that is why deploy warns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

NO_RESTART = (2, 77)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def _supervise(pidfile: str, logfile: str, argv: list[str]) -> int:
    child: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in child:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    backoff = 1.0
    code = 0
    with open(logfile, "ab", buffering=0) as log:
        while not stopping:
            started = time.monotonic()
            child[:] = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)]
            code = child[0].wait()
            if stopping or code in NO_RESTART:
                log.write(f"supervise: agent exited {code}; not restarting\n".encode())
                break
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.write(f"supervise: agent exited {code}; restarting in {backoff:.0f} s\n".encode())
            time.sleep(backoff)
            backoff = min(backoff * 2, 60.0)
    with contextlib.suppress(OSError):
        os.unlink(pidfile)
    return code


def start(pidfile: str, logfile: str, argv: list[str]) -> int:
    """Detach and supervise ``argv``; return 0 once the supervisor's pid is written."""
    if _read_pid(pidfile) is not None:
        print(f"already running (pid file {pidfile})", file=sys.stderr)
        return 1
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        with os.fdopen(read_end) as fh:
            return 0 if fh.read().strip() else 1  # the grandchild wrote its pid
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.umask(0o077)
    tmp = f"{pidfile}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, pidfile)
    os.write(write_end, b"ok\n")
    os.close(write_end)
    os._exit(_supervise(pidfile, logfile, argv))


def stop(pidfile: str, wait: float = 20.0) -> int:
    """SIGTERM the supervisor (and so the agent); SIGKILL after ``wait`` seconds."""
    pid = _read_pid(pidfile)
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _alive(pid):
            return 0
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the supervisor and the agent share a group
    return 0


def main(argv: list[str]) -> int:
    """``start PIDFILE LOGFILE -- CMD...``, ``stop PIDFILE`` or ``status PIDFILE``."""
    if len(argv) >= 5 and argv[0] == "start" and argv[3] == "--":
        return start(argv[1], argv[2], argv[4:])
    if len(argv) == 2 and argv[0] == "stop":
        return stop(argv[1])
    if len(argv) == 2 and argv[0] == "status":
        return 0 if _read_pid(argv[1]) is not None else 1
    print(
        "usage: supervise.py start PIDFILE LOGFILE -- CMD... | stop PIDFILE | status PIDFILE", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
