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

from devfleet_command.commands.deploy import USER_UNIT, _unit
from devfleet_command.deploy_plan import (
    UNIT_NAME,
    Action,
    Facts,
    Layout,
    Options,
    choose_layout,
    deploy_actions,
    parse_hosts_file,
    parse_target,
    undeploy_actions,
)
from devfleet_command.deploy_run import plan_lines
from devfleet_command.errors import InvalidRequest

UNIT = (Path(__file__).resolve().parents[3] / "deploy" / "systemd" / UNIT_NAME).read_bytes()
USER_UNIT_TEXT = (
    Path(__file__).resolve().parents[3] / "deploy" / "systemd" / "user" / UNIT_NAME
).read_bytes()


def test_the_packaged_unit_is_deploy_systemds() -> None:
    assert _unit() == UNIT
    assert _unit(USER_UNIT) == USER_UNIT_TEXT


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
    except InvalidRequest:
        return
    # Whatever passes cannot be an ssh option or hold anything a shell interprets.
    assert not host.startswith("-") and (user is None or not user.startswith("-"))
    assert not set(host + (user or "")) & set(" \t\n;|&$`'\"\\<>(){}*?!#~%")


@given(st.text(max_size=300))
def test_hosts_file_never_crashes(text: str) -> None:
    try:
        jobs = parse_hosts_file(text)
    except InvalidRequest as exc:
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
    with pytest.raises(InvalidRequest, match="line 2: expected"):
        parse_hosts_file("a b\nc\n")
    with pytest.raises(InvalidRequest, match="named twice"):
        parse_hosts_file("a n\nb n\n")
    with pytest.raises(InvalidRequest, match="line 1"):
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
    with pytest.raises(InvalidRequest, match="--system needs"):
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


USER_PREFIX = "/home/pi/.local/share/devfleet"
USER_UNIT_PATH = f"/home/pi/.config/systemd/user/{UNIT_NAME}"


def _kind(f: Facts, prefix: str | None = None) -> str:
    layout, _ = choose_layout(Options(name="n", prefix=prefix), f)
    return "system" if layout.system else "user" if layout.user else "background"


@pytest.mark.parametrize(
    ("probed", "prefix", "kind"),
    [
        ({}, None, "system"),
        ({"root": True, "sudo": False}, None, "system"),
        ({"user_systemd": True}, None, "system"),  # sudo wins: the system unit
        ({"sudo": False, "user_systemd": True}, None, "user"),
        ({"sudo": False, "user_systemd": True, "linger": True}, "~/.local/share/devfleet", "user"),
        (
            {"sudo": False, "user_systemd": True},
            "/home/pi/elsewhere",
            "background",
        ),  # the unit names one prefix
        ({"sudo": False, "user_systemd": False}, None, "background"),  # no user manager answered
        ({"systemd": False, "sudo": False, "user_systemd": True}, None, "background"),
        ({"systemd": False}, None, "background"),
    ],
)
def test_the_probe_chooses_system_user_unit_or_background(
    probed: dict[str, object], prefix: str | None, kind: str
) -> None:
    assert _kind(facts(**probed), prefix) == kind


def test_probe_output_carries_the_user_manager_facts() -> None:
    line = json.dumps(
        {
            "python": [3, 11, 2], "os": "x", "arch": "armv6l", "home": "/home/pi", "root": False,
            "sudo": False, "systemd": True, "service_user": False, "prefixes": {},
            "login": "pi", "user_systemd": True, "linger": True,
        }
    )  # fmt: skip
    f = Facts.parse(line)
    assert (f.login, f.user_systemd, f.linger) == ("pi", True, True)
    assert f.summary().endswith("no sudo, user systemd, linger")
    old = Facts.parse(line.replace('"user_systemd": true', '"other": 1'))  # an older probe
    assert not old.user_systemd


def _user_plan(f: Facts) -> list[Action]:
    layout, warnings = choose_layout(Options(name="n"), f)
    assert layout.user and not layout.system and not warnings
    return deploy_actions(
        Options(name="n", index_url="https://pypi.org/simple"),
        f,
        layout,
        files={"agent.toml": b'password = "s3cret"\n'},
        unit=UNIT,
        supervisor=Path("supervise.py"),
        user_unit=USER_UNIT_TEXT,
    )


def test_systemd_without_sudo_installs_the_user_unit_and_lingers() -> None:
    acts = _user_plan(facts(sudo=False, user_systemd=True, login="pi"))
    assert not any(a.sudo or a.owner for a in acts)
    unit = next(a for a in acts if a.path == USER_UNIT_PATH)
    assert unit.data == USER_UNIT_TEXT and unit.mode == 0o644
    assert [a.argv for a in acts if a.step == "service" and a.argv] == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", UNIT_NAME),
        ("systemctl", "--user", "restart", "--no-block", UNIT_NAME),
        ("loginctl", "enable-linger", "pi"),
    ]
    linger = acts[-1]
    assert "NOT started after a reboot" in linger.warn and "loginctl enable-linger pi" in linger.warn
    assert ("mkdir", "-p", "-m", "0755", "/home/pi/.config/systemd/user") in [a.argv for a in acts]
    assert not any("supervise" in " ".join(a.argv) for a in acts)
    # The user unit runs what was installed where it looks (%h is the home directory).
    assert next(a for a in acts if a.path == f"{USER_PREFIX}/etc/agent.toml").mode == 0o600
    text = USER_UNIT_TEXT.decode()
    assert (
        "ExecStart=%h/.local/share/devfleet/venv/bin/devfleet-agent --config %h/.local/share/devfleet/etc/agent.toml --data-dir %h/.local/share/devfleet/data"
        in text
    )
    manifest = json.loads(next(a for a in acts if a.path.endswith("deploy.json")).data or b"")
    assert manifest["user"] is True and manifest["system"] is False


def test_user_unit_dry_run_lines() -> None:
    """What ``deploy --dry-run`` prints for the user-unit path, line by line."""
    acts = _user_plan(facts(sudo=False, user_systemd=True, login="pi"))
    lines = plan_lines(acts)
    assert lines == [
        f"prepare    mkdir -p -m 0755 {USER_PREFIX} {USER_PREFIX}/wheelhouse",
        f"prepare    mkdir -p -m 0700 {USER_PREFIX}/etc {USER_PREFIX}/data",
        "prepare    mkdir -p -m 0755 /home/pi/.config/systemd/user",
        f"prepare    write -> {USER_PREFIX}/deploy.json (mode 0644)",
        f"venv       python3 -m venv {USER_PREFIX}/venv",
        f"install    {USER_PREFIX}/venv/bin/python -m pip install --disable-pip-version-check --quiet --upgrade "
        "--upgrade-strategy only-if-needed --index-url https://pypi.org/simple 'devfleet-agent-core[signing]'",
        f"configure  write -> {USER_PREFIX}/etc/agent.toml (mode 0600, contents not shown)",
        f"service    write -> {USER_UNIT_PATH} (mode 0644)",
        "service    systemctl --user daemon-reload",
        f"service    systemctl --user enable {UNIT_NAME}",
        f"service    systemctl --user restart --no-block {UNIT_NAME}",
        "service    loginctl enable-linger pi (may fail: warns)",
    ]
    assert "s3cret" not in "\n".join(lines)


def test_linger_already_on_is_left_alone_and_a_rerun_stops_the_unit() -> None:
    state = {USER_PREFIX: {"manifest": {"node": "n", "user": True}, "venv": True, "free_mb": 999}}
    acts = _user_plan(facts(sudo=False, user_systemd=True, linger=True, prefixes=state))
    assert acts[0].argv == ("systemctl", "--user", "stop", UNIT_NAME) and acts[0].step == "stop"
    assert not any(a.argv[:1] == ("loginctl",) for a in acts)
    assert not any(a.step == "venv" for a in acts)
    # An earlier background deploy at the same prefix: its supervisor is stopped instead.
    state = {USER_PREFIX: {"manifest": {"node": "n", "user": False}, "venv": True, "free_mb": 999}}
    acts = _user_plan(facts(sudo=False, user_systemd=True, prefixes=state))
    assert acts[0].argv[1:3] == (f"{USER_PREFIX}/supervise.py", "stop")


def test_undeploy_of_the_user_unit_disables_and_removes_it() -> None:
    layout = Layout(USER_PREFIX, user=True, home="/home/pi")
    assert [a.argv for a in undeploy_actions(facts(sudo=False, user_systemd=True), layout)] == [
        ("systemctl", "--user", "disable", "--now", UNIT_NAME),
        ("rm", "-rf", "--", USER_PREFIX, USER_UNIT_PATH),
        ("systemctl", "--user", "daemon-reload"),
    ]
