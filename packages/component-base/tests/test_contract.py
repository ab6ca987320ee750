"""The contract module: names, topics, envelopes, receipts, decoding, schemas."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_base import contract
from devfleet_base.errors import Code, ContractError
from devfleet_base.node_config import NODE_CONFIG_SCHEMA, default_node_config
from devfleet_base.schema import Field, Schema

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "$SYS", "-lead", "x" * 65, "sp ace", None, 3])
def test_bad_names_refused(bad):
    with pytest.raises(ContractError):
        contract.check_name(bad)


def test_builders_refuse_wildcards():
    with pytest.raises(ContractError):
        contract.node_command_topic("n1", "+")
    with pytest.raises(ContractError):
        contract.node_topic("a/b", "meta")
    with pytest.raises(ValueError):
        contract.node_topic("n1", "nonsense")


def test_parse_topic_kinds():
    p = contract.parse_topic
    assert p("nodes/n1/cmd/ping") == contract.TopicMatch("cmd", node="n1", verb="ping", scope="node")
    assert p("fleet/cmd/ping").scope == "fleet"
    assert p("groups/g1/cmd/ping").group == "g1"
    assert p("nodes/n1/cfg/desired").kind == "cfg_desired"
    assert p("nodes/n1/components/led/preview").component == "led"
    assert p("agents/by-name/bob/task").name == "bob"
    assert p("agents/abc/heartbeat").kind == "agent_heartbeat"
    assert p("tasks/t1/output/s2") == contract.TopicMatch("task", ident="t1", leaf="output", name="s2")
    for junk in ("nodes/n1", "nodes/n1/cmd", "nodes/+/meta", "nodes/n1/meta/x", "other/topic", ""):
        assert p(junk) is None, junk


_LEVEL = st.text(alphabet=st.sampled_from("ab1._-$+#/ \u00e9"), max_size=6)


@given(_LEVEL, st.sampled_from(["cmd", "telemetry"]), _LEVEL)
def test_parse_topic_fast_path_agrees_with_the_pattern(node, middle, last):
    """The split fast path (commands, telemetry) answers what the regular expression does."""
    topic = f"nodes/{node}/{middle}/{last}"
    m = contract._TOPIC_RE.match(topic)
    if m is None or (m["node_verb"] is None and m["metric"] is None):
        expected = None if m is None else "other"
    elif m["node_verb"] is not None:
        expected = contract.TopicMatch("cmd", node=m["node"], verb=m["node_verb"], scope="node")
    else:
        expected = contract.TopicMatch("telemetry", node=m["node"], leaf=m["metric"])
    got = contract.parse_topic(topic)
    if expected == "other":
        assert got is not None and got.kind not in ("cmd", "telemetry")
    else:
        assert got == expected


@given(st.text(max_size=80))
def test_parse_topic_never_raises(topic):
    match = contract.parse_topic(topic)
    if match is not None:
        assert "+" not in topic and "#" not in topic


def test_decode_limits_and_junk():
    assert contract.decode(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ContractError) as e:
        contract.decode(b"x" * 11, max_bytes=10)
    assert e.value.code == Code.TOO_LARGE
    for junk in (b"{", b"\xff\xfe", b"NaN", b"[1,]", b"Infinity"):
        with pytest.raises(ContractError) as e:
            contract.decode(junk)
        assert e.value.code == Code.BAD_JSON


@given(st.binary(max_size=200))
def test_decode_random_bytes(data):
    try:
        contract.decode(data)
    except ContractError as exc:
        assert exc.code in (Code.BAD_JSON, Code.TOO_LARGE)


def test_command_envelope_round_trip():
    env = contract.Command.envelope({"x": 1}, ttl=10, reply_to="replies/me", now=100.0)
    cmd = contract.Command.from_wire("ping", json.loads(contract.encode(env)))
    assert cmd.args == {"x": 1} and cmd.reply_to == "replies/me" and cmd.expires_at == 110.0
    assert not cmd.expired(105.0) and cmd.expired(111.0)


def test_one_expiry_rule_for_every_deadline():
    assert not contract.expired(None, 1e12)  # no deadline never expires
    assert not contract.expired(110.0, 110.0) and contract.expired(110.0, 110.5)
    assert contract.expired(1.0) and not contract.expired(4e9)  # now defaults to the wall clock


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"id": ""},
        {"id": "a/b"},
        {"id": "ok", "args": []},
        {"id": "ok", "reply_to": "nodes/x/cmd/restart"},
        {"id": "ok", "expires_at": "soon"},
        {"id": "ok", "extra": 1},
        [],
        "text",
    ],
)
def test_bad_envelopes(payload):
    with pytest.raises(ContractError):
        contract.Command.from_wire("ping", payload)


@settings(max_examples=300)
@given(json_values)
def test_envelope_validation_only_raises_contract_errors(payload):
    with contextlib.suppress(ContractError):
        contract.Command.from_wire("ping", payload)


def test_receipt_round_trip():
    r = contract.Receipt("id1", "n1", "ping", "error", "failed", "boom", ts=5.0)
    assert contract.Receipt.from_wire(r.to_wire()) == r


def test_schema_normalises_and_names_paths():
    s = Schema("t", {"a": Field("float", default=1.0, min=0), "b": Field("list", items=Field("int"))})
    assert s.validate({"a": 2}) == {"a": 2.0}
    with pytest.raises(ContractError, match=r"t\.b\[1\]: expected int"):
        s.validate({"b": [1, "2"]})
    with pytest.raises(ContractError, match="expected int, got bool"):
        s.validate({"b": [True]})
    with pytest.raises(ContractError, match="unknown key"):
        s.validate({"c": 1})
    with pytest.raises(ContractError, match="finite"):
        s.validate({"a": float("inf")})


@settings(max_examples=300)
@given(json_values)
def test_node_config_validation_only_raises_contract_errors(value):
    with contextlib.suppress(ContractError):
        NODE_CONFIG_SCHEMA.validate(value)


def test_default_node_config_is_valid():
    assert NODE_CONFIG_SCHEMA.validate(default_node_config()) == default_node_config()


def test_ids_are_wactorz_compatible():
    import uuid

    assert contract.actor_id("temp") == str(uuid.uuid5(uuid.NAMESPACE_DNS, "wactorz.actor.temp"))
    assert contract.node_id("rpi") == str(uuid.uuid5(uuid.NAMESPACE_DNS, "wactorz.node.rpi"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://h", ("h", 1883, False, None, None)),
        ("h:1884", ("h", 1884, False, None, None)),
        ("mqtts://u:p@h", ("h", 8883, True, "u", "p")),
        ("ssl://h:8884", ("h", 8884, True, None, None)),
        ("tcp://[::1]:1883", ("::1", 1883, False, None, None)),
    ],
)
def test_broker_urls(url, expected):
    from devfleet_base.broker_url import parse_broker_url

    a = parse_broker_url(url)
    assert (a.host, a.port, a.tls, a.username, a.password) == expected


@pytest.mark.parametrize("url", ["ftp://h", "mqtt://", "mqtt://h:99999", "mqtt://h:x", "http://h"])
def test_bad_broker_urls(url):
    from devfleet_base.broker_url import parse_broker_url

    with pytest.raises(ContractError, match="broker URL"):
        parse_broker_url(url)


def test_map_topics_and_payloads() -> None:
    assert contract.map_topic("arena") == "maps/arena"
    assert contract.parse_topic("maps/arena") == contract.TopicMatch("map", name="arena")
    with pytest.raises(ContractError):
        contract.map_topic("a/b")
    frame = contract.MAP_FRAME_SCHEMA.validate(
        {
            "map": "arena",
            "width": 4,
            "height": 3,
            "regions": [{"name": "nest", "x0": 0, "y0": 0, "x1": 4, "y1": 1}],
        }
    )
    assert frame["items"] == [] and frame["width"] == 4.0
    pose = contract.MAP_POSE_SCHEMA.validate({"map": "arena", "x": 1, "y": 2, "color": "#00ff00"})
    assert pose["theta"] == 0.0
    with pytest.raises(ContractError, match="color"):
        contract.MAP_POSE_SCHEMA.validate({"map": "arena", "x": 1, "y": 2, "color": "green"})
