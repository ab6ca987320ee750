"""Wactorz nodes seen from a console that signs (issue 21): their presence is signed
the Wactorz way (``wactorz-node-stamp`` + ``wactorz-node-sig``) or not at all, never
with devfleet's ``_sig``. Shown either way; verified with the fleet key when the
console holds it; an unverified one is never commanded. Real broker; the Wactorz
node is played by a probe publishing wactorz 0.7.2's shapes."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from devfleet_base.signing import Identity
from devfleet_command import AsyncFleet
from devfleet_command.commands.nodes import table
from devfleet_command.errors import UnverifiedNode

KEY = b"console-wactorz-fleet-key-0123456"
BEAT = {"version": "0.7.2", "runtime": "node", "agents": [], "uptime_s": 5.0, "cpu_pct": 2.0}
MANIFEST = {"version": "0.7.2", "runtime": "node", "ram_total_mb": 1000}


def _signed(topic: str, payload: bytes, count: int) -> dict[str, Any]:
    """The user properties a wactorz-node attaches (written out from its rule, not
    from devfleet_base.wactorz_signing)."""
    stamp = f"{'ab' * 8}.{count}"
    mac = hmac.new(
        KEY,
        b"wactorz-node-publication-v1\n" + b"\n".join((topic.encode(), stamp.encode(), payload)),
        hashlib.sha256,
    )
    return {"UserProperty": [("wactorz-node-stamp", stamp), ("wactorz-node-sig", mac.hexdigest())]}


def _present(probe: Any, node: str, *, sign: bool) -> None:
    """A manifest (retained) and a heartbeat from ``node``, signed with KEY or not."""
    for n, (leaf, body, retain) in enumerate(
        (("manifest", MANIFEST, True), ("heartbeat", BEAT, False)), start=1
    ):
        topic = f"nodes/{node}/{leaf}"
        raw = json.dumps({**body, "node": node}).encode()
        probe.publish(topic, raw, retain=retain, properties=_signed(topic, raw, n) if sign else None)


def _text(view: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(table([view]))
    return out.getvalue()


async def test_a_signing_console_shows_an_unsigned_wactorz_node_unverified_and_never_commands_it(
    mosquitto: Any, agents: Any, probe_factory: Any, tmp_path: Path
) -> None:
    operator = Identity.generate("console-wz")
    agents.start("t6", "--signing-key-file", str(operator.issue_node("t6").save(tmp_path / "t6.json")))
    probe = probe_factory(mosquitto)
    probe.subscribe("nodes/wz-open/#")
    async with AsyncFleet.connect(mosquitto.url, identity=operator) as fleet:
        await fleet.wait_for(lambda m: (n := m.get("t6")) is not None and n.online, 20)
        _present(probe, "wz-open", sign=False)
        await fleet.wait_for(lambda m: (n := m.get("wz-open")) is not None and n.heartbeat is not None, 10)
        view = fleet.node("wz-open")
        assert view.health == "online" and view.verified is False and view.summary()["verified"] is False
        assert "unverified" in _text(view) and "unverified" not in _text(fleet.node("t6"))
        mark = probe.mark()
        with pytest.raises(UnverifiedNode) as refused:
            await fleet.spawn("wz-open", {"name": "x", "code": "async def process(agent):\n    pass\n"})
        assert "--wactorz-key-file" in refused.value.message
        with pytest.raises(UnverifiedNode):
            await fleet.stop_actor("wz-open", "x")
        with pytest.raises(UnverifiedNode):
            await fleet.stop_all("wz-open")
        await fleet.wait_until_synced()
        assert [m.topic for m in probe.messages(since=mark) if not m.topic.endswith("/list")] == []
        # A devfleet node's name never becomes a Wactorz one: a forged Wactorz heartbeat
        # for t6 is held to t6's own rule (signed by t6) and dropped.
        refused_before = fleet.refused_descriptions
        probe.publish("nodes/t6/heartbeat", {**BEAT, "node": "t6", "uptime_s": 999999.0})
        await fleet.wait_until_synced()
        assert fleet.refused_descriptions == refused_before + 1
        assert (fleet.node("t6").heartbeat or {}).get("uptime_s") is None and fleet.node(
            "t6"
        ).verified is None


async def test_a_console_with_the_fleet_key_verifies_wactorz_presence(
    mosquitto: Any, probe_factory: Any
) -> None:
    operator = Identity.generate("console-wz-key")
    probe = probe_factory(mosquitto)
    _present(probe, "wz-signed", sign=True)
    _present(probe, "wz-open", sign=False)
    async with AsyncFleet.connect(mosquitto.url, identity=operator, wactorz_key=KEY) as fleet:
        _present(probe, "wz-signed", sign=True)
        await fleet.wait_for(lambda m: (n := m.get("wz-signed")) is not None and n.heartbeat is not None, 10)
        assert fleet.node("wz-signed").verified is True
        assert "unverified" not in _text(fleet.node("wz-signed"))
        assert "wz-open" not in fleet.model  # a keyed console takes only signed presence
    async with AsyncFleet.connect(mosquitto.url) as fleet:  # checks nothing: shows both, claims nothing
        assert {fleet.node(n).verified for n in ("wz-signed", "wz-open")} == {None}
