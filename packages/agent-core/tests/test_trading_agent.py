"""The agent's side of work trading, spoken to by a probe: components through
component-base (résumé in settings, ``_bid_task``/``_run_task``), hostile payloads."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_agent.components import ComponentHost, ComponentRegistry
from devfleet_agent.testing import AgentThread, settings_for
from devfleet_agent.trading import TradingHost, component_agent_id
from devfleet_base import Component, Field, Schema, contract
from devfleet_base.errors import ContractError

_ids = itertools.count()


class Planner(Component):
    """Bids only on small jobs, at a price of its own; runs by doubling."""

    name = "planner"
    version = "1"
    config_schema = Schema("planner", {"factor": Field("int", default=2)})

    async def _bid_task(self, request):
        if request["inputs"] > 100:
            return None
        return {"cost": 0.5, "eta": 1.0, "plan": ["double"]}

    async def _run_task(self, assignment):
        return assignment["inputs"] * self.config["factor"]


@pytest.fixture
def node(mqtt_broker, probe, tmp_path):
    name = f"trd{next(_ids)}"
    agent_thread = AgentThread(settings_for(mqtt_broker, name, tmp_path / name), attach=False)
    registry = ComponentRegistry(entry_points=lambda: ())
    registry.add(Planner)
    agent_thread.agent.add_subsystem(ComponentHost(agent_thread.agent, registry))
    agent_thread.agent.add_subsystem(TradingHost(agent_thread.agent))
    agent_thread.start()
    probe.wait_for(f"nodes/{name}/status", lambda m: m.json()["status"] == "online")
    env = contract.Command.envelope(
        {
            "set": {
                "components": {
                    "planner": {
                        "settings": {"factor": 3, "resume": {"skills": ["plan"], "accredit": ["gdpr"]}}
                    }
                }
            }
        }
    )
    probe.publish(contract.node_command_topic(name, "configure"), env)
    agent_thread.name = name
    yield agent_thread
    agent_thread.stop()


def test_a_component_publishes_its_resume_bids_and_runs(node, probe):
    aid = component_agent_id(node.name, "planner")
    resume = probe.wait_for(contract.agent_topic(aid, "resume"), lambda m: bool(m.payload)).json()
    assert resume["kind"] == "component" and resume["node"] == node.name and resume["accredit"] == ["gdpr"]
    for inputs, expect_bid in ((7, True), (1000, False)):
        task = f"c{next(_ids)}"
        request = {"task": task, "skill": "plan", "inputs": inputs, "bid_by": time.time() + 1.0}
        probe.subscribe(f"tasks/{task}/proposal/+")
        mark = probe.mark()
        probe.publish(contract.task_topic(task, "request"), request)
        if expect_bid:
            bid = probe.wait_for(f"tasks/{task}/proposal/+", since=mark).json()
            assert bid["cost"] == 0.5 and bid["plan"] == ["double"] and bid["agent"] == aid
    assignment = {"task": bid["task"], "agent": aid, "assignment": "as-1", "skill": "plan", "inputs": 7}
    probe.publish(contract.task_topic(bid["task"], "assign", aid), assignment, qos=2)
    out = probe.wait_for(f"tasks/{bid['task']}/output/result", lambda m: bool(m.payload)).json()
    assert out["status"] == "ok" and out["result"] == 21 and out["final"] is True
    # The declined request got no proposal (the agent answered it before this output).
    assert [m.json()["task"] for m in probe.messages("tasks/+/proposal/+")] == [bid["task"]]
    # Disabling the component withdraws its résumé (an empty retained message).
    env = contract.Command.envelope({"set": {"components": {"planner": {"enabled": False}}}})
    probe.publish(contract.node_command_topic(node.name, "configure"), env)
    probe.wait_for(contract.agent_topic(aid, "resume"), lambda m: not m.payload)


def test_component_settings_refuse_a_bad_resume():
    with pytest.raises(ContractError, match="resume"):
        Planner.validate_config({"resume": {"skills": []}})
    with pytest.raises(ContractError, match="pool"):
        Planner.validate_config({"pool": "a/b"})
    assert Planner.validate_config({"pool": "gpu"})["pool"] == "gpu"


junk = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda d: contract.encode(d),
        st.dictionaries(
            st.sampled_from(["task", "skill", "inputs", "bid_by", "constraints", "agent", "assignment"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3)),
        ),
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=junk)
def test_hostile_requests_and_assignments_never_crash_the_agent(node, probe, payload):
    aid = component_agent_id(node.name, "planner")
    probe.publish("tasks/j1/request", payload)
    probe.publish(f"tasks/j1/assign/{aid}", payload)
    probe.publish("pools/p/jobs/j1", payload)
    # Still alive and answering: a good request gets its proposal.
    task = f"h{next(_ids)}"
    probe.subscribe(f"tasks/{task}/proposal/+")
    probe.publish(
        contract.task_topic(task, "request"),
        {"task": task, "skill": "plan", "inputs": 1, "bid_by": time.time() + 5},
    )
    probe.wait_for(f"tasks/{task}/proposal/+", timeout=10)
