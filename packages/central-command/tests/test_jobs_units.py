"""Fleet job logic without a broker: selectors, stages, thresholds, reverts, command
ids, and retained job records from the network (hostile input never raises)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devfleet_base import contract
from devfleet_base.errors import ContractError
from devfleet_command.errors import InvalidRequest
from devfleet_command.jobs import (
    Gate,
    JobSpec,
    JobState,
    JobStore,
    NodeProgress,
    Operation,
    Selector,
    command_id,
)
from devfleet_command.jobs.plan import component_problem, config_before, revert_command
from devfleet_command.jobs.selector import node_fields
from devfleet_command.jobs.spec import amount, cut_stages
from devfleet_command.model import NodeView


def _view(name: str, arch: str, ledstrip: str | None) -> NodeView:
    state = {"components": {"ledstrip": {"version": ledstrip, "state": "running"}}} if ledstrip else {}
    return NodeView(name, meta={"arch": arch, "groups": ["lobby"]}, state=state, status="online")


def test_selectors_on_meta_and_component_versions() -> None:
    pi = node_fields(_view("a", "armv7l", "1.1.3"))
    new = node_fields(_view("b", "x86_64", "1.10"))
    bare = node_fields(_view("c", "armv7l", None))
    assert Selector.parse("arch=armv7l").matches(pi) and not Selector.parse("arch=armv7l").matches(new)
    older = Selector.parse("components.ledstrip.version<1.2")
    assert older.matches(pi) and not older.matches(new)  # 1.10 > 1.2 as versions, not strings
    assert not older.matches(bare)  # no such field: no match
    assert not Selector.parse("components.ledstrip.version!=9").matches(bare)
    assert Selector.parse("groups~lobby").matches(pi) and Selector.parse("node~b").matches(new)
    assert str(Selector.parse(" arch = armv7l ")) == "arch=armv7l"


@pytest.mark.parametrize("bad", ["arch", "=x", "arch==", "version<banana", "a b=c", ""])
def test_bad_selectors_are_usage_errors(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        Selector.parse(bad)


def test_stages_canary_then_batches() -> None:
    nodes = [f"n{i}" for i in range(10)]
    assert [len(s) for s in cut_stages(nodes, 1, 4)] == [1, 4, 4, 1]
    assert [len(s) for s in cut_stages(nodes, "10%", "50%")] == [1, 5, 4]
    assert [len(s) for s in cut_stages(nodes, 0, 0)] == [10]
    assert amount("5%", 1000) == 50 and amount("0.1%", 10) == 1
    for bad in ("-1", "x", "0%", "101%", "nan%"):
        with pytest.raises(InvalidRequest):
            amount(bad, 10)


def test_thresholds_by_count_and_percentage() -> None:
    assert not Gate(max_failures=0).exceeded(0, 50) and Gate(max_failures=0).exceeded(1, 50)
    assert not Gate(max_failures=None).exceeded(10, 50)
    pct = Gate(max_failures=None, max_failure_percent=5.0)
    assert not pct.exceeded(2, 50) and pct.exceeded(3, 50)


def _spec(verb: str, args: dict[str, Any], revert: dict[str, Any] | None = None) -> JobSpec:
    return JobSpec("j1", Operation(verb, args, revert), (("a", "b"), ("c",)), Gate(), 1.0, 2.0)


def test_revert_of_each_operation() -> None:
    p = NodeProgress("a", 0, "done", changed=True, previous="1.0")
    assert revert_command(_spec("upgrade", {"spec": "ledstrip==1.2"}), p) == (
        "install",
        {"spec": "ledstrip==1.0"},
    )
    assert revert_command(_spec("uninstall", {"spec": "ledstrip"}), p) == (
        "install",
        {"spec": "ledstrip==1.0"},
    )
    fresh = NodeProgress("a", 0, "done", changed=True, previous=None)
    assert revert_command(_spec("install", {"spec": "ledstrip>=1"}), fresh) == (
        "uninstall",
        {"spec": "ledstrip"},
    )
    cfg = NodeProgress("a", 0, "done", changed=True, previous={"version": 3})
    assert revert_command(_spec("configure", {"set": {"x": 1}}), cfg) == ("configure", {"rollback_to": 3})
    assert revert_command(_spec("spawn", {"name": "w"}), p) == ("stop", {"name": "w"})
    assert revert_command(_spec("reboot", {}), p) is None
    assert revert_command(_spec("led", {"on": 1}, {"verb": "led", "args": {"on": 0}}), p) == (
        "led",
        {"on": 0},
    )
    with pytest.raises(ContractError):
        revert_command(_spec("configure", {"set": {}}), NodeProgress("a", 0, changed=True))


def test_config_before_prefers_a_kept_version() -> None:
    assert config_before({"config_version": 3, "kept_versions": [2, 3], "config": {"a": 1}}) == {"version": 3}
    assert config_before({"config_version": 0, "kept_versions": [], "config": {"a": 1}}) == {
        "version": 0,
        "config": {"a": 1},
    }
    assert config_before(None) is None


def test_component_problems() -> None:
    ok = {"x": {"state": "running", "enabled": True}}
    assert component_problem(ok, settled=True) is None
    assert component_problem({"x": {"state": "starting"}}, settled=False) is None
    assert "not running" in (component_problem({"x": {"state": "starting"}}, settled=True) or "")
    assert "boom" in (
        component_problem({"x": {"state": "failed", "last_error": "boom"}}, settled=False) or ""
    )
    assert component_problem({"x": {"state": "failed", "enabled": False}}, settled=True) is None
    assert component_problem({"x": {"state": "running", "health": {"ok": False}}}, settled=False)


def test_command_ids_are_deterministic_and_valid() -> None:
    longest = "n" * 64
    ids = {command_id("j0123456789a", longest, step) for step in ("do", "undo")}
    assert len(ids) == 2 and all(re.fullmatch(contract.ID_PATTERN, i) for i in ids)
    assert command_id("j1", "a", "do") == command_id("j1", "a", "do") != command_id("j2", "a", "do")


def test_job_topics() -> None:
    assert contract.job_node_topic("j1", "n1") == "jobs/j1/nodes/n1"
    assert contract.parse_topic("jobs/j1/nodes/n1") == contract.TopicMatch(
        "job", ident="j1", leaf="nodes", name="n1"
    )
    assert contract.parse_topic(contract.job_topic("j1", "status")) == contract.TopicMatch(
        "job", ident="j1", leaf="status"
    )
    assert contract.parse_topic("jobs/j1/other") is None
    with pytest.raises(ValueError):
        contract.job_topic("j1", "nodes")
    with pytest.raises(ContractError):
        contract.job_filter("a/b")


def test_spec_round_trip_and_state_merge() -> None:
    spec = _spec("upgrade", {"spec": "ledstrip==1.2"})
    assert JobSpec.from_dict(contract.decode(contract.encode(spec.to_dict()))) == spec
    state = JobState.fresh(spec)
    taken = state.merge(
        {
            "a": NodeProgress("a", 0, "done", changed=True).to_dict(),
            "b": {"node": "b", "stage": 1, "state": "done"},  # wrong stage: ignored
            "zz": NodeProgress("zz", 0, "done").to_dict(),  # not in the job: ignored
            "c": {"node": "c", "stage": 1, "state": "exploded"},
        }
    )
    assert taken == 1 and state.tally() == {**state.tally(), "done": 1, "pending": 2}
    with pytest.raises(ContractError):
        JobSpec.from_dict({**spec.to_dict(), "stages": [["a"], ["a"]]})


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    leaf=st.sampled_from(["spec", "status", "control", "nodes/a", "nodes", "x", "nodes/a/b"]),
    job=st.sampled_from(["j1", "", "+", "j 1"]),
    payload=_json | st.binary(max_size=40).map(lambda b: b),
)
def test_retained_job_records_from_the_network_never_raise(leaf: str, job: str, payload: Any) -> None:
    store = JobStore()
    raw = payload if isinstance(payload, bytes) else contract.encode(payload)
    store.feed(f"jobs/{job}/{leaf}", raw)
    for view in store.jobs.values():
        view.summary()
        view.to_dict()
        with pytest.raises(ContractError) if view.spec is None else _nothing():
            view.job_state()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@settings(max_examples=100, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["job", "stages", "operation", "gate", "created_at", "expires_at"]), _json
    )
)
def test_hostile_specs_are_refused_with_contract_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ContractError):
        JobSpec.from_dict(data)
