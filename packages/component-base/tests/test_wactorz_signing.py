"""Wactorz-style signatures (MQTT 5 user properties): checked against the rule written out
independently here, forgeries and replays refused, junk never crashes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_base.errors import SignatureError
from devfleet_base.wactorz_signing import (
    SequenceGuard,
    WactorzSigner,
    control_leaf,
    publication_signed,
    verify_control,
)

KEY = b"k" * 32
TOPIC = "nodes/n1/spawn"


def _mac(topic: str, seq: str, payload: bytes) -> str:
    return hmac.new(KEY, topic.encode() + b"\n" + seq.encode() + b"\n" + payload, hashlib.sha256).hexdigest()


def test_signer_matches_the_wactorz_rule_and_verifies() -> None:
    props = dict(WactorzSigner(KEY).properties(TOPIC, b"{}"))
    assert props["wactorz-sig"] == _mac(TOPIC, props["wactorz-seq"], b"{}")
    guard = SequenceGuard()
    assert verify_control(KEY, TOPIC, b"{}", props.items(), guard) is True
    with pytest.raises(SignatureError) as replay:
        verify_control(KEY, TOPIC, b"{}", props.items(), guard)
    assert replay.value.code == "replay"


def test_unsigned_is_not_a_wactorz_message_and_forgeries_are_refused() -> None:
    guard = SequenceGuard()
    assert verify_control(KEY, TOPIC, b"{}", (), guard) is False
    good = dict(WactorzSigner(KEY).properties(TOPIC, b"{}"))
    for props in (
        {**good, "wactorz-sig": "0" * 64},
        {"wactorz-sig": good["wactorz-sig"]},
        {**good, "wactorz-seq": "-1"},
    ):
        with pytest.raises(SignatureError) as bad:
            verify_control(KEY, TOPIC, b"{}", props.items(), guard)
        assert bad.value.code == "bad_signature"
    with pytest.raises(SignatureError):  # signed for another topic
        verify_control(KEY, "nodes/n1/stop", b"{}", good.items(), guard)


def test_publication_signature() -> None:
    stamp = "0123456789abcdef.1"
    body = b"wactorz-node-publication-v1\n" + b"\n".join((b"nodes/n/heartbeat", stamp.encode(), b"{}"))
    sig = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    props = [("wactorz-node-stamp", stamp), ("wactorz-node-sig", sig)]
    assert publication_signed(KEY, "nodes/n/heartbeat", b"{}", props)
    assert not publication_signed(KEY, "nodes/n/heartbeat", b"{ }", props)
    assert not publication_signed(KEY, "nodes/n/heartbeat", b"{}", [("wactorz-node-stamp", "x"), props[1]])
    assert control_leaf("nodes/n/desired_state") == "desired_state"
    assert control_leaf("nodes/n/heartbeat") is None


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=80)), max_size=5), st.binary(max_size=64))
def test_hostile_properties_never_crash(props: list[tuple[str, str]], payload: bytes) -> None:
    with contextlib.suppress(SignatureError):
        verify_control(KEY, TOPIC, payload, props, SequenceGuard())
    assert publication_signed(KEY, TOPIC, payload, props) in (True, False)


def test_sequence_guard_forgets_into_a_floor_and_survives_a_snapshot() -> None:
    guard = SequenceGuard(max_topics=2)
    for topic, seq in (("nodes/n/a", 10), ("nodes/n/b", 20), ("nodes/n/c", 30)):
        guard.check_and_record(topic, seq)
    assert guard.floor == 10  # "a" was forgotten: nothing at or below 10 passes anywhere
    with pytest.raises(SignatureError):
        guard.check_and_record("nodes/n/a", 10)
    guard.check_and_record("nodes/n/a", 11)
    again = SequenceGuard(max_topics=2)
    again.restore(guard.snapshot())
    for topic, seq in (("nodes/n/a", 11), ("nodes/n/c", 30), ("nodes/n/z", 10)):
        with pytest.raises(SignatureError) as replay:
            again.check_and_record(topic, seq)
        assert replay.value.code == "replay"
    again.check_and_record("nodes/n/c", 31)
    with pytest.raises(ValueError):
        again.restore(["not", "a", "snapshot"])
