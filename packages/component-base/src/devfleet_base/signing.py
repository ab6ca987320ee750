"""Signed control messages: HMAC-SHA256 over topic, sequence and payload.

The signature travels inside the JSON payload as ``"_sig": {"kid", "seq", "mac"}``
so that it survives any broker, MQTT 3.1.1 included. ``mac`` is the hex
HMAC-SHA256, keyed with the node's shared secret, of::

    topic + "\\n" + str(seq) + "\\n" + canonical_json(payload without "_sig")

``canonical_json`` sorts keys and uses no whitespace. ``seq`` must increase per
signer (``kid``); a node remembers the highest ``seq`` it accepted from each
signer and refuses anything not above it, so a captured message cannot be
replayed. Signers use microseconds since the epoch, forced strictly increasing,
so a restarted console needs no stored state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from typing import Any

from .errors import Code, SignatureError

__all__ = ["ReplayGuard", "Signer", "canonical", "compute_mac", "verify"]

_SIG_KEY = "_sig"


def canonical(payload: dict[str, Any]) -> bytes:
    """The signed form of a payload: sorted keys, no whitespace, ``_sig`` left out."""
    body = {k: v for k, v in payload.items() if k != _SIG_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_mac(key: bytes, topic: str, seq: int, payload: dict[str, Any]) -> str:
    msg = topic.encode() + b"\n" + str(seq).encode() + b"\n" + canonical(payload)
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


class Signer:
    """Signs outbound control messages for one signer id (``kid``)."""

    def __init__(self, key: bytes, kid: str) -> None:
        if len(key) < 16:
            raise ValueError("a signing key must be at least 16 bytes")
        self._key = key
        self.kid = kid
        self._last = 0
        self._lock = threading.Lock()

    def _next_seq(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last

    def sign(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``payload`` with a fresh ``_sig``."""
        seq = self._next_seq()
        signed = dict(payload)
        signed[_SIG_KEY] = {
            "kid": self.kid,
            "seq": seq,
            "mac": compute_mac(self._key, topic, seq, payload),
        }
        return signed


class ReplayGuard:
    """The highest sequence accepted per signer, bounded in size.

    ``state()`` / ``ReplayGuard(initial)`` let an agent persist it across restarts.
    """

    def __init__(self, initial: dict[str, int] | None = None, *, max_signers: int = 256) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict(initial or {})
        self._max = max_signers

    def check_and_record(self, kid: str, seq: int) -> None:
        last = self._seen.get(kid)
        if last is not None and seq <= last:
            raise SignatureError(
                f"replayed or out-of-order message from {kid!r} (seq {seq} <= {last})",
                code=Code.REPLAY,
            )
        self._seen[kid] = seq
        self._seen.move_to_end(kid)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def state(self) -> dict[str, int]:
        return dict(self._seen)


def verify(key: bytes, topic: str, payload: Any, guard: ReplayGuard) -> str:
    """Check a signed payload; return the signer id. Raise SignatureError
    (``bad_signature`` for missing/forged, ``replay`` for an old sequence)."""
    if not isinstance(payload, dict):
        raise SignatureError("a signed message must be a JSON object")
    sig = payload.get(_SIG_KEY)
    if sig is None:
        raise SignatureError("this node requires signed control messages; the message has no _sig")
    if (
        not isinstance(sig, dict)
        or not isinstance(sig.get("kid"), str)
        or not isinstance(sig.get("seq"), int)
        or isinstance(sig.get("seq"), bool)
        or not isinstance(sig.get("mac"), str)
    ):
        raise SignatureError("_sig must be {kid: str, seq: int, mac: hex}")
    expected = compute_mac(key, topic, sig["seq"], payload)
    if not hmac.compare_digest(expected, sig["mac"]):
        raise SignatureError("signature does not match (wrong key, or the message was altered)")
    guard.check_and_record(sig["kid"], sig["seq"])
    return str(sig["kid"])
