"""The CLI's input side, without a broker: help, usage errors, typed values, profiles.

Every subcommand's ``--help`` has a description and an example; a malformed value
is a usage error (exit 2) that says "not valid JSON", never a silent string;
options may come between positionals.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_base.node_config import NODE_CONFIG_SCHEMA
from devfleet_command.cli import build_parser, main
from devfleet_command.cli_settings import resolve
from devfleet_command.commands.values import config_assignments, field_at, parse_typed, parse_value
from devfleet_command.errors import UsageError


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(((*path, name), sub))
                out += _subcommands(sub, (*path, name))
    return out


def test_every_subcommand_help_has_a_description_an_example_and_positional_help() -> None:
    commands = _subcommands(build_parser())
    assert len(commands) >= 20  # ls ... task, config get/set
    for path, sub in commands:
        text = sub.format_help()
        name = " ".join(path)
        assert sub.description, f"devfleet {name} --help has no description"
        assert "examples:\n  devfleet " in text, f"devfleet {name} --help has no example"
        for action in sub._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"devfleet {name}: positional {action.dest} has no help"


def test_help_of_every_subcommand_through_main(capsys: pytest.CaptureFixture[str]) -> None:
    for path, _ in _subcommands(build_parser()):
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out, path
    with pytest.raises(SystemExit):
        main(["logs", "--help"])
    assert "JSON Lines" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["watch", "--help"])
    assert "JSON Lines" in capsys.readouterr().out


def _modules_after(argv: list[str]) -> tuple[int, set[str]]:
    """``main(argv)`` in a fresh interpreter: its exit code and the modules it imported."""
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "from devfleet_command.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as done:\n    code = done.code\n"
        "print(json.dumps([code, sorted(set(sys.modules) - before)]), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    exit_code, modules = json.loads(done.stderr.splitlines()[-1])
    return exit_code, set(modules)


def test_help_builds_no_verb_and_a_verb_builds_only_its_module() -> None:
    from devfleet_command.commands import VERBS

    commands = "devfleet_command.commands."
    code, modules = _modules_after(["--help"])
    assert code == 0
    assert {m for m in modules if m.startswith(commands)} == {f"{commands}argtypes"}
    assert "shutil" not in modules  # argparse imports it for the terminal width; the CLI does not
    code, modules = _modules_after(["config", "get", "--help"])
    assert code == 0
    assert {m for m in modules if m.startswith(commands)} == {f"{commands}argtypes", f"{commands}config"}
    code, modules = _modules_after(["nosuch"])
    assert code == 2
    assert {m for m in modules if m.startswith(commands)} == {f"{commands}argtypes"}
    # Every verb listed is the one its module adds (the walks above build them all).
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert [c.dest for c in action._choices_actions] == list(action.choices) == list(VERBS)
    for verb, sub in action.choices.items():
        assert sub.prog == f"devfleet {verb}"
        assert sub.description


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"devfleet {version('devfleet-central-command')} ")


def test_options_between_positionals() -> None:
    parser = build_parser()
    a = parser.parse_args(["install", "n1", "--wait", "60", "devfleet-component-ledstrip"])
    assert (a.target, a.spec, a.wait) == ("n1", "devfleet-component-ledstrip", 60.0)
    a = parser.parse_args(["install", "--all", "x"])
    assert (a.target, a.spec, a.all) == (None, "x", True)
    a = parser.parse_args(["config", "set", "n1", "a=1", "--expect-version", "3", "b=2", "--json"])
    assert (a.assignments, a.expect_version, a.json) == (["a=1", "b=2"], 3, True)
    a = parser.parse_args(["cmd", "n1", "--timeout", "5", "ping", "x=1"])
    assert (a.node, a.verb, a.assignments, a.timeout) == ("n1", "ping", ["x=1"], 5.0)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["config", "set", "n1", "a=1", "--expect-version", "-1"],
            "--expect-version: must be a whole number, 0 or more",
        ),
        (["config", "set", "n1", "a=1", "--expect-version", "x"], "--expect-version: must be a whole number"),
        (["watch", "--refresh", "0"], "--refresh: must be a number of seconds from 0.1 to 3600"),
        (["watch", "--refresh", "nan"], "--refresh: must be a number of seconds"),
        (["install", "n1", "x", "--wait", "0"], "--wait: must be a number of seconds from 1"),
        (["ls", "--timeout", "0"], "--timeout: must be more than 0 and at most 86400 seconds, got '0'"),
        (["ls", "--timeout", "-1"], "--timeout: must be more than 0"),
    ],
)
def test_bad_numbers_are_usage_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(argv)
    assert usage.value.code == 2
    assert says in capsys.readouterr().err


# ---- values ---------------------------------------------------------------------------------


def test_config_values_follow_the_schema() -> None:
    got = config_assignments(
        [
            "telemetry.interval=5",
            "description=lab bench",
            "description=42",
            'components.ledstrip={"enabled": true, "settings": {"led_count": 60}}',
            'groups=["lobby"]',
            "logs.level=DEBUG",
            "components.ledstrip.settings.effect=rainbow",
        ]
    )
    assert got == {
        "telemetry.interval": 5,
        "description": "42",  # the schema wants a string: the text is the string
        "components.ledstrip": {"enabled": True, "settings": {"led_count": 60}},
        "groups": ["lobby"],
        "logs.level": "DEBUG",
        "components.ledstrip.settings.effect": "rainbow",  # free-form settings: a bare word
    }
    assert config_assignments(['description="quoted"']) == {"description": "quoted"}
    assert field_at(NODE_CONFIG_SCHEMA, "components.x.enabled").kind == "bool"  # type: ignore[union-attr]
    assert field_at(NODE_CONFIG_SCHEMA, "nosuch.key") is None


@pytest.mark.parametrize(
    "item",
    ["groups=[lobby", 'components.ledstrip={"enabled": tru}', "telemetry.interval=fast", "groups=lobby"],
)
def test_malformed_config_json_is_refused(item: str) -> None:
    with pytest.raises(UsageError) as exc:
        config_assignments([item])
    key = item.split("=")[0]
    assert exc.value.message.startswith(f"{key}: not valid JSON: ")


def test_malformed_json_on_the_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before any connection: the broker address is never tried.
    for argv in (
        ["config", "set", "n1", "groups=[bad"],
        ["task", "greeter", "{bad"],
        ["cmd", "n1", "ping", 'x={"a": }'],
        ["component", "n1", "ledstrip", "set_effect", "effect=[rainbow"],
    ):
        code = main(["--broker", "mqtt://127.0.0.1:9", *argv])
        err = capsys.readouterr().err
        assert code == 2, argv
        assert "not valid JSON" in err and err.count("\n") == 1, err


@given(st.text(max_size=40))
def test_any_text_is_a_value_or_a_usage_error(text: str) -> None:
    try:
        value = parse_value(text)
    except UsageError as exc:
        assert "not valid JSON" in exc.message
    else:
        assert value == text or json.dumps(value) is not None
    for key in ("description", "telemetry.interval", "groups", "components.x", "components.x.settings.y"):
        try:
            typed = parse_typed(text, field_at(NODE_CONFIG_SCHEMA, key), where=f"{key}: ")
        except UsageError as exc:
            assert exc.message.startswith(f"{key}: not valid JSON")
        else:
            if key == "description":
                assert isinstance(typed, str)


# ---- settings: environment and profiles -------------------------------------------------------


def _flags(**given: Any) -> dict[str, Any]:
    keys = ("broker", "username", "password", "tls_ca", "signing_key_file", "timeout")
    return {k: given.get(k) for k in keys}


def test_settings_flags_then_env_then_profile(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 32 + "\n")
    other = tmp_path / "other.key"
    other.write_text("o" * 32)
    password = tmp_path / "pw"
    password.write_text("from-file\n")
    cfg = tmp_path / "console.toml"
    cfg.write_text(
        f"""
[default]
broker = "mqtt://10.0.0.1:1883"

[lab]
broker = "mqtts://10.0.0.2:8883"
username = "alice"
password_file = "{password}"
tls_ca = "/lab/ca.pem"
signing_key_file = "{key}"
timeout = 20
"""
    )
    env = {"DEVFLEET_CONSOLE_CONFIG": str(cfg)}
    s = resolve(_flags(), env)
    assert (s.broker, s.profile, s.timeout, s.signing_key_file) == (
        "mqtt://10.0.0.1:1883",
        "default",
        10.0,
        None,
    )
    s = resolve(_flags(), env, profile="lab")
    assert (s.broker, s.username, s.password, s.tls_ca) == (
        "mqtts://10.0.0.2:8883",
        "alice",
        "from-file",
        "/lab/ca.pem",
    )
    assert s.signing_key_file == str(key) and s.timeout == 20.0
    s = resolve(_flags(), {**env, "DEVFLEET_PROFILE": "lab", "DEVFLEET_TLS_CA": "/env/ca.pem",
                           "DEVFLEET_SIGNING_KEY_FILE": str(other)})  # fmt: skip
    assert (s.tls_ca, s.signing_key_file, s.broker) == ("/env/ca.pem", str(other), "mqtts://10.0.0.2:8883")
    s = resolve(
        _flags(broker="mqtt://127.0.0.1:1", timeout=3.0),
        {**env, "DEVFLEET_BROKER": "mqtt://x:1"},
        profile="lab",
    )
    assert (s.broker, s.timeout) == ("mqtt://127.0.0.1:1", 3.0)
    s = resolve(_flags(), {"HOME": str(tmp_path / "nohome")})  # no file: built-in defaults
    assert (s.broker, s.timeout, s.profile) == ("mqtt://127.0.0.1:1883", 10.0, None)


@pytest.mark.parametrize(
    ("text", "profile", "says"),
    [
        ("[default]\nbroker = 'mqtt://h:1'\n", "nosuch", "no profile 'nosuch'"),
        ("[default]\nbroker = 'mqtt://h:1'\nbrokr = 'x'\n", None, "unknown key(s) brokr"),
        ("[default\n", None, "not valid TOML"),
        ("[default]\ntimeout = 0\n", None, "timeout must be a number of seconds"),
        ("[default]\nusername = 5\n", None, "username must be a non-empty string"),
        ("[default]\npassword_file = '/nonexistent/pw'\n", None, "cannot read the password file"),
    ],
)
def test_bad_profiles_are_usage_errors(tmp_path: Path, text: str, profile: str | None, says: str) -> None:
    cfg = tmp_path / "console.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError) as exc:
        resolve(_flags(), {"DEVFLEET_CONSOLE_CONFIG": str(cfg)}, profile=profile)
    assert says in exc.value.message


def test_a_missing_profile_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("DEVFLEET_CONSOLE_CONFIG", str(tmp_path / "none.toml"))
    assert main(["--profile", "lab", "ls"]) == 2
    assert "no profile 'lab'" in capsys.readouterr().err


def test_shell_completion(tmp_path: Path) -> None:
    """argcomplete (the ``completion`` extra) completes subcommands and options."""
    import argcomplete  # noqa: F401  (the test extra installs it: fail loudly if not)

    out = tmp_path / "completions"
    line = "devfleet con"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "_ARGCOMPLETE_IFS": "\n",
    }
    code = "import sys; from devfleet_command.cli import main; sys.argv=['devfleet']; main()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(out.read_text().split()) == {"config"}


def test_several_brokers_from_flags_env_and_a_toml_list(tmp_path: Path) -> None:
    cfg = tmp_path / "console.toml"
    cfg.write_text('[default]\nbroker = ["mqtt://n1:1883", "mqtt://n2:1883"]\n[bad]\nbroker = [1]\n')
    env = {"DEVFLEET_CONSOLE_CONFIG": str(cfg)}
    assert resolve(_flags(), env).broker == "mqtt://n1:1883,mqtt://n2:1883"
    assert (
        resolve(_flags(), {**env, "DEVFLEET_BROKER": "mqtt://a:1,mqtt://b:2"}).broker
        == "mqtt://a:1,mqtt://b:2"
    )
    with pytest.raises(UsageError, match="list of URLs"):
        resolve(_flags(), env, profile="bad")
    args = build_parser().parse_args(["--broker", "mqtt://a:1", "--broker", "mqtt://b:2", "ls"])
    assert args.broker == "mqtt://a:1,mqtt://b:2"
