"""The model's fast ingest path gives the answers of the plain one: the C decoder, the
descriptions kept undecoded until read, the topic fast path (issue 20)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from devfleet_base import contract
from devfleet_base.errors import Code, ContractError
from devfleet_command import fastjson, model
from devfleet_command.model import FleetModel

T = contract.node_topic

# Payloads the standard library and msgspec might read differently.
EDGE_PAYLOADS = [
    b'{"node":"n1","session":1,"version":2}',
    b'{"node":"n1","session":1,"version":2,"session":5}',  # duplicate key: the last wins
    b'{"node":"n1","session":true,"version":2}',
    b'{"node":"n1","session":-1,"version":2}',  # the schema wants session >= 0
    b'{"node":"n1","session":1,"version":2,"groups":"lobby"}',  # a malformed optional field: dropped
    b'{"node":"n1","session":' + b"9" * 40 + b',"version":2}',  # past 64 bits: still an int
    b'{"node":"n1","session":1,"version":2,"x":1e400}',  # json reads inf
    b'{"node":"n1","session":1,"version":2,"x":"\\ud800"}',  # a lone surrogate json accepts
    b'{"node":"n1","session":1,"version":2,"x":NaN}',
    b'{"node":"n1","session":1,"version":2,"x":[1,2,}',
    b'{"node":"n2","session":1,"version":2}',
    b'{"node":1,"session":1,"version":2}',
    b'{"session":1,"version":2}',
    b'{"node":"n1","version":2}',
    b"[1,2]",
    b'"text"',
    b"\xff\xfe",
    b" {} ",
    b"{}",
]


def _outcome(fn: Any, payload: bytes) -> Any:
    try:
        return ("ok", repr(fn(payload)))
    except ContractError as exc:
        return ("error", exc.message, exc.code)


@pytest.mark.parametrize("payload", EDGE_PAYLOADS)
def test_fast_decode_is_the_standard_decode(payload: bytes) -> None:
    assert _outcome(fastjson.decode, payload) == _outcome(contract.decode, payload)


def test_fast_decode_refuses_what_is_too_large() -> None:
    big = b'{"x":"' + b"a" * contract.MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(ContractError) as err:
        fastjson.decode(big)
    assert err.value.code == Code.TOO_LARGE


def _feed_all(m: FleetModel, payloads: list[bytes], kind: str) -> list[Any]:
    seen = []
    for payload in payloads:
        events = m.feed(T("n1", kind), payload, True, 100.0)
        seen.append([(type(e).__name__, e.node, getattr(e, "reason", None)) for e in events])
    return seen


@pytest.mark.parametrize("kind", ["meta", "state", "cfg"])
def test_deferred_descriptions_behave_as_decoded_ones(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Versions rise so that each valid payload is taken; the same sequence through the
    # plain path (every payload decoded at once) must give the same events and state.
    payloads = [p.replace(b'"version":2', b'"version":%d' % (i + 2)) for i, p in enumerate(EDGE_PAYLOADS)]
    fast = FleetModel()
    fast_events = _feed_all(fast, payloads, kind)
    monkeypatch.setattr(model, "_peek", lambda payload: None)
    plain = FleetModel()
    plain_events = _feed_all(plain, payloads, kind)
    assert fast_events == plain_events
    assert fast.invalid_total == plain.invalid_total
    a, b = fast.get("n1"), plain.get("n1")
    assert a is not None and b is not None
    assert a.order == b.order
    assert getattr(a, kind) == getattr(b, kind)
    assert a.to_dict() == b.to_dict()


def test_a_deferred_description_is_read_decoded() -> None:
    m = FleetModel()
    meta = contract.encode({"node": "n1", "session": 1, "version": 1, "groups": ["lobby"], "hostname": "h"})
    cfg = contract.encode(
        {
            "node": "n1",
            "session": 1,
            "version": 2,
            "config_version": 3,
            "config": {"heartbeat": {"interval": 2}},
        }
    )
    m.feed(T("n1", "meta"), meta, True, 100.0)
    m.feed(T("n1", "cfg"), cfg, True, 100.0)
    n = m.get("n1")
    assert n is not None
    assert n.meta == json.loads(meta) and n.meta is n.meta  # decoded once, then kept
    assert n.groups == ["lobby"] and n.heartbeat_interval == 2.0 and n.config_version == 3
    # An older copy is still refused by its (session, version), without decoding it.
    old = contract.encode({"node": "n1", "session": 1, "version": 1, "config_version": 1, "config": {}})
    assert m.feed(T("n1", "cfg"), old, True, 101.0) == []
    assert n.config_version == 3
    # Cleared is cleared.
    m.feed(T("n1", "cfg"), b"", True, 102.0)
    assert n.cfg is None


SEGMENTS = ["nodes", "n1", "meta", "status", "state", "cfg", "heartbeat", "telemetry", "cpu", "desired",
            "logs", "agents", "$x", "a+b", "#", "", "-bad", "x" * 70, "cmd", "fleet", "resume"]  # fmt: skip


def test_topic_fast_path_agrees_with_the_contract() -> None:
    for size in (1, 2, 3, 4):
        for parts in itertools.product(SEGMENTS, repeat=size):
            topic = "/".join(parts)
            got = model._classify(topic)
            match = contract.parse_topic(topic)
            if match is None:
                assert got is None, topic
            elif match.node is not None and not model._NAME_RE.fullmatch(match.node):
                assert got == match.node, topic
            else:
                assert isinstance(got, model._Topic), topic
                assert tuple(got) == (match.kind, match.node, match.leaf, match.ident), topic
