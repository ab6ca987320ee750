"""Signatures the Wactorz way: MQTT 5 user properties over the payload bytes.

The packaged Wactorz runner (``wactorz-node``, wactorz 0.7.2) neither writes nor
reads devfleet's ``_sig`` field. Its main signs a control message with
``wactorz-seq`` (a sequence, microseconds, strictly increasing) and ``wactorz-sig``
(hex HMAC-SHA256 of ``topic + "\\n" + seq + "\\n" + payload bytes``); a node signs
what it publishes with ``wactorz-node-stamp`` (``{run:16 hex}.{count}``) and
``wactorz-node-sig`` (hex HMAC-SHA256 of ``"wactorz-node-publication-v1\\n" +
topic + "\\n" + stamp + "\\n" + payload bytes``). With a shared fleet key (the
node's ``WACTORZ_NODE_KEY`` = the devfleet key in hex) each side checks the other.

Source: ``wactorz/core/node_signing.py`` and ``wactorz/core/node_publications.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Iterable
from typing import Final

from .errors import Code, SignatureError

__all__ = [
    "CONTROL_LEAVES",
    "SequenceGuard",
    "WactorzSigner",
    "control_leaf",
    "publication_signed",
    "verify_control",
]

SEQUENCE: Final = "wactorz-seq"
SIGNATURE: Final = "wactorz-sig"
STAMP: Final = "wactorz-node-stamp"
NODE_SIGNATURE: Final = "wactorz-node-sig"

#: The ``nodes/{node}/{leaf}`` topics a Wactorz main signs and a keyed node checks.
CONTROL_LEAVES: Final = frozenset(
    {
        "spawn",
        "desired_state",
        "stop",
        "stop_all",
        "restart",
        "restart_agent",
        "migrate",
        "code_request",
        "reset",
    }
)

_PUBLICATION_CONTEXT: Final = b"wactorz-node-publication-v1\n"
_STAMP_RE: Final = re.compile(r"[0-9a-f]{16}\.[1-9][0-9]{0,18}")


class SequenceGuard:
    """The highest Wactorz sequence accepted per topic (a Wactorz node's own rule: a
    sequence must grow), for at most ``max_topics`` topics.

    When a topic is forgotten to make room, its sequence becomes the guard's
    ``floor``: no sequence at or below it is accepted on any topic from then on
    (Wactorz sequences are microsecond timestamps, so only old messages meet it).
    Like :class:`devfleet_base.replay.ReplayGuard`, forgetting may refuse an old
    honest message, never accept a replay. :meth:`snapshot` and :meth:`restore`
    let the agent keep the guard across restarts.
    """

    def __init__(self, max_topics: int = 1024) -> None:
        self._last: dict[str, int] = {}
        self._max = max_topics
        self.floor = 0

    def check_and_record(self, topic: str, seq: int) -> None:
        """Raise SignatureError (``replay``) unless ``seq`` is above the last on ``topic``."""
        last = self._last.get(topic, self.floor)
        if seq <= last or seq <= self.floor:
            raise SignatureError(
                f"replayed or out-of-order message on {topic} (seq {seq} <= {max(last, self.floor)})",
                code=Code.REPLAY,
            )
        self._last.pop(topic, None)
        self._last[topic] = seq
        while len(self._last) > self._max:
            self.floor = max(self.floor, self._last.pop(next(iter(self._last))))

    def snapshot(self) -> dict[str, object]:
        """``{"floor": int, "last": {topic: seq}}``, oldest topic first (JSON-ready)."""
        return {"floor": self.floor, "last": dict(self._last)}

    def restore(self, snapshot: object) -> None:
        """Take back a :meth:`snapshot`; malformed entries are skipped.

        Raises:
            ValueError: ``snapshot`` is not a snapshot at all (the caller decides
                what an unreadable memory means).
        """
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("last"), dict):
            raise ValueError("not a Wactorz sequence snapshot")
        floor = snapshot.get("floor", 0)
        if isinstance(floor, int) and not isinstance(floor, bool):
            self.floor = max(self.floor, floor)
        for topic, seq in snapshot["last"].items():
            if isinstance(topic, str) and isinstance(seq, int) and not isinstance(seq, bool):
                self._last[topic] = max(seq, self._last.get(topic, 0))
        while len(self._last) > self._max:
            self.floor = max(self.floor, self._last.pop(next(iter(self._last))))


def control_leaf(topic: str) -> str | None:
    """The leaf of a Wactorz control topic (``nodes/{node}/{leaf}``), else None."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "nodes" and parts[1] and parts[2] in CONTROL_LEAVES:
        return parts[2]
    return None


def _control_mac(key: bytes, topic: str, seq: int, payload: bytes) -> str:
    message = b"\n".join((topic.encode("utf-8"), str(seq).encode("ascii"), payload))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class WactorzSigner:
    """Signs control messages for Wactorz nodes (the console's part as main)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._last = 0
        self._lock = threading.Lock()

    def properties(self, topic: str, payload: bytes) -> list[tuple[str, str]]:
        """The user properties that sign ``payload`` as sent on ``topic``."""
        with self._lock:
            self._last = seq = max(self._last + 1, time.time_ns() // 1000)
        return [(SEQUENCE, str(seq)), (SIGNATURE, _control_mac(self._key, topic, seq, payload))]


def verify_control(
    key: bytes, topic: str, payload: bytes, properties: Iterable[tuple[str, str]], guard: SequenceGuard
) -> bool:
    """Check a Wactorz-signed control message.

    Returns:
        False when it carries no Wactorz signature (the caller checks ``_sig``); True
        when it carries a valid one, not seen before (recorded in ``guard`` per topic).

    Raises:
        SignatureError: a Wactorz signature that does not match (``bad_signature``),
            or a sequence not above the last one accepted on that topic (``replay``).
    """
    props = dict(properties)
    signature, raw_seq = props.get(SIGNATURE), props.get(SEQUENCE)
    if signature is None and raw_seq is None:
        return False
    if (
        signature is None
        or raw_seq is None
        or not (raw_seq.isascii() and raw_seq.isdigit())
        or len(raw_seq) > 20
    ):
        raise SignatureError("a Wactorz signature needs wactorz-seq (digits) and wactorz-sig")
    seq = int(raw_seq)
    if not hmac.compare_digest(
        signature.encode("utf-8", "replace"), _control_mac(key, topic, seq, payload).encode()
    ):
        raise SignatureError("Wactorz signature does not match (wrong key, or the message was altered)")
    guard.check_and_record(topic, seq)
    return True


def publication_signed(key: bytes, topic: str, payload: bytes, properties: Iterable[tuple[str, str]]) -> bool:
    """Whether a Wactorz node signed ``payload`` on ``topic`` with ``key``."""
    props = dict(properties)
    signature, stamp = props.get(NODE_SIGNATURE), props.get(STAMP, "")
    if signature is None or not _STAMP_RE.fullmatch(stamp):
        return False
    message = _PUBLICATION_CONTEXT + b"\n".join((topic.encode("utf-8"), stamp.encode("ascii"), payload))
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode("ascii"))
