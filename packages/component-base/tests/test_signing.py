"""Signatures and the replay guard: what each key may sign, and the attacks the issue measured."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_base.errors import Code, SignatureError
from devfleet_base.replay import ReplayGuard
from devfleet_base.signing import Identity, Keyring, NodeVerifier, Verifier, signed_bytes

TOPIC = "nodes/n1/cmd/configure"


@pytest.fixture(scope="module")
def operator() -> Identity:
    return Identity.generate("console-a")


def verifier(op: Identity, **kw) -> Verifier:
    return Verifier(op.operators(), ReplayGuard(), **kw)


def test_round_trip_tamper_topic_and_replay(operator):
    v = verifier(operator)
    msg = operator.sign(TOPIC, {"id": "a", "args": {}})
    assert v.check(TOPIC, msg) == "console-a"
    with pytest.raises(SignatureError) as e:
        v.check(TOPIC, msg)
    assert e.value.code == Code.REPLAY
    other = operator.sign(TOPIC, {"id": "b"})
    with pytest.raises(SignatureError):  # same message, another node's topic
        v.check("nodes/n2/cmd/configure", other)
    with pytest.raises(SignatureError):
        v.check(TOPIC, dict(other, id="c"))
    with pytest.raises(SignatureError, match="no _sig"):
        v.check(TOPIC, {"id": "x"})


@pytest.mark.parametrize("field", ["kid", "seq", "exp"])
def test_every_signature_field_is_signed(operator, field):
    """Issue 13: a captured message replayed with a new kid (or seq, or expiry) ran again."""
    v = verifier(operator)
    msg = operator.sign(TOPIC, {"id": "a"})
    v.check(TOPIC, msg)
    changed = json.loads(json.dumps(msg))
    changed["_sig"][field] = {
        "kid": "console-b",
        "seq": msg["_sig"]["seq"] + 1,
        "exp": msg["_sig"]["exp"] + 3600,
    }[field]
    with pytest.raises(SignatureError) as e:
        v.check(TOPIC, changed)
    assert e.value.code == Code.BAD_SIGNATURE


def test_one_guard_for_every_signer(operator):
    other = Identity.generate("console-b")
    keys = Keyring({"console-a": operator.public_key, "console-b": other.public_key})
    v = Verifier(keys, ReplayGuard())
    a, b = operator.sign(TOPIC, {"id": "a"}), other.sign(TOPIC, {"id": "b"})
    v.check(TOPIC, a)
    v.check(TOPIC, b)
    for msg in (a, b):
        with pytest.raises(SignatureError, match="replayed"):
            v.check(TOPIC, msg)


def test_a_node_key_never_authorises_a_command(operator):
    """Issue 13: a message signed with node A's key was accepted by node B."""
    node_a = operator.issue_node("a")
    node_b = operator.issue_node("b")
    v = Verifier(node_b.trusted, ReplayGuard())
    forged = node_a.sign("nodes/b/cmd/configure", {"id": "x"})
    with pytest.raises(SignatureError, match="not one of this node's operators"):
        v.check("nodes/b/cmd/configure", forged)
    with pytest.raises(SignatureError):
        Keyring({"node:a": node_a.public_key})


def test_expiry_is_required_enforced_and_bounded(operator):
    clock = [1_000_000.0]
    v = Verifier(operator.operators(), ReplayGuard(clock=lambda: clock[0]), clock=lambda: clock[0])
    with pytest.raises(SignatureError, match="expiry"):
        v.check(TOPIC, operator.sign(TOPIC, {"id": "a"}, ttl=None))
    late = operator.sign(TOPIC, {"id": "b", "expires_at": 10.0})
    with pytest.raises(SignatureError) as e:
        v.check(TOPIC, late)
    assert e.value.code == Code.EXPIRED
    far = operator.sign(TOPIC, {"id": "c", "expires_at": clock[0] + 90 * 86400})
    with pytest.raises(SignatureError, match="days away"):
        v.check(TOPIC, far)


def test_node_signatures_name_their_node(operator):
    """Issue 13: a receipt claiming node X must come from X."""
    nv = NodeVerifier(operator.operators())
    node_a, node_b = operator.issue_node("a"), operator.issue_node("b")
    receipt = {"id": "c1", "node": "b", "cmd": "ping", "status": "ok"}
    nv.check("b", "replies/x", node_b.sign("replies/x", receipt))
    with pytest.raises(SignatureError, match="signed by 'a'"):
        nv.check("b", "replies/x", node_a.sign("replies/x", receipt))
    with pytest.raises(SignatureError):
        nv.check("b", "replies/y", node_b.sign("replies/x", receipt))
    rogue = Identity.generate("console-rogue").issue_node("b")
    with pytest.raises(SignatureError, match="not trusted"):
        nv.check("b", "replies/x", rogue.sign("replies/x", receipt))
    assert not nv.valid("b", "replies/x", receipt)


def test_replay_guard_survives_restarts_and_is_bounded(tmp_path):
    path = tmp_path / "replay.jsonl"
    now = [1000.0]
    guard = ReplayGuard(path, max_entries=3, clock=lambda: now[0])
    for seq in range(1, 6):
        guard.check_and_record("k", seq, 2000 + seq)
    assert len(guard) == 3 and guard.floor == 2002
    restored = ReplayGuard(path, max_entries=3, clock=lambda: now[0])
    for seq in range(1, 6):  # forgotten ones are below the floor: still refused
        with pytest.raises(SignatureError):
            restored.check_and_record("k", seq, 2000 + seq)
    now[0] = 2010.0  # everything expired: pruned, the journal compacted on load
    again = ReplayGuard(path, max_entries=3, clock=lambda: now[0])
    assert len(again) == 0
    assert len(path.read_text().splitlines()) == 1


def test_replay_journal_torn_line_keeps_the_rest(tmp_path):
    path = tmp_path / "replay.jsonl"
    guard = ReplayGuard(path, clock=lambda: 0.0)
    guard.check_and_record("k", 1, 100)
    with path.open("a") as fh:
        fh.write('[100, "k", ')  # a power cut mid-append
    with pytest.raises(SignatureError):
        ReplayGuard(path, clock=lambda: 0.0).check_and_record("k", 1, 100)


def test_identity_file_round_trip_is_private(tmp_path, operator):
    node = operator.issue_node("n1")
    path = node.save(tmp_path / "id" / "identity.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = Identity.load(path)
    assert loaded.public_key == node.public_key and loaded.cert == node.cert
    assert loaded.trusted.to_dict() == {"console-a": operator.public_key}
    path.write_text("{}")
    with pytest.raises(SignatureError, match=r"identity\.json"):
        Identity.load(path)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=20),
        st.dictionaries(
            st.sampled_from(["kid", "seq", "exp", "sig", "cert"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.text(max_size=130),
                st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
            ),
        ),
    )
)
def test_hostile_signatures_are_refused_cleanly(sig):
    op = (
        Identity.generate("console-h")
        if not hasattr(test_hostile_signatures_are_refused_cleanly, "op")
        else None
    )
    op = op or test_hostile_signatures_are_refused_cleanly.op  # type: ignore[attr-defined]
    test_hostile_signatures_are_refused_cleanly.op = op  # type: ignore[attr-defined]
    payload = {"id": "x", "_sig": sig}
    with pytest.raises(SignatureError):
        Verifier(op.operators(), ReplayGuard()).check(TOPIC, payload)
    assert not NodeVerifier(op.operators()).valid("n1", TOPIC, payload)


def test_signed_bytes_cover_topic_kid_seq_exp_and_body():
    base = signed_bytes("t", "k", 1, 2, {"a": 1})
    assert base != signed_bytes("u", "k", 1, 2, {"a": 1})
    assert base != signed_bytes("t", "j", 1, 2, {"a": 1})
    assert base != signed_bytes("t", "k", 3, 2, {"a": 1})
    assert base != signed_bytes("t", "k", 1, None, {"a": 1})
    assert base == signed_bytes("t", "k", 1, 2, {"a": 1, "_sig": {"x": 1}})
