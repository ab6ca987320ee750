"""Fleet jobs that spawn a Wactorz actor on real agents (subprocesses, real broker):
a staged spawn that completes, an abort that stops the actor wherever the job
started it, and a console cancelled mid-spawn whose job another resumes without
spawning any node's actor twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devfleet_command.aio import AsyncFleet
from devfleet_command.jobs import Gate, JobRunner, JobState, Operation, new_job, resume_job

pytestmark = pytest.mark.timeout(120)

TICKER = """
async def setup(agent):
    agent.state['n'] = 0

async def process(agent):
    agent.state['n'] += 1
"""

# A setup that takes a while: the node lists the actor (starting) before it answers
# the spawn, the window in which a console that dies leaves its record at ``sent``.
SLOW = """
import asyncio

async def setup(agent):
    await asyncio.sleep(1.5)

async def process(agent):
    pass
"""


async def _console(mosquitto: Any, nodes: list[str]) -> AsyncFleet:
    fleet = AsyncFleet(mosquitto.url, connect_timeout=30)
    await fleet.start()
    await fleet.wait_for(lambda m: all((v := m.get(n)) is not None and v.online for n in nodes), 30)
    return fleet


def _running(fleet: AsyncFleet, name: str) -> set[str]:
    return {row["node"] for row in fleet.actors() if row["name"] == name and row.get("state") == "running"}


def _listed(fleet: AsyncFleet, name: str) -> set[str]:
    return {row["node"] for row in fleet.actors() if row["name"] == name}


async def test_a_staged_spawn_completes_and_a_failed_one_stops_the_actor_everywhere(
    mosquitto: Any, agents: Any
) -> None:
    nodes = ["sp-a", "sp-b", "sp-c"]
    for name in nodes:
        agents.start(name, "--allow-code")
    agents.start("sp-nocode")  # answers a spawn with ``forbidden``
    fleet = await _console(mosquitto, [*nodes, "sp-nocode"])
    try:
        spawn = Operation("spawn", {"name": "ticker", "code": TICKER, "poll_interval": 0.1}, timeout=20)
        spec = new_job(fleet, spawn, nodes, canary=1, batch=2, gate=Gate(soak=0.3), expires_in=60)
        assert [len(s) for s in spec.stages] == [1, 2]
        state = await JobRunner(fleet, JobState.fresh(spec)).run()
        assert state.state == "completed", state.reason
        assert {p.state for p in state.nodes.values()} == {"done"}
        await fleet.wait_for(lambda m: _running(fleet, "ticker") == set(nodes), 10)

        # The canary takes it, the batch meets a node refusing code: the job aborts
        # and stops the actor on every node it started it on.
        other = Operation("spawn", {"name": "other", "code": TICKER, "poll_interval": 0.1}, timeout=20)
        order = ["sp-a", "sp-b", "sp-nocode"]
        spec = new_job(fleet, other, order, canary=1, batch=2, gate=Gate(soak=0.3), expires_in=60)
        state = await JobRunner(fleet, JobState.fresh(spec)).run()
        assert state.state == "aborted", state.reason
        assert state.nodes["sp-nocode"].state == "failed"
        assert "forbidden" in (state.nodes["sp-nocode"].error or "")
        assert state.nodes["sp-a"].state == "reverted"
        assert state.nodes["sp-b"].state in ("reverted", "skipped")  # in flight or not yet sent
        await fleet.wait_for(lambda m: not _listed(fleet, "other"), 10)
        # An actor the job did not start is not its to touch: the first job's stays.
        assert _running(fleet, "ticker") == set(nodes)

        # A spawn of an actor already running fails without touching it (not stopped
        # on revert either).
        spec = new_job(fleet, spawn, ["sp-a"], gate=Gate(soak=0.1), expires_in=30)
        state = await JobRunner(fleet, JobState.fresh(spec)).run()
        assert state.state == "aborted"
        assert state.nodes["sp-a"].state == "failed" and not state.nodes["sp-a"].changed
        assert "already runs" in (state.nodes["sp-a"].error or "")
        assert _running(fleet, "ticker") == set(nodes)

        # An actor that fails to start stays listed on the node as failed: the abort
        # stops it too.
        broken = Operation("spawn", {"name": "broken", "code": "x = 1\n"}, timeout=20)
        spec = new_job(fleet, broken, ["sp-b"], gate=Gate(soak=0.1), expires_in=30)
        state = await JobRunner(fleet, JobState.fresh(spec)).run()
        assert state.state == "aborted"
        assert state.nodes["sp-b"].state == "reverted", state.nodes["sp-b"]
        assert "failed to start" in (state.nodes["sp-b"].error or "")
        await fleet.wait_for(lambda m: not _listed(fleet, "broken"), 10)
    finally:
        await fleet.close()


async def test_a_console_cancelled_mid_spawn_is_resumed_without_spawning_twice(
    mosquitto: Any, agents: Any
) -> None:
    nodes = ["sr-a", "sr-b", "sr-c"]
    procs = [agents.start(name, "--allow-code") for name in nodes]
    fleet = await _console(mosquitto, nodes)
    try:
        spawn = Operation("spawn", {"name": "slow", "code": SLOW, "poll_interval": 0.5}, timeout=20)
        spec = new_job(fleet, spawn, nodes, canary=1, batch=2, gate=Gate(soak=0.2), expires_in=60)
        state = JobState.fresh(spec)
        first = asyncio.create_task(JobRunner(fleet, state, status_interval=0.2).run())

        # Cancel the runner while a batch node's record says ``sent`` and its actor
        # is already listed (starting), before its answer came back.
        def caught(m: Any) -> bool:
            return any(state.nodes[n].state == "sent" and n in _listed(fleet, "slow") for n in nodes[1:])

        await fleet.wait_for(caught, 20)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        cut = [n for n in nodes[1:] if state.nodes[n].state == "sent"]
        assert cut

        async with AsyncFleet(mosquitto.url, connect_timeout=30) as second:
            await second.wait_for(lambda m: all((v := m.get(n)) is not None and v.online for n in nodes), 30)
            runner = await resume_job(second, spec.job, takeover_after=1.0)
            assert all(runner.state.nodes[n].state == "sent" for n in cut)
            resumed = await runner.run()
            assert resumed.state == "completed", resumed.reason
            assert {p.state for p in resumed.nodes.values()} == {"done"}
            await second.wait_for(lambda m: _running(second, "slow") == set(nodes), 10)
            restarts = {row["node"]: row.get("restarts") for row in second.actors() if row["name"] == "slow"}
            assert set(restarts.values()) <= {0, None}, restarts
    finally:
        await fleet.close()
    # No node was sent the spawn a second time (it would have refused it as a duplicate).
    for proc in procs:
        assert "already running" not in proc.output(), proc.output()[-2000:]
