"""The deploy plan without a target: hostile targets and --hosts files, the systemd
layout's actions, secrets never shown, and the deploy extra loaded lazily."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_command.commands.deploy import _unit
from devfleet_command.deploy_plan import (
    UNIT_NAME,
    Facts,
    Options,
    choose_layout,
    deploy_actions,
    parse_hosts_file,
    parse_target,
    undeploy_actions,
)
from devfleet_command.errors import UsageError

UNIT = (Path(__file__).resolve().parents[3] / "deploy" / "systemd" / UNIT_NAME).read_bytes()


def test_the_packaged_unit_is_deploy_systemds() -> None:
    assert _unit() == UNIT


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "python": (3, 11, 2),
        "os": "Debian GNU/Linux 12 (bookworm)",
        "arch": "aarch64",
        "home": "/home/pi",
        "root": False,
        "sudo": True,
        "systemd": True,
        "service_user": False,
        "prefixes": {},
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


@given(st.text(max_size=60))
def test_hostile_targets_are_refused_or_plain(text: str) -> None:
    try:
        user, host = parse_target(text)
    except UsageError:
        return
    # Whatever passes cannot be an ssh option or hold anything a shell interprets.
    assert not host.startswith("-") and (user is None or not user.startswith("-"))
    assert not set(host + (user or "")) & set(" \t\n;|&$`'\"\\<>(){}*?!#~%")


@given(st.text(max_size=300))
def test_hosts_file_never_crashes(text: str) -> None:
    try:
        jobs = parse_hosts_file(text)
    except UsageError as exc:
        assert "\n" not in exc.message
        return
    assert jobs and len({name for _, name in jobs}) == len(jobs)


@given(
    st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.integers() | st.floats() | st.text(max_size=5),
            lambda c: (
                st.lists(c, max_size=4)
                | st.dictionaries(st.sampled_from(["python", "os", "prefixes", "home", "x"]), c, max_size=5)
            ),
        ).map(json.dumps),
    )
)
def test_junk_probe_output_is_a_value_error(line: str) -> None:
    with contextlib.suppress(ValueError):  # anything else (KeyError, OverflowError...) fails
        assert isinstance(Facts.parse(line), Facts)


def test_hosts_file_lines() -> None:
    assert parse_hosts_file("# lab\npi@10.0.0.5 kitchen  # by the door\n\nnode2.lan hall\n") == [
        ("pi@10.0.0.5", "kitchen"),
        ("node2.lan", "hall"),
    ]
    with pytest.raises(UsageError, match="line 2: expected"):
        parse_hosts_file("a b\nc\n")
    with pytest.raises(UsageError, match="named twice"):
        parse_hosts_file("a n\nb n\n")
    with pytest.raises(UsageError, match="line 1"):
        parse_hosts_file("-oProxyCommand=x n\n")


def test_systemd_with_sudo_installs_the_system_unit() -> None:
    f = facts()
    layout, warnings = choose_layout(Options(name="kitchen"), f)
    assert layout.system and layout.prefix == "/opt/devfleet" and not warnings
    secret = b'password = "s3cret-value"\n'
    acts = deploy_actions(
        Options(name="kitchen", index_url="https://pypi.org/simple"),
        f,
        layout,
        files={"agent.toml": secret, "identity.json": b"{}"},
        unit=UNIT,
        supervisor=Path("supervise.py"),
    )
    argvs = [a.argv for a in acts if a.argv]
    assert (
        "useradd",
        "--system",
        "--home-dir",
        "/var/lib/devfleet",
        "--shell",
        "/usr/sbin/nologin",
        "devfleet",
    ) in argvs
    assert ("systemctl", "enable", UNIT_NAME) in argvs
    assert ("systemctl", "restart", "--no-block", UNIT_NAME) in argvs  # the online step waits
    assert all(a.sudo for a in acts)
    unit = next(a for a in acts if a.path == f"/etc/systemd/system/{UNIT_NAME}")
    assert unit.data == UNIT and unit.mode == 0o644
    config = next(a for a in acts if a.path == "/etc/devfleet/agent.toml")
    assert config.mode == 0o600 and config.owner == "devfleet" and config.secret
    shown = "\n".join(a.describe() for a in acts)
    assert "s3cret" not in shown and "contents not shown" in shown
    assert "--index-url https://pypi.org/simple" in shown
    # The unit runs what was installed where it looks.
    assert b"ExecStart=/opt/devfleet/venv/bin/devfleet-agent --config /etc/devfleet/agent.toml" in UNIT


def test_root_without_sudo_still_gives_the_service_user_its_files() -> None:
    f = facts(root=True, sudo=False)
    layout, _ = choose_layout(Options(name="n"), f)
    acts = deploy_actions(
        Options(name="n"), f, layout, files={"agent.toml": b"x"}, unit=UNIT, supervisor=Path("s")
    )
    assert layout.system and not any(a.sudo for a in acts)
    config = next(a for a in acts if a.path == "/etc/devfleet/agent.toml")
    assert config.owner == "devfleet" and config.mode == 0o600


def test_no_systemd_or_no_sudo_runs_in_the_background_with_a_warning() -> None:
    for f in (facts(systemd=False), facts(sudo=False)):
        layout, warnings = choose_layout(Options(name="n"), f)
        assert not layout.system and layout.prefix == "/home/pi/.local/share/devfleet"
        assert "NOT started again after a reboot" in warnings[0]
        acts = deploy_actions(Options(name="n"), f, layout, files={}, unit=None, supervisor=Path("s.py"))
        assert not any(a.sudo for a in acts)
        assert acts[-1].argv[1:4] == (layout.supervisor, "start", layout.pidfile)
    with pytest.raises(UsageError, match="--system needs"):
        choose_layout(Options(name="n", system=True), facts(systemd=False))


def test_a_rerun_after_a_failure_before_the_venv_does_not_stop_what_never_ran() -> None:
    prefix = "/home/pi/.local/share/devfleet"
    for venv, stops in ((False, False), (True, True)):
        f = facts(systemd=False, prefixes={prefix: {"manifest": {"node": "n"}, "venv": venv, "free_mb": 999}})
        layout, _ = choose_layout(Options(name="n"), f)
        acts = deploy_actions(Options(name="n"), f, layout, files={}, unit=None, supervisor=Path("s.py"))
        assert any(a.step == "stop" for a in acts) is stops
        assert any(a.step == "venv" for a in acts) is not venv


def test_undeploy_removes_exactly_what_deploy_made() -> None:
    layout, _ = choose_layout(Options(name="n"), facts())
    acts = undeploy_actions(facts(service_user=True), layout)
    rm = next(a.argv for a in acts if a.argv[:1] == ("rm",))
    assert rm == (
        "rm",
        "-rf",
        "--",
        "/opt/devfleet",
        "/etc/devfleet",
        "/var/lib/devfleet",
        f"/etc/systemd/system/{UNIT_NAME}",
    )
    assert ("userdel", "devfleet") in [a.argv for a in acts]


def test_help_does_not_import_asyncssh_and_a_missing_extra_is_one_line() -> None:
    code = (
        "import sys; sys.modules['asyncssh'] = None\n"
        "from devfleet_command.cli import build_parser, main\n"
        "build_parser(); assert 'asyncssh' in sys.modules and sys.modules['asyncssh'] is None\n"
        "sys.exit(main(['deploy', '127.0.0.1', '--name', 'n', '--dry-run']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "devfleet: deploy needs asyncssh: pip install 'devfleet-central-command[deploy]'"
    )
    lazy = "import sys; from devfleet_command.cli import build_parser; build_parser(); print('asyncssh' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", lazy], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        == "False"
    )
