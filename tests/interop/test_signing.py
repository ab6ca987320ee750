"""Signing in enforce mode both ways, with a shared fleet key (issue 21).

The Wactorz node holds the fleet key as ``WACTORZ_NODE_KEY`` (hex) in enforce
mode; the devfleet node reads the same variable, the console ``DEVFLEET_WACTORZ_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from interop_kit import COUNTER, run, wait_actor, wait_online

KEY = b"interop-fleet-key-0123456789abcdef"


def _wactorz_signed(topic: str, payload: bytes, seq: int) -> list[tuple[str, str]]:
    """What a Wactorz main attaches (written out here from its documented rule, independently
    of devfleet_base.wactorz_signing)."""
    mac = hmac.new(KEY, topic.encode() + b"\n" + str(seq).encode() + b"\n" + payload, hashlib.sha256)
    return [("wactorz-seq", str(seq)), ("wactorz-sig", mac.hexdigest())]


def test_the_console_signs_the_wactorz_way_and_checks_its_answers(
    peers: Any, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    wz = peers.wactorz("wz-sig", WACTORZ_NODE_KEY=KEY.hex(), WACTORZ_NODE_SIGNING="enforce")
    url = peers.broker.url
    wait_online(url, "wz-sig")
    spec = tmp_path / "c.json"
    spec.write_text(json.dumps({"name": "sc", "code": COUNTER}))
    # Unsigned: the node refuses it (enforce), so nothing confirms it.
    code, _, err = run(capsys, "--broker", url, "spawn", "wz-sig", str(spec), "--timeout", "4")
    assert code == 3, err
    assert "Refused nodes/wz-sig/spawn" in wz.tail(80)
    # Signed with the fleet key, the Wactorz way: done, and its signed answers are taken.
    monkeypatch.setenv("DEVFLEET_WACTORZ_KEY", KEY.hex())
    signed = ("--broker", url)
    code, _, err = run(capsys, *signed, "spawn", "wz-sig", str(spec))
    assert code == 0, err + wz.tail()
    code, _, err = run(capsys, *signed, "stop", "wz-sig", "sc")
    assert code == 0, err + wz.tail()
    # Holding the key, the console takes Wactorz nodes' presence only when signed with it.
    peers.wactorz("wz-open")  # no key: what it publishes is unsigned
    monkeypatch.delenv("DEVFLEET_WACTORZ_KEY")
    wait_online(url, "wz-open")  # seen by a console without the key
    monkeypatch.setenv("DEVFLEET_WACTORZ_KEY", KEY.hex())
    code, out, err = run(capsys, *signed, "--json", "ls")
    assert code == 0, err
    assert [r["node"] for r in json.loads(out)] == ["wz-sig"]
    monkeypatch.delenv("DEVFLEET_WACTORZ_KEY")
    code, out, err = run(capsys, "--broker", url, "--json", "ls")
    assert sorted(r["node"] for r in json.loads(out)) == ["wz-open", "wz-sig"], err


def test_a_devfleet_node_accepts_wactorz_signed_control_and_refuses_unsigned(
    peers: Any, tmp_path: Path, probe_factory: Any
) -> None:
    peers.devfleet("df-sig", "--allow-code", env={"WACTORZ_NODE_KEY": KEY.hex()})
    url = peers.broker.url
    wait_online(url, "df-sig")
    probe = probe_factory(peers.broker)
    probe.subscribe("nodes/df-sig/receipts")  # before anything is sent: receipts are not retained
    topic = "nodes/df-sig/spawn"
    body = json.dumps({"name": "ws", "code": COUNTER, "poll_interval": 0.5}).encode()
    mark = probe.mark()
    probe.publish(topic, body)  # unsigned: refused
    refused = probe.wait_for("nodes/df-sig/receipts", lambda m: m.json()["cmd"] == "spawn", since=mark)
    assert refused.json()["code"] == "bad_signature"
    seq = time.time_ns() // 1000
    forged = [("wactorz-seq", str(seq)), ("wactorz-sig", "0" * 64)]
    mark = probe.mark()
    probe.publish(topic, body, properties={"UserProperty": forged})
    refused = probe.wait_for("nodes/df-sig/receipts", lambda m: m.json()["cmd"] == "spawn", since=mark)
    assert refused.json()["code"] == "bad_signature"
    mark = probe.mark()
    probe.publish(topic, body, properties={"UserProperty": _wactorz_signed(topic, body, seq)})
    taken = probe.wait_for("nodes/df-sig/receipts", lambda m: m.json()["cmd"] == "spawn", since=mark)
    assert taken.json()["status"] == "ok", taken.json()
    wait_actor(url, "df-sig", "ws")
    # The same signed message again is a replay; a bare-string stop signed the Wactorz way works.
    mark = probe.mark()
    probe.publish(topic, body, properties={"UserProperty": _wactorz_signed(topic, body, seq)})
    replay = probe.wait_for("nodes/df-sig/receipts", lambda m: m.json()["cmd"] == "spawn", since=mark)
    assert replay.json()["code"] == "replay"
    stop = b'"ws"'
    probe.publish(
        "nodes/df-sig/stop",
        stop,
        properties={"UserProperty": _wactorz_signed("nodes/df-sig/stop", stop, seq + 1)},
    )
    wait_actor(url, "df-sig", "ws", present=False)
