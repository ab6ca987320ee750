"""Components under the shared ONE_FOR_ONE supervisor, with a fake clock (no broker)."""

from __future__ import annotations

import asyncio

from devfleet_agent.clock import FakeClock
from devfleet_agent.components import ComponentRunnable
from devfleet_agent.supervisor import RestartPolicy, Supervisor
from devfleet_base import Component, Health
from devfleet_base.testing import FakeContext


class Flaky(Component):
    name = "flaky"
    poll_interval = 1.0
    runs: list[str] = []

    async def _setup(self):
        Flaky.runs.append("setup")

    async def _process(self):
        raise RuntimeError("flaky")

    async def _teardown(self):
        Flaky.runs.append("teardown")


class Broken(Component):
    name = "broken"

    async def _setup(self):
        raise OSError("no device")


class Cold(Component):
    name = "cold"

    async def _health(self):
        return Health(False, "cold")


def run_child(sup, cls, ctx, health=None):
    return sup.start_child(
        f"component:{cls.name}", lambda: ComponentRunnable(cls(ctx), f"component:{cls.name}", health)
    )


async def test_crashing_component_backs_off_then_fails_and_tears_down_each_run():
    Flaky.runs = []
    clock = FakeClock()
    events = []
    sup = Supervisor(clock=clock, on_event=events.append)
    info = await run_child(sup, Flaky, FakeContext(name="flaky"))
    policy = RestartPolicy()
    await asyncio.wait_for(info.wait_finished(), 5)
    assert info.state == "failed" and info.last_error == "RuntimeError: flaky"
    assert [e.reason for e in events if e.kind == "fatal"] == ["budget"]
    backoffs = [e.delay for e in events if e.kind == "restarting"]
    assert backoffs == [policy.backoff(n) for n in range(1, policy.max_restarts + 1)] == [3, 6, 12, 24, 48]
    assert Flaky.runs == ["setup", "teardown"] * (policy.max_restarts + 1)
    assert sup.get("component:flaky") is None


async def test_setup_error_is_fatal_and_unhealthy_counts_as_a_failed_cycle():
    sup = Supervisor(clock=FakeClock())
    info = await run_child(sup, Broken, FakeContext(name="broken"))
    assert info.state == "failed" and info.runs == 0 and "OSError: no device" in info.last_error
    seen = []
    info = await run_child(sup, Cold, FakeContext(name="cold"), seen.append)
    await asyncio.wait_for(info.wait_finished(), 5)
    assert info.state == "failed" and seen[0] == Health(False, "cold")


async def test_deliberate_stop_is_not_restarted():
    Flaky.runs = []
    sup = Supervisor(clock=FakeClock())
    info = await run_child(sup, Cold, FakeContext(name="cold"))
    await sup.stop_child("component:cold")
    assert info.state == "stopped" and info.restarts == 0
