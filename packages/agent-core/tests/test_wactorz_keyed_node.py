"""A node holding the Wactorz fleet key (issue 21): given in the settings or the CLI, never
shown, and a captured Wactorz-signed control message is refused also after a restart."""

from __future__ import annotations

import json

import pytest

from devfleet_agent.cli import build_parser
from devfleet_agent.errors import SettingsError
from devfleet_agent.settings import load_settings
from devfleet_agent.testing import AgentThread, settings_for
from devfleet_base import contract
from devfleet_base.wactorz_signing import WactorzSigner

KEY = bytes(range(32))
TICKER = "async def process(agent):\n    pass\n"


def _online(msg):
    return msg.json()["status"] == "online"


def test_the_key_comes_from_a_file_or_the_wactorz_variable_and_is_never_shown(tmp_path):
    key_file = tmp_path / "fleet.key"
    key_file.write_text(KEY.hex() + "\n")
    args = build_parser().parse_args(["--wactorz-key-file", str(key_file)])
    s = load_settings({"wactorz_key_file": args.wactorz_key_file, "name": "n"}, env={})
    assert s.wactorz_fleet_key() == KEY
    s = load_settings({"name": "n"}, env={"WACTORZ_NODE_KEY": KEY.hex()})
    assert s.wactorz_fleet_key() == KEY and KEY.hex() not in repr(s)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'name = "n"\nwactorz_key_file = "{key_file}"\n')
    assert load_settings({}, env={}, config_path=str(cfg)).wactorz_fleet_key() == KEY
    assert load_settings({"name": "n"}, env={}).wactorz_fleet_key() is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not hex at all, a secret", "not a hex key"),
        ("00ff", "at least 16 bytes"),
        (None, "wactorz_key_file"),
    ],
)
def test_a_bad_key_is_one_clear_line_without_the_key(tmp_path, content, fragment):
    key_file = tmp_path / "fleet.key"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(SettingsError) as bad:
        load_settings({"name": "n", "wactorz_key_file": str(key_file)}, env={})
    assert fragment in bad.value.message
    assert content is None or content not in bad.value.message
    with pytest.raises(SettingsError) as bad_env:
        load_settings({"name": "n"}, env={"WACTORZ_NODE_KEY": "secret-but-not-hex"})
    assert "secret-but-not-hex" not in bad_env.value.message and "WACTORZ_NODE_KEY" in bad_env.value.message
    cfg = tmp_path / "agent.toml"
    cfg.write_text('name = "n"\nwactorz_key = 987654321\n')  # not even text
    with pytest.raises(SettingsError) as bad_file:
        load_settings({}, env={}, config_path=str(cfg))
    assert "987654321" not in bad_file.value.message and "wactorz_key" in bad_file.value.message


def _spawn_receipt(probe, node, since):
    return probe.wait_for(f"nodes/{node}/receipts", lambda m: m.json()["cmd"] == "spawn", since=since).json()


def test_a_replayed_wactorz_signed_spawn_is_refused_after_a_restart(mqtt_broker, probe, tmp_path):
    key_file = tmp_path / "fleet.key"
    key_file.write_text(KEY.hex())
    node = "wz-keyed"
    settings = settings_for(
        mqtt_broker,
        node,
        tmp_path / "data",
        allow_code=True,
        wactorz_key_file=str(key_file),
        state_dir=str(tmp_path / "state"),
    )
    probe.subscribe(f"nodes/{node}/receipts")
    probe.subscribe(f"nodes/{node}/status")
    topic = contract.node_topic(node, "spawn")
    body = json.dumps({"name": "keyed", "code": TICKER, "poll_interval": 0.5}).encode()
    signed = {"UserProperty": WactorzSigner(KEY).properties(topic, body)}
    agent = AgentThread(settings).start()
    try:
        probe.wait_for(f"nodes/{node}/status", _online)
        mark = probe.mark()
        probe.publish(topic, body)  # unsigned: a keyed node refuses it
        assert _spawn_receipt(probe, node, mark)["code"] == "bad_signature"
        mark = probe.mark()
        probe.publish(topic, body, properties=signed)
        assert _spawn_receipt(probe, node, mark)["status"] == "ok"
        mark = probe.mark()
        probe.publish(topic, body, properties=signed)  # captured and replayed at once
        assert _spawn_receipt(probe, node, mark)["code"] == "replay"
    finally:
        agent.stop()
    assert (tmp_path / "data" / "wactorz_sequences.json").is_file()
    mark = probe.mark()
    agent = AgentThread(settings).start()  # the same node, restarted: nothing runs "keyed"
    try:
        probe.wait_for(f"nodes/{node}/status", _online, since=mark)
        mark = probe.mark()
        probe.publish(topic, body, properties=signed)  # replayed after the restart
        refused = _spawn_receipt(probe, node, mark)
        assert refused["status"] == "error" and refused["code"] == "replay", refused
        mark = probe.mark()
        fresh = {"UserProperty": WactorzSigner(KEY).properties(topic, body)}
        probe.publish(topic, body, properties=fresh)  # a new signature is welcome
        assert _spawn_receipt(probe, node, mark)["status"] == "ok"
    finally:
        agent.stop()
