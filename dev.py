#!/usr/bin/env python3
"""One entry point for developers, needing only Python 3.11+.

    python3 dev.py demo     # the main job: the foraging swarm (--robots N --duration S --seed K --headless)
    python3 dev.py tour     # the console tour: a broker, a few agents, commands, the live fleet view
    python3 dev.py test     # lint, types, the whole suite, and each package alone
    python3 dev.py bench    # benchmarks -> docs/benchmarks.md
    python3 dev.py bench --pi-zero   # the agent on an emulated Pi Zero (qemu, Debian armel; minutes)
    python3 dev.py build    # wheels of every package and their dependencies -> wheelhouse/
    python3 dev.py nox -s tests -- -k config   # any nox invocation

It makes a private tool venv (.dev/) with nox and uv, then hands over to nox
(see noxfile.py). Tests need mosquitto, sshd, systemd-analyze and chromium; when one
is missing and this runs as root on Debian/Ubuntu, it is installed with apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".dev" / "venv"
REQUIREMENTS = ["nox==2026.10.20", "uv==0.13.9"]
SESSIONS = {
    "demo": ["-s", "demo"],
    "tour": ["-s", "tour"],
    "test": ["-s", "lint", "typecheck", "tests", "isolated", "interop"],
    "bench": ["-s", "bench"],
    "build": ["-s", "build"],
}


def _say(msg: str) -> None:
    print(f"dev.py: {msg}", file=sys.stderr, flush=True)


def _tools() -> Path:
    bindir = TOOLS / "bin"
    stamp = TOOLS / ".requirements"
    if not (bindir / "nox").exists() or not stamp.exists() or stamp.read_text() != "\n".join(REQUIREMENTS):
        _say(f"creating the tool venv in {TOOLS} (nox, uv)")
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        subprocess.run(
            [
                str(bindir / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *REQUIREMENTS,
            ],
            check=True,
        )
        stamp.write_text("\n".join(REQUIREMENTS))
    return bindir


def _find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def _have_sshd() -> bool:
    return os.access("/usr/sbin/sshd", os.X_OK) or shutil.which("sshd") is not None


def _ensure_test_tools() -> None:
    """mosquitto (the tests' broker), systemd-analyze (the deploy/systemd unit
    checks; Debian's `systemd` package), sshd (the
    `devfleet deploy` tests; Debian's `openssh-server`) and chromium (the viz tests'
    browser, driven by Playwright: never a downloaded one)."""
    missing = [] if _find_mosquitto() else ["mosquitto"]
    if sys.platform == "linux" and not shutil.which("systemd-analyze"):
        missing.append("systemd")
    if sys.platform == "linux" and not _have_sshd():
        missing.append("openssh-server")  # devfleet deploy's tests run a private sshd
    if not shutil.which("chromium"):
        missing.append("chromium")
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say(f"{' and '.join(missing)} missing; installing with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        # mosquitto's post-install may fail to start the packaged service (no init
        # system, port taken): only the binary matters, the tests start their own brokers.
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=False, env=env)
        if "mosquitto" in missing:
            subprocess.run(["service", "mosquitto", "stop"], check=False, capture_output=True)
        if "openssh-server" in missing:
            # Only the binary is wanted: no SSH service left listening on port 22.
            subprocess.run(["service", "ssh", "stop"], check=False, capture_output=True)
            subprocess.run(["systemctl", "disable", "ssh"], check=False, capture_output=True)
        if (
            _find_mosquitto()
            and (sys.platform != "linux" or (shutil.which("systemd-analyze") and _have_sshd()))
            and shutil.which("chromium")
        ):
            return
        _say("apt-get could not install " + " and ".join(missing))
        raise SystemExit(2)
    _say(
        f"the tests need {' and '.join(missing)}: install (e.g. sudo apt-get install {' '.join(missing)}) and run again"
    )
    raise SystemExit(2)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    what, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]  # "dev.py test -- -k x" and "dev.py test -k x" mean the same
    if what == "nox":
        args = rest
    elif what in SESSIONS:
        args = SESSIONS[what] + (["--", *rest] if rest else [])
    else:
        _say(f"unknown command {what!r}; try: demo, tour, test, bench, build, nox")
        return 2
    if what == "test":
        _ensure_test_tools()
    bindir = _tools()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    os.chdir(ROOT)
    return _run_to_the_end([str(bindir / "nox"), *args], env)


def _run_to_the_end(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv`` and return its exit code. Ctrl-C reaches the child too (one process
    group): it ends itself cleanly, so this waits for it instead of printing a traceback."""
    proc = subprocess.Popen(argv, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
