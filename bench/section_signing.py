"""Signing costs (Ed25519 through cryptography, against HMAC-SHA256 and a pure-Python
Ed25519), and the junk-status rebirth count of issue 13.

The floor of each signature figure is HMAC-SHA256 over the same bytes: what the old
shared-key scheme paid. The pure-Python verify is RFC 8032's reference code (§6), the
fallback a Pi Zero without a ``cryptography`` wheel would have.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from typing import Any

TITLE = "signatures: Ed25519 sign/verify, and births from junk status writes"

# ---- RFC 8032 §6 reference verify (pure Python) ---------------------------------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_Q = 2**252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    x = (a[1] - a[0]) * (b[1] - b[0]) % _P
    y = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c = 2 * a[3] * b[3] * _D % _P
    d = 2 * a[2] * b[2] % _P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(s: int, pt: tuple[int, ...]) -> tuple[int, ...]:
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _recover_x(y: int, sign: int) -> int | None:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _decompress(s: bytes) -> tuple[int, ...] | None:
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign) if y < _P else None
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_G = (_recover_x(_GY, 0) or 0, _GY, 1, (_recover_x(_GY, 0) or 0) * _GY % _P)


def pure_verify(public: bytes, msg: bytes, sig: bytes) -> bool:
    a, r = _decompress(public), _decompress(sig[:32])
    if a is None or r is None:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % _Q
    sb, rha = _mul(int.from_bytes(sig[32:], "little"), _G), _add(r, _mul(h, a))
    return (sb[0] * rha[2] - rha[0] * sb[2]) % _P == 0 and (sb[1] * rha[2] - rha[1] * sb[2]) % _P == 0


# ---- measurements ----------------------------------------------------------------------------


def _per_call(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def signatures(n: int) -> dict[str, float]:
    from devfleet_base.replay import ReplayGuard
    from devfleet_base.signing import Identity, NodeVerifier, Verifier, signed_bytes

    operator = Identity.generate("console-bench")
    node = operator.issue_node("bench-1")
    topic = "nodes/bench-1/cmd/configure"
    body = {
        "id": "0" * 32,
        "args": {"set": {"telemetry.interval": 5}},
        "ts": time.time(),
        "expires_at": time.time() + 60,
    }
    msgs = [operator.sign(topic, dict(body, id=f"{i:032x}")) for i in range(n)]
    verifier = Verifier(operator.operators(), ReplayGuard(max_entries=n + 1))
    it = iter(msgs)
    receipt = node.sign("replies/x", {"id": "0" * 32, "node": "bench-1", "cmd": "ping", "status": "ok"})
    console = NodeVerifier(operator.operators())
    raw = signed_bytes(topic, "k", 1, 2, body)
    key = os.urandom(32)
    sig = bytes.fromhex(msgs[0]["_sig"]["sig"])
    public = bytes.fromhex(operator.public_key)
    data0 = signed_bytes(topic, operator.kid, msgs[0]["_sig"]["seq"], msgs[0]["_sig"]["exp"], msgs[0])
    assert pure_verify(public, data0, sig)
    return {
        "hmac": _per_call(lambda: hmac.new(key, raw, hashlib.sha256).digest(), n),
        "sign": _per_call(lambda: operator.sign(topic, body), n),
        "verify": _per_call(lambda: verifier.check(topic, next(it)), n),
        "receipt_verify": _per_call(lambda: console.check("bench-1", "replies/x", receipt), n),
        "pure_verify": _per_call(lambda: pure_verify(public, data0, sig), max(3, n // 200)),
    }


async def junk_births(writes: int = 1050) -> dict[str, Any]:
    """Births a node publishes while ``writes`` junk payloads land on its own status."""
    import tempfile
    from pathlib import Path

    from devfleet_agent.testing import AgentThread, settings_for
    from devfleet_base.testing.broker import MosquittoBroker
    from devfleet_base.testing.mqtt_probe import MqttProbe

    with MosquittoBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        agent = AgentThread(settings_for(broker, "junk-bench", Path(tmp))).start()
        probe = MqttProbe.connect_to(broker)
        try:
            probe.wait_for("nodes/junk-bench/status", lambda m: m.json()["status"] == "online")
            probe.subscribe("nodes/junk-bench/meta")
            start = probe.mark()
            t0 = time.perf_counter()
            for i in range(writes):
                probe.publish("nodes/junk-bench/status", {"junk": i}, retain=True)
            done = probe.mark()
            probe.wait_for(
                "nodes/junk-bench/status",
                lambda m: m.json().get("status") == "online",
                since=done,
                timeout=30,
            )
            await asyncio.sleep(0)
            return {
                "writes": writes,
                "births": len(probe.messages("nodes/junk-bench/meta", since=start)),
                "seconds": time.perf_counter() - t0,
            }
        finally:
            probe.close()
            agent.stop()


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    log("signatures")
    s = signatures(200 if quick else 5000)
    log("junk status writes")
    j = await junk_births(105 if quick else 1050)
    rows = [
        row("Ed25519 sign (console: one command)", s["sign"] * 1e6, "µs", s["hmac"] * 1e6),
        row("Ed25519 verify + replay guard (node: one command)", s["verify"] * 1e6, "µs", s["hmac"] * 1e6),
        row(
            "Ed25519 verify of a node-signed receipt (console, certificate cached)",
            s["receipt_verify"] * 1e6,
            "µs",
            s["hmac"] * 1e6,
        ),
        row(
            "pure-Python Ed25519 verify (RFC 8032 reference; the no-wheel fallback)",
            s["pure_verify"] * 1e6,
            "µs",
            s["verify"] * 1e6,
        ),
        row(
            f"births from {j['writes']:,} junk writes to a node's own status",
            j["births"],
            "births",
            None,
            target="a handful (was ~922 of 1,050)",
        ),
    ]
    return {"rows": rows, "details": {"signatures_seconds": s, "junk": j}}
