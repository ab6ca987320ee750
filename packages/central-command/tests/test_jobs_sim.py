"""Fleet jobs over the fleet simulator on a real mosquitto: canary abort with revert,
a clean rollout, offline nodes, and a console killed mid-job that another resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_command.aio import AsyncFleet
from devfleet_command.jobs import (
    Gate,
    JobRunner,
    JobState,
    Operation,
    command_id,
    follow_jobs,
    load_jobs,
    new_job,
    resolve_target,
    resume_job,
)

pytestmark = pytest.mark.timeout(120)


def _opts(broker: Any, nodes: int, prefix: str, **kw: Any) -> FleetOptions:
    return FleetOptions(
        host=broker.host,
        port=broker.port,
        nodes=nodes,
        prefix=prefix,
        heartbeat_interval=1.0,
        telemetry_interval=60.0,
        components=(("ledstrip", "1.0"),),
        keepalive=5,
        **kw,
    )


async def _console(broker: Any, nodes: int, prefix: str) -> AsyncFleet:
    fleet = AsyncFleet(f"mqtt://{broker.host}:{broker.port}", connect_timeout=30)
    await fleet.start()
    await fleet.wait_for(
        lambda m: sum(1 for n in m if n.name.startswith(prefix + "-") and n.online) >= nodes, 30
    )
    return fleet


def _versions(sim: SimFleet) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in sim:
        v = node.components.get("ledstrip", "-")
        out[v] = out.get(v, 0) + 1
    return out


async def test_canary_catches_a_bad_release_on_1000_nodes_and_reverts(fresh_broker: Any) -> None:
    mqtt_broker = fresh_broker  # 4,000 retained descriptions stay out of the shared broker
    async with SimFleet(_opts(mqtt_broker, 1000, "jc", unhealthy_after_upgrade=0.05, seed=7)) as sim:
        await sim.wait_connected(60)
        bad = {n.name for n in sim if n.behaviour.unhealthy_after_upgrade}
        assert 30 <= len(bad) <= 70  # 5 % of 1,000, drawn by the seed
        fleet = await _console(mqtt_broker, 1000, "jc")
        try:
            nodes = resolve_target(fleet.model, selectors=["node~jc-", "components.ledstrip.version<1.1"])
            assert len(nodes) == 1000
            spec = new_job(
                fleet,
                Operation("upgrade", {"spec": "ledstrip==1.1"}, timeout=20),
                nodes,
                canary="5%",
                batch="25%",
                gate=Gate(soak=0.5),
                expires_in=60,
            )
            canary = set(spec.stages[0])
            assert len(canary) == 50 and canary & bad, "the seed puts a bad node in the canary"
            state = await JobRunner(fleet, JobState.fresh(spec)).run()
        finally:
            await fleet.close()
        assert state.state == "aborted"
        assert "failed" in (state.reason or "")
        tally = state.tally()
        assert tally["skipped"] == 950  # no node past the canary was touched
        assert tally["reverted"] == 50 and tally["revert_failed"] == 0
        assert _versions(sim) == {"1.0": 1000}  # every changed node went back
        assert all(sim.nodes[n].dispatcher.counts["received"] == 0 for n in spec.nodes if n not in canary)
        failed = [p for p in state.nodes.values() if p.error]
        assert failed and all(p.node in bad for p in failed)
        assert "failed" in failed[0].error


async def test_a_clean_rollout_completes_and_any_console_sees_it(mqtt_broker: Any) -> None:
    async with SimFleet(_opts(mqtt_broker, 40, "jok")) as sim:
        await sim.wait_connected(30)
        fleet = await _console(mqtt_broker, 40, "jok")
        try:
            nodes = resolve_target(fleet.model, selectors=["node~jok-"])
            spec = new_job(
                fleet,
                Operation("upgrade", {"spec": "ledstrip==1.1"}),
                nodes,
                canary=2,
                batch="50%",
                gate=Gate(soak=0.3, health={"verb": "ping", "args": {}}),
                expires_in=60,
            )
            assert [len(s) for s in spec.stages] == [2, 20, 18]
            state = await JobRunner(fleet, JobState.fresh(spec)).run()
            assert state.state == "completed", state.reason
            assert state.tally()["done"] == 40
            assert _versions(sim) == {"1.1": 40}
            store = await load_jobs(fleet, spec.job)
        finally:
            await fleet.close()
        view = store.jobs[spec.job]
        assert view.state == "completed" and len(view.nodes) == 40
        assert view.spec == spec
        assert {r["state"] for r in view.nodes.values()} == {"done"}
        assert view.nodes["jok-00000"]["cmd"] == command_id(spec.job, "jok-00000", "do")


async def test_config_rollout_reverts_to_the_previous_config_version(mqtt_broker: Any) -> None:
    async with SimFleet(_opts(mqtt_broker, 6, "jcf")) as sim:
        await sim.wait_connected(30)
        fleet = await _console(mqtt_broker, 6, "jcf")
        try:
            before = {n.name: n.store.version for n in sim}
            nodes = resolve_target(fleet.model, selectors=["node~jcf-"])
            # The health command fails on every node: the canary aborts the job.
            spec = new_job(
                fleet,
                Operation("configure", {"set": {"description": "new"}}),
                nodes,
                canary=2,
                gate=Gate(soak=0.1, health={"verb": "no_such_verb", "args": {}}),
                expires_in=30,
            )
            state = await JobRunner(fleet, JobState.fresh(spec)).run()
        finally:
            await fleet.close()
        assert state.state == "aborted"
        assert state.tally()["reverted"] == 2 and state.tally()["skipped"] == 4
        for node in sim:
            assert node.store.config["description"] == ""
            changed = node.name in spec.stages[0]
            assert node.store.version == before[node.name] + (2 if changed else 0)  # set, then back


async def test_offline_nodes_wait_until_back_or_the_expiry(mqtt_broker: Any) -> None:
    async with SimFleet(_opts(mqtt_broker, 8, "joff")) as sim:
        await sim.wait_connected(30)
        fleet = await _console(mqtt_broker, 8, "joff")
        try:
            sim.crash("joff-00003")  # back mid-job
            sim.crash("joff-00006")  # never back
            await fleet.wait_for(
                lambda m: not m.get("joff-00003").online and not m.get("joff-00006").online, 15
            )  # type: ignore[union-attr]
            nodes = resolve_target(fleet.model, selectors=["node~joff-"])
            spec = new_job(
                fleet,
                Operation("upgrade", {"spec": "ledstrip==1.1"}),
                nodes,
                canary=2,
                batch=3,
                gate=Gate(soak=0.3),
                expires_in=6,
            )
            runner = JobRunner(fleet, JobState.fresh(spec))
            task = asyncio.create_task(runner.run())
            await fleet.wait_for(lambda m: runner.state.nodes["joff-00003"].state == "waiting", 10)
            sim.restart("joff-00003")
            state = await asyncio.wait_for(task, 30)
        finally:
            await fleet.close()
        assert state.state == "incomplete"
        assert state.nodes["joff-00003"].state == "done"
        assert state.nodes["joff-00006"].state == "offline"
        assert "expired" in (state.nodes["joff-00006"].error or "")
        assert state.tally()["done"] == 7
        assert sim.nodes["joff-00006"].components == {"ledstrip": "1.0"}


async def test_a_console_killed_mid_job_is_resumed_by_another(mqtt_broker: Any) -> None:
    async with SimFleet(_opts(mqtt_broker, 30, "jkill")) as sim:
        await sim.wait_connected(30)
        fleet = await _console(mqtt_broker, 30, "jkill")
        try:
            cmd = [
                sys.executable,
                "-m",
                "devfleet_command.cli",
                "--broker",
                f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}",
                "rollout",
                "upgrade",
                "ledstrip==1.1",
                "--select",
                "node~jkill-",
                "--canary",
                "3",
                "--batch",
                "9",
                "--soak",
                "0.8",
                "--expire",
                "60",
                "--json",
            ]
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"}
            )
            try:
                # Kill it once the canary passed and a batch is under way.
                def midway(store: Any) -> bool:
                    return any(
                        (v.status or {}).get("stage", 0) >= 1
                        and (v.status or {}).get("counts", {}).get("soaking", 0)
                        for v in store.jobs.values()
                    )

                async def until_midway() -> Any:
                    async for store, _ in follow_jobs(fleet):
                        if midway(store):
                            return store
                    return None

                store = await asyncio.wait_for(until_midway(), 30)
                os.kill(proc.pid, signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
            (job,) = [j for j, v in store.jobs.items() if v.spec and v.spec.nodes[0].startswith("jkill-")]
            runner = await resume_job(fleet, job)
            resumed_done = runner.state.tally()["done"]
            state = await runner.run()
        finally:
            await fleet.close()
        assert state.state == "completed", state.reason
        assert _versions(sim) == {"1.1": 30}
        for node in sim:  # each node ran the upgrade exactly once, whatever was resent
            assert node.dispatcher.counts["ok"] == 1, node.name
        # The resumed console took the retained progress: the canary, done before the
        # kill, got nothing again.
        canary = state.spec.stages[0]
        assert all(sim.nodes[n].dispatcher.counts["received"] == 1 for n in canary)
        assert resumed_done >= len(canary)
