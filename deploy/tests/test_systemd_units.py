"""The systemd units in deploy/systemd: clean under `systemd-analyze verify`, hardened, in step with the agent.

``systemd-analyze verify`` returns 0 on warnings, so stderr must be empty. It
also checks that ``ExecStart`` exists: each test copies the unit with its
executable rewritten to a real file. ``systemd-analyze security --offline=true``
works without a running systemd (DESIGN.md: measured here).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devfleet_agent.agent import EXIT_CONFIG

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNITS = sorted(p.name for p in SYSTEMD.glob("*.service"))
DROP_INS = sorted(p.name for p in (SYSTEMD / "devfleet-agent.service.d").glob("*.conf"))
EXPOSURE_GOAL = 3.0


@pytest.fixture(scope="module")
def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail(
            "systemd-analyze is missing: apt-get install systemd (python3 dev.py test installs it as root)"
        )
    return exe


def _install(tmp_path: Path, unit: str, drop_ins: tuple[str, ...] = ()) -> Path:
    """Copy ``unit`` (and drop-ins) into ``tmp_path`` with ExecStart pointing at a real file."""
    real = shutil.which("true") or "/bin/true"
    text = re.sub(r"^(ExecStart=)(/\S+)", rf"\g<1>{real}", (SYSTEMD / unit).read_text(), flags=re.MULTILINE)
    target = tmp_path / unit
    target.write_text(text)
    if drop_ins:
        (tmp_path / f"{unit}.d").mkdir()
        for name in drop_ins:
            shutil.copy(SYSTEMD / f"{unit}.d" / name, tmp_path / f"{unit}.d" / name)
    return target


def _run(analyze: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The unit path makes systemd load the drop-ins next to the copied unit.
    env = {"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([analyze, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def _exposure(analyze: str, tmp_path: Path, unit: Path) -> float:
    out = _run(analyze, tmp_path, "security", "--offline=true", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout[-500:] + out.stderr
    return float(match.group(1))


def test_every_unit_is_here() -> None:
    assert UNITS == ["devfleet-agent.service", "devfleet-mosquitto.service", "devfleet-viz.service"]
    assert DROP_INS == ["hardware.conf", "runtime-installs.conf"]


@pytest.mark.parametrize("unit", UNITS)
def test_verify_is_clean(analyze: str, tmp_path: Path, unit: str) -> None:
    out = _run(analyze, tmp_path, "verify", "--man=no", str(_install(tmp_path, unit)))
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


@pytest.mark.parametrize("drop_in", DROP_INS)
def test_verify_is_clean_with_each_drop_in(analyze: str, tmp_path: Path, drop_in: str) -> None:
    unit = _install(tmp_path, "devfleet-agent.service", (drop_in,))
    out = _run(analyze, tmp_path, "verify", "--man=no", str(unit))
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


def test_a_broken_unit_is_caught(analyze: str, tmp_path: Path) -> None:
    """The check can fail: a misspelt directive and a missing executable both show on stderr."""
    unit = _install(tmp_path, "devfleet-agent.service")
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    assert "ProtectHom" in _run(analyze, tmp_path, "verify", "--man=no", str(unit)).stderr
    original = (SYSTEMD / "devfleet-agent.service").read_text()
    unit.write_text(original)
    assert _run(analyze, tmp_path, "verify", "--man=no", str(unit)).stderr != ""


def test_agent_unit_exposure_meets_the_goal(analyze: str, tmp_path: Path) -> None:
    assert _exposure(analyze, tmp_path, _install(tmp_path, "devfleet-agent.service")) <= EXPOSURE_GOAL


@pytest.mark.parametrize("unit", ["devfleet-mosquitto.service", "devfleet-viz.service"])
def test_operator_units_meet_the_goal_too(analyze: str, tmp_path: Path, unit: str) -> None:
    assert _exposure(analyze, tmp_path, _install(tmp_path, unit)) <= EXPOSURE_GOAL


@pytest.mark.parametrize("drop_in", DROP_INS)
def test_drop_ins_keep_the_agent_under_the_goal(analyze: str, tmp_path: Path, drop_in: str) -> None:
    base = _exposure(
        analyze, tmp_path / "base", _install(_mkdir(tmp_path / "base"), "devfleet-agent.service")
    )
    unit = _install(_mkdir(tmp_path / "with"), "devfleet-agent.service", (drop_in,))
    with_drop_in = _exposure(analyze, tmp_path / "with", unit)
    assert with_drop_in <= EXPOSURE_GOAL
    if drop_in == "hardware.conf":
        assert with_drop_in > base  # the drop-in was loaded: devices are open


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_agent_unit_matches_the_agent() -> None:
    """Type=notify (the agent sends READY=1), a watchdog, and no restart on exit 2 or EXIT_CONFIG."""
    text = (SYSTEMD / "devfleet-agent.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.MULTILINE))
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert float(settings["WatchdogSec"]) > 0
    assert set(settings["RestartPreventExitStatus"].split()) == {"2", str(EXIT_CONFIG)}
    assert settings["CapabilityBoundingSet"] == "" and settings["ProtectSystem"] == "strict"
    assert "devfleet-agent" in settings["ExecStart"]


# The user unit (deploy/systemd/user): `systemctl --user`'s manager. `systemd-analyze
# --user` needs XDG_RUNTIME_DIR (a private folder here); nothing here runs a user
# manager, so the unit is checked, not started (docs/deploy.md section 4).
USER_UNIT = SYSTEMD / "user" / "devfleet-agent.service"


def _install_user(tmp_path: Path, text: str | None = None) -> Path:
    """Copy the user unit with its %h-relative ExecStart pointing at a real file."""
    real = shutil.which("true") or "/bin/true"
    text = USER_UNIT.read_text() if text is None else text
    target = tmp_path / "devfleet-agent.service"
    target.write_text(re.sub(r"^(ExecStart=)(%h/\S+)", rf"\g<1>{real}", text, flags=re.MULTILINE))
    return target


def _run_user(analyze: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        "SYSTEMD_UNIT_PATH": f"{tmp_path}:",
        "PATH": "/usr/bin:/bin",
        "SYSTEMD_LOG_COLOR": "0",
        "XDG_RUNTIME_DIR": str(runtime),
    }
    return subprocess.run(
        [analyze, *args[:1], "--user", *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_user_unit_verify_is_clean(analyze: str, tmp_path: Path) -> None:
    out = _run_user(analyze, tmp_path, "verify", "--man=no", str(_install_user(tmp_path)))
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


def test_a_broken_user_unit_is_caught(analyze: str, tmp_path: Path) -> None:
    """A misspelt directive or a missing agent shows on stderr, so the clean check can fail."""
    broken = USER_UNIT.read_text().replace("ProtectHome=tmpfs", "ProtectHom=tmpfs")
    out = _run_user(analyze, tmp_path, "verify", "--man=no", str(_install_user(tmp_path, broken)))
    assert "ProtectHom" in out.stderr
    # Unrewritten, %h expands to this user's home and the agent is not there.
    (tmp_path / "devfleet-agent.service").write_text(USER_UNIT.read_text())
    out = _run_user(analyze, tmp_path, "verify", "--man=no", str(tmp_path / "devfleet-agent.service"))
    assert (
        f"{pwd.getpwuid(os.getuid()).pw_dir}/.local/share/devfleet/venv/bin/devfleet-agent is not executable"
        in out.stderr
    )


def test_user_unit_exposure_meets_the_goal(analyze: str, tmp_path: Path) -> None:
    out = _run_user(
        analyze, tmp_path, "security", "--offline=true", "--no-pager", str(_install_user(tmp_path))
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout[-500:] + out.stderr
    assert float(match.group(1)) <= EXPOSURE_GOAL


def test_user_unit_keeps_the_system_units_policy() -> None:
    """Same start, watchdog, exit-code and restart policy; paths under %h; the
    agent's folder the only writable place in a hidden home; started with the user manager."""

    def settings(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^(\w+)=(.*)$", path.read_text(), flags=re.MULTILINE))

    user, system = settings(USER_UNIT), settings(SYSTEMD / "devfleet-agent.service")
    same = ("Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "RestartPreventExitStatus")
    assert {k: user[k] for k in same} == {k: system[k] for k in same}
    assert user["TimeoutStartSec"] == "infinity" and user["StartLimitIntervalSec"] == "0"
    assert set(user["RestartPreventExitStatus"].split()) == {"2", str(EXIT_CONFIG)}
    assert user["ExecStart"] == (
        "%h/.local/share/devfleet/venv/bin/devfleet-agent --config %h/.local/share/devfleet/etc/agent.toml"
        " --data-dir %h/.local/share/devfleet/data"
    )
    assert user["ProtectSystem"] == "strict" and user["ProtectHome"] == "tmpfs"
    assert user["BindPaths"] == "%h/.local/share/devfleet"
    assert user["WantedBy"] == "default.target"
    assert "User" not in user and "Group" not in user and "StateDirectory" not in user  # system-only
