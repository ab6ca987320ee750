"""``devfleet provision``: files, modes, rotation, and the credentials on a real mosquitto and agent."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devfleet_base.signing import Identity
from devfleet_base.testing.broker import MosquittoBroker
from devfleet_base.testing.mqtt_probe import ProbeConnectError
from devfleet_command import AsyncFleet
from devfleet_command.cli import main
from devfleet_command.provision import mosquitto_password_hash


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_password_hash_is_mosquitto_format() -> None:
    line = mosquitto_password_hash("secret", salt=b"\x00" * 12)
    kind, iterations, salt, digest = line.split("$")[1:]
    assert (kind, iterations, salt) == ("7", "101", "AAAAAAAAAAAAAAAA")
    assert len(digest) == 88  # 64 bytes in base64


def test_provision_console_then_node_files_and_rotation(capsys: Any, tmp_path: Path) -> None:
    code, out, err = run(capsys, "provision", "--console", "ops", "--out", str(tmp_path / "ops"))
    assert code == 0, err
    console_key = tmp_path / "ops" / "ops.json"
    assert "DEVFLEET_SIGNING_KEY_FILE" in out
    code, out, err = run(
        capsys, "--broker", "mqtts://broker.lan:8883", "provision", "rpi-1", "--out", str(tmp_path / "n")
    )
    assert code == 2 and "--signing-key-file" in err
    args = ("--signing-key-file", str(console_key), "--broker", "mqtts://broker.lan:8883", "--json")
    code, out, err = run(capsys, *args, "provision", "rpi-1", "--out", str(tmp_path / "n"))
    assert code == 0, err
    files = json.loads(out)["files"]
    for path in files.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    settings = tomllib.loads(Path(files["agent_toml"]).read_text())
    assert settings["name"] == settings["username"] == "rpi-1"
    assert settings["broker"] == "broker.lan" and settings["port"] == 8883 and settings["tls"] is True
    assert settings["signing_key_file"] == "/etc/devfleet/identity.json"
    node = Identity.load(files["identity"])
    console = Identity.load(console_key)
    assert node.cert["node"] == "rpi-1" and node.trusted.to_dict() == {"ops": console.public_key}
    first = (Path(files["passwd"]).read_text(), node.public_key)
    code, out, err = run(capsys, *args, "provision", "rpi-1", "--out", str(tmp_path / "n"))
    assert code == 0, err
    again = (Path(files["passwd"]).read_text(), Identity.load(files["identity"]).public_key)
    assert first[0] != again[0] and first[1] != again[1]  # rotated
    code, out, err = run(
        capsys, "--signing-key-file", files["identity"], "provision", "x", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "node identity" in err
    code, out, err = run(capsys, *args, "provision", "bad/name", "--out", str(tmp_path / "x"))
    assert code == 2
    ca = tmp_path / "broker-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    code, out, err = run(
        capsys, *args, "--tls-ca", str(ca), "provision", "rpi-2", "--out", str(tmp_path / "n2")
    )
    assert code == 0, err
    settings = tomllib.loads((tmp_path / "n2" / "agent.toml").read_text())
    assert settings["tls_ca"] == "/etc/devfleet/ca.pem" and "tls_cert" not in settings
    assert (tmp_path / "n2" / "ca.pem").read_text() == ca.read_text()


def test_provisioned_node_joins_a_password_broker_and_answers_signed(
    capsys: Any, tmp_path: Path, probe_factory: Any, agents: Any
) -> None:
    """The password line works in a real mosquitto's password_file, and the node, started
    with the agent.toml as written, answers a console that holds the operator identity."""
    run(capsys, "provision", "--console", "ops", "--out", str(tmp_path / "ops"))
    console_key = tmp_path / "ops" / "ops.json"
    passwd = tmp_path / "passwd"
    broker = MosquittoBroker(allow_anonymous=False, extra_config=[f"password_file {passwd}"])
    out = tmp_path / "node"
    code, _, err = run(
        capsys,
        "--signing-key-file",
        str(console_key),
        "--broker",
        f"mqtt://127.0.0.1:{broker.port}",
        "provision",
        "prov-1",
        "--out",
        str(out),
        "--install-dir",
        str(out),
    )
    assert code == 0, err
    console_password = (tmp_path / "ops" / "password").read_text().strip()
    passwd.write_text((out / "passwd").read_text() + (tmp_path / "ops" / "passwd").read_text())
    broker.start()
    try:
        settings = tomllib.loads((out / "agent.toml").read_text())
        probe_factory(broker, username="prov-1", password=settings["password"])  # accepted
        with pytest.raises(ProbeConnectError, match=r"prov-1|refused|authori"):
            probe_factory(broker, username="prov-1", password="wrong")
        agents.broker = broker
        agents.start("prov-1", "--config", str(out / "agent.toml"))
        import asyncio

        async def ping() -> Any:
            async with AsyncFleet.connect(
                broker.url, username="ops", password=console_password, identity=Identity.load(console_key)
            ) as fleet:
                await fleet.wait_for(lambda m: "prov-1" in m and m.get("prov-1").online, timeout=20)
                return await fleet.call("prov-1", "configure", {"set": {"description": "provisioned"}})

        assert asyncio.run(ping())["config_version"] >= 1
    finally:
        broker.close()


def test_client_certificate_from_the_fleet_ca_passes_mutual_tls(
    capsys: Any, tmp_path: Path, broker_factory: Any, probe_factory: Any, agents: Any
) -> None:
    broker = broker_factory(tls=True, require_client_cert=True)
    ca_key = broker.tls.ca_key  # the test kit's throwaway CA stands in for the fleet's
    run(capsys, "provision", "--console", "ops", "--out", str(tmp_path / "ops"))
    out = tmp_path / "node"
    code, _, err = run(
        capsys,
        *("--signing-key-file", str(tmp_path / "ops" / "ops.json"), "--broker", broker.url),
        *("provision", "prov-2", "--out", str(out), "--install-dir", str(out)),
        *("--ca-cert", str(broker.tls.ca_path), "--ca-key", str(ca_key)),
    )
    assert code == 0, err
    assert stat.S_IMODE(os.stat(out / "client.key").st_mode) == 0o600
    watcher = probe_factory(broker, client_cert=True)
    agents.broker = broker
    agents.start("prov-2", "--config", str(out / "agent.toml"))
    assert watcher.wait_for("nodes/prov-2/status", lambda m: m.json()["status"] == "online", timeout=20)
    code, _, err = run(
        capsys,
        *("--signing-key-file", str(tmp_path / "ops" / "ops.json"), "provision", "prov-3", "--out", str(out)),
        *("--ca-cert", str(broker.tls.ca_path)),
    )
    assert code == 2 and "--ca-key" in err


def test_unreadable_console_identity_is_a_usage_error(capsys: Any, tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "--signing-key-file", str(tmp_path / "missing.json"), "provision", "n", "--out", str(tmp_path)
    )
    assert code == 2 and "cannot read the signing identity" in err and err.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"kid": "ops", "private_key": "zz"}')
    code, _, err = run(capsys, "--signing-key-file", str(bad), "provision", "n", "--out", str(tmp_path))
    assert code == 2 and "bad.json" in err
