"""Wactorz nodes seen from a console with an operator identity (issue 21): shown
either way; verified with the fleet key (``--wactorz-key-file``) when the console
holds it; unverified ones are listed as such and never commanded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interop_kit import COUNTER, run, wait_online

from devfleet_base.signing import Identity

KEY = b"interop-signing-console-key-0123"


def test_a_signing_console_sees_wactorz_nodes_and_commands_only_verified_ones(
    peers: Any, capsys: Any, tmp_path: Path
) -> None:
    identity = str(Identity.generate("interop-console").save(tmp_path / "console.json"))
    key_file = tmp_path / "wactorz.key"
    key_file.write_text(KEY.hex() + "\n")
    wz = peers.wactorz("wz-keyed", WACTORZ_NODE_KEY=KEY.hex(), WACTORZ_NODE_SIGNING="enforce")
    peers.wactorz("wz-plain")
    url = peers.broker.url
    wait_online(url, "wz-keyed", "wz-plain")
    spec = tmp_path / "c.json"
    spec.write_text(json.dumps({"name": "vc", "code": COUNTER}))
    signing = ("--broker", url, "--signing-key-file", identity)
    # No fleet key: both shown (their devfleet _sig is absent, as always), unverified.
    code, out, err = run(capsys, *signing, "--json", "ls")
    assert code == 0, err
    assert {r["node"]: (r["health"], r["verified"]) for r in json.loads(out)} == {
        "wz-keyed": ("online", False),
        "wz-plain": ("online", False),
    }
    code, out, err = run(capsys, *signing, "ls")
    assert code == 0 and out.count("unverified") == 2, out
    code, _, err = run(capsys, *signing, "spawn", "wz-plain", str(spec))
    assert code == 1 and "unverified" in err and "--wactorz-key-file" in err, err
    # With the key: the keyed node is verified and commanded (signed the Wactorz way);
    # the keyless one is not taken at all.
    keyed = (*signing, "--wactorz-key-file", str(key_file))
    code, out, err = run(capsys, *keyed, "--json", "ls")
    assert code == 0, err
    assert {r["node"]: (r["health"], r["verified"]) for r in json.loads(out)} == {
        "wz-keyed": ("online", True)
    }
    code, out, err = run(capsys, *keyed, "spawn", "wz-keyed", str(spec))
    assert code == 0, err + wz.tail()
    code, out, err = run(capsys, *keyed, "--json", "actors", "wz-keyed")
    assert [r["name"] for r in json.loads(out)] == ["vc"], err
    code, _, err = run(capsys, *keyed, "stop", "wz-keyed", "vc")
    assert code == 0, err + wz.tail()
    assert str(KEY.hex()) not in err + out
