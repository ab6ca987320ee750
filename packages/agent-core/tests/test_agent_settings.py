"""Settings: flags > environment > file > defaults; bad settings are one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devfleet_agent.errors import SettingsError
from devfleet_agent.settings import load_settings


def test_precedence(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('broker = "file-host"\nport = 1111\nname = "from-file"\nallow_code = true\n')
    s = load_settings({}, env={}, config_path=str(cfg))
    assert (s.broker, s.port, s.name, s.allow_code) == ("file-host", 1111, "from-file", True)
    s = load_settings({}, env={"DEVFLEET_BROKER": "env-host", "DEVFLEET_PORT": "2222"}, config_path=str(cfg))
    assert (s.broker, s.port, s.name) == ("env-host", 2222, "from-file")
    s = load_settings({"port": 3333, "name": "flag"}, env={"DEVFLEET_PORT": "2222"}, config_path=str(cfg))
    assert (s.port, s.name) == (3333, "flag")


def test_agent_table_and_wactorz_env(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[agent]\nbroker = "h"\n')
    assert load_settings({}, env={}, config_path=str(cfg)).broker == "h"
    s = load_settings({}, env={"AGENTFLOW_BROKER": "wactorz-host", "AGENTFLOW_NODE": "rpi-x"})
    assert (s.broker, s.name) == ("wactorz-host", "rpi-x")


def test_broker_url():
    s = load_settings({"broker": "mqtts://user:pw@example.org:8884"}, env={})
    assert (s.broker, s.port, s.tls, s.username, s.password) == ("example.org", 8884, True, "user", "pw")
    assert load_settings({"broker": "mqtt://h"}, env={}).port == 1883


@pytest.mark.parametrize(
    ("flags", "env", "fragment"),
    [
        ({"name": "bad/name"}, {}, "node name"),
        ({"port": 70000}, {}, "port"),
        ({}, {"DEVFLEET_PORT": "abc"}, "DEVFLEET_PORT"),
        ({}, {"DEVFLEET_ALLOW_CODE": "maybe"}, "expected true or false"),
        ({"broker": "ftp://x"}, {}, "broker URL"),
        ({"tls_ca": "/nonexistent/ca.pem"}, {}, "no such file"),
        ({"tls_cert": "/x"}, {}, "both"),
        ({"password": "pw"}, {}, "username"),
        ({"signing_key_file": "/nonexistent/id.json"}, {}, "signing identity"),
        ({"protocol": "4"}, {}, "protocol"),
    ],
)
def test_bad_settings(flags, env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        load_settings(flags, env=env)


def test_bad_file(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text("broker = \n")
    with pytest.raises(SettingsError, match=r"agent\.toml"):
        load_settings({}, env={}, config_path=str(cfg))
    cfg.write_text('brokr = "typo"\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({}, env={}, config_path=str(cfg))
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({}, env={}, config_path=str(tmp_path / "missing.toml"))


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "devfleet_agent", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_cli_bad_setting_is_one_line_exit_2():
    r = _cli("--name", "bad/name", "--broker", "127.0.0.1")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("devfleet-agent: node name")


def test_cli_bad_credentials_exit_77(mqtt_broker_auth, tmp_path):
    r = _cli(
        "--broker",
        "127.0.0.1",
        "--port",
        str(mqtt_broker_auth.port),
        "--name",
        "authbad",
        "--username",
        "node-1",
        "--password",
        "wrong",
        "--data-dir",
        str(tmp_path),
        "--protocol",
        "3.1.1",
    )
    assert r.returncode == 77  # EXIT_CONFIG: the systemd unit does not restart on it
    assert "refused" in r.stderr.splitlines()[-1]


def test_cli_selftest():
    r = _cli("--test")
    assert r.returncode == 0 and "7/7" in r.stdout


def test_several_brokers_from_flag_env_and_toml_list(tmp_path):
    s = load_settings({"broker": "mqtt://a:1884,b"}, env={}, config_path=None)
    assert (s.broker, s.port, s.fallbacks) == ("a", 1884, (("b", 1883),))
    s = load_settings({}, env={"DEVFLEET_BROKER": "mqtt://a:1,mqtt://b:2, mqtt://c:3"}, config_path=None)
    assert (s.broker, s.port, s.fallbacks) == ("a", 1, (("b", 2), ("c", 3)))
    cfg = tmp_path / "agent.toml"
    cfg.write_text('broker = ["mqtts://n1:8883", "mqtts://n2:8883"]\n')
    s = load_settings({}, env={}, config_path=str(cfg))
    assert (s.broker, s.port, s.tls, s.fallbacks) == ("n1", 8883, True, (("n2", 8883),))
    s = load_settings({"broker": "single"}, env={}, config_path=None)
    assert (s.broker, s.fallbacks) == ("single", ())


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("mqtt://a:1,", "empty entry"),
        ("mqtt://a:1,mqtts://b:2", "mixes mqtts:// and mqtt://"),
        ("mqtt://a:1,http://b", "bad broker URL"),
        ("mqtt://a:99999,b", "bad broker URL"),
    ],
)
def test_bad_broker_lists(value, fragment):
    with pytest.raises(SettingsError, match=fragment):
        load_settings({"broker": value}, env={}, config_path=None)


def test_a_toml_broker_list_must_hold_urls(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text("broker = [1, 2]\n")
    with pytest.raises(SettingsError, match="expected a list of broker URLs"):
        load_settings({}, env={}, config_path=str(cfg))


def test_repeated_broker_flags_join():
    from devfleet_agent.cli import build_parser

    args = build_parser().parse_args(["--broker", "mqtt://a:1", "--broker", "mqtt://b:2"])
    assert args.broker == "mqtt://a:1,mqtt://b:2"


def test_persistent_session_from_flag_env_and_file(tmp_path):
    assert load_settings({}, env={}).persistent_session is False  # clean sessions by default
    assert load_settings({}, env={"DEVFLEET_PERSISTENT_SESSION": "yes"}).persistent_session is True
    assert load_settings({"persistent_session": True}, env={}).persistent_session is True
    cfg = tmp_path / "agent.toml"
    cfg.write_text("persistent_session = true\n")
    assert load_settings({}, env={}, config_path=str(cfg)).persistent_session is True
    with pytest.raises(SettingsError, match="persistent_session"):
        load_settings({}, env={"DEVFLEET_PERSISTENT_SESSION": "maybe"})
