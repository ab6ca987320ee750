"""The spawn payload: Wactorz's example validates, garbage only ever raises ContractError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_agent.actors.spec import DEFAULT_POLL_INTERVAL, MAX_CODE_BYTES, SpawnSpec
from devfleet_base.errors import ContractError

WACTORZ_EXAMPLE: dict[str, Any] = {
    "name": "temp-sensor-agent",
    "node": "rpi-livingroom",
    "type": "dynamic",
    "description": "Reads temperature from DHT22 sensor",
    "poll_interval": 30,
    "max_restarts": 5,
    "restart_delay": 3.0,
    "install": ["adafruit-circuitpython-dht"],
    "code": "async def setup(agent):\n    await agent.log('ready')\n",
}


def test_the_wactorz_example_validates() -> None:
    spec = SpawnSpec.from_payload(WACTORZ_EXAMPLE)
    assert spec.name == "temp-sensor-agent"
    assert spec.node == "rpi-livingroom"
    assert spec.poll_interval == 30.0 and isinstance(spec.poll_interval, float)
    assert spec.install == ("adafruit-circuitpython-dht",)
    assert spec.replace is False
    policy = spec.policy()
    assert policy.max_restarts == 5 and policy.restart_delay == 3.0


def test_defaults() -> None:
    spec = SpawnSpec.from_payload({"name": "a", "code": "x = 1"})
    assert spec.node is None
    assert spec.type == "dynamic"
    assert spec.description == ""
    assert spec.poll_interval == DEFAULT_POLL_INTERVAL == 5.0
    assert (spec.max_restarts, spec.restart_delay) == (5, 3.0)
    assert spec.install == ()
    assert spec.replace is False
    assert dict(spec.extra) == {}


def test_unknown_keys_are_kept_and_travel_on_migration() -> None:
    payload = {**WACTORZ_EXAMPLE, "protected": True, "capabilities": ["temp"], "replace": True}
    spec = SpawnSpec.from_payload(payload)
    assert dict(spec.extra) == {"protected": True, "capabilities": ["temp"]}
    out = spec.to_payload(node="rpi-bedroom")
    assert out["node"] == "rpi-bedroom"
    assert out["protected"] is True and out["capabilities"] == ["temp"]
    assert SpawnSpec.from_payload(out) == SpawnSpec.from_payload({**payload, "node": "rpi-bedroom"})
    # the round trip is exact when the node is not changed
    assert SpawnSpec.from_payload(spec.to_payload()) == spec
    with pytest.raises(TypeError):
        spec.extra["protected"] = False  # type: ignore[index]


def test_spec_is_frozen_and_hashable() -> None:
    spec = SpawnSpec.from_payload(WACTORZ_EXAMPLE)
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    assert hash(spec) == hash(SpawnSpec.from_payload(WACTORZ_EXAMPLE))


def test_null_poll_interval_means_event_driven() -> None:
    assert SpawnSpec.from_payload({"name": "a", "code": "x", "poll_interval": None}).poll_interval is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"name": ""}, "name"),
        ({"name": "-leading-dash"}, "does not match"),
        ({"name": "has space"}, "does not match"),
        ({"name": "a/b"}, "does not match"),
        ({"name": "x" * 65}, "length must be <= 64"),
        ({"name": 5}, "expected str"),
        ({"code": ""}, "code"),
        ({"code": None}, "must not be null"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": "30"}, "expected float"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"max_restarts": 2.5}, "expected int"),
        ({"max_restarts": True}, "expected int"),
        ({"restart_delay": -3}, "restart_delay"),
        ({"install": "requests"}, "expected list"),
        ({"install": [1]}, "install[0]"),
        ({"replace": "yes"}, "expected bool"),
    ],
)
def test_invalid_fields_name_the_path(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ContractError) as err:
        SpawnSpec.from_payload({**WACTORZ_EXAMPLE, **change})
    assert fragment in str(err.value)
    assert err.value.code == "invalid"


@pytest.mark.parametrize("missing", ["name", "code"])
def test_required_fields(missing: str) -> None:
    payload = dict(WACTORZ_EXAMPLE)
    del payload[missing]
    with pytest.raises(ContractError, match=f"missing required key '{missing}'"):
        SpawnSpec.from_payload(payload)


def test_code_size_limit_is_in_bytes() -> None:
    SpawnSpec.from_payload({"name": "a", "code": "#" * MAX_CODE_BYTES})
    with pytest.raises(ContractError) as chars:
        SpawnSpec.from_payload({"name": "a", "code": "#" * (MAX_CODE_BYTES + 1)})
    assert "code" in str(chars.value)
    wide = "#" + "é" * (MAX_CODE_BYTES // 2)  # fewer chars than the limit, more bytes
    with pytest.raises(ContractError) as size:
        SpawnSpec.from_payload({"name": "a", "code": wide})
    assert size.value.code == "too_large"


def test_from_json() -> None:
    assert SpawnSpec.from_json(json.dumps(WACTORZ_EXAMPLE).encode()).name == "temp-sensor-agent"
    for raw in (b"", b"{", b"\xff\xfe", "[1, 2]", b"null"):
        with pytest.raises(ContractError):
            SpawnSpec.from_json(raw)
    with pytest.raises(ContractError) as err:
        SpawnSpec.from_json(b"{nope")
    assert err.value.code == "bad_json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)

spawn_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=70), json_values),
        "node": json_values,
        "type": json_values,
        "description": json_values,
        "poll_interval": json_values,
        "max_restarts": json_values,
        "restart_delay": json_values,
        "install": st.one_of(st.lists(st.text(max_size=10), max_size=3), json_values),
        "code": st.one_of(st.text(max_size=50), json_values),
        "replace": json_values,
    },
).flatmap(lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(lambda x: {**x, **d}))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, spawn_like))
def test_random_json_raises_only_contract_errors(data: Any) -> None:
    try:
        spec = SpawnSpec.from_payload(data)
    except ContractError:
        return
    assert SpawnSpec.from_payload(spec.to_payload()) == spec


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_contract_errors(raw: bytes) -> None:
    with contextlib.suppress(ContractError):
        SpawnSpec.from_json(raw)
