"""The ONE_FOR_ONE supervisor, row by row of the Wactorz "Supervisor behaviour" table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from devfleet_agent.clock import FakeClock
from devfleet_agent.supervisor import (
    ChildExistsError,
    ChildNotFoundError,
    RestartPolicy,
    Supervisor,
    SupervisorEvent,
)

TIMEOUT = 5.0


class Recorder:
    """Collects supervisor events; tests wait on a predicate, never on time."""

    def __init__(self) -> None:
        self.events: list[SupervisorEvent] = []
        self._waiters: list[asyncio.Event] = []

    def __call__(self, event: SupervisorEvent) -> None:
        self.events.append(event)
        for waiter in self._waiters:
            waiter.set()

    def kinds(self, child: str | None = None) -> list[str]:
        return [e.kind for e in self.events if child is None or e.child == child]

    def of(self, kind: str) -> list[SupervisorEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait(self, pred: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                waiter = asyncio.Event()
                self._waiters.append(waiter)
                try:
                    if pred():
                        return
                    await waiter.wait()
                finally:
                    self._waiters.remove(waiter)

    async def wait_kind(self, kind: str, count: int = 1) -> None:
        await self.wait(lambda: len(self.of(kind)) >= count)


class Script:
    """Shared across the instances a factory makes; decides each call's outcome.

    ``outcomes`` maps a global process()-call index (0-based) to True (ok) or an
    exception; calls past the end use ``then``.
    """

    def __init__(
        self,
        outcomes: list[bool] | None = None,
        *,
        then: bool = True,
        poll: float | None = 0.5,
        fail_setup_on_run: int | None = None,
        health: list[bool] | None = None,
        health_then: bool = True,
    ) -> None:
        self.outcomes = outcomes or []
        self.then = then
        self.poll = poll
        self.fail_setup_on_run = fail_setup_on_run
        self.health_outcomes = health or []
        self.health_then = health_then
        self.made = 0
        self.setups = 0
        self.teardowns = 0
        self.calls = 0
        self.health_calls = 0
        self.reached: dict[int, asyncio.Event] = {}
        self.block: asyncio.Event | None = None
        self.hold_at: int | None = None  # the call number (1-based) that hangs forever

    def at_call(self, n: int) -> asyncio.Event:
        return self.reached.setdefault(n, asyncio.Event())

    def factory(self) -> Child:
        self.made += 1
        return Child(self, self.made)


class Child:
    def __init__(self, script: Script, run: int) -> None:
        self.script = script
        self.run = run
        self.name = "child"
        self.poll_interval = script.poll

    async def setup(self) -> None:
        self.script.setups += 1
        if self.script.fail_setup_on_run == self.run:
            raise RuntimeError("setup broke")

    async def process(self) -> None:
        s = self.script
        index = s.calls
        s.calls += 1
        for n, ev in s.reached.items():
            if s.calls >= n:
                ev.set()
        if s.block is not None:
            await s.block.wait()
        if s.hold_at == s.calls:
            await asyncio.Event().wait()
        ok = s.outcomes[index] if index < len(s.outcomes) else s.then
        if not ok:
            raise ValueError(f"boom {index}")

    async def teardown(self) -> None:
        self.script.teardowns += 1

    async def health(self) -> bool:
        s = self.script
        index = s.health_calls
        s.health_calls += 1
        for n, ev in s.reached.items():
            if s.health_calls >= n:
                ev.set()
        return s.health_outcomes[index] if index < len(s.health_outcomes) else s.health_then


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def sup(clock: FakeClock, rec: Recorder) -> Supervisor:
    return Supervisor(clock=clock, on_event=rec)


def backoffs(clock: FakeClock, poll: float = 0.5) -> list[float]:
    return [s for s in clock.sleeps if s != poll]


# ---- policy -----------------------------------------------------------------------------


def test_backoff_formula() -> None:
    policy = RestartPolicy()
    assert [policy.backoff(n) for n in range(1, 9)] == [3, 6, 12, 24, 48, 60, 60, 60]
    assert policy.backoff(10_000) == 60.0
    assert RestartPolicy(restart_delay=0.5).backoff(3) == 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_restarts": -1},
        {"restart_delay": -1.0},
        {"escalate_after": 0},
        {"credit_after": 0},
        {"health_interval": 0.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)


# ---- stable ------------------------------------------------------------------------------


async def test_stable_child_runs_and_stops_cleanly(sup: Supervisor, rec: Recorder, clock: FakeClock) -> None:
    script = Script()
    reached = script.at_call(25)
    info = await sup.start_child("stable", script.factory)
    assert info.state == "running"
    assert info.started_at == clock.time() or info.started_at is not None
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    assert sup.children["stable"] is info
    assert info.restarts == 0
    assert "credited" not in rec.kinds()  # nothing to credit back
    stopped = await sup.stop_child("stable")
    assert stopped.state == "stopped"
    assert rec.kinds() == ["started", "stopped"]
    assert script.made == 1 and script.setups == 1 and script.teardowns == 1
    assert sup.children == {}
    assert set(clock.sleeps) == {0.5}


# ---- crash in process() --------------------------------------------------------------------


async def test_process_failure_is_logged_and_the_run_continues(sup: Supervisor, rec: Recorder) -> None:
    script = Script([False, True, False, False, True])
    reached = script.at_call(20)
    info = await sup.start_child("flaky", script.factory)
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    assert script.made == 1  # never restarted
    assert len(rec.of("crashed")) == 3
    assert "boom 0" in rec.of("crashed")[0].detail
    assert info.last_error is not None and "ValueError: boom 3" in info.last_error
    assert info.consecutive_failures == 0
    await sup.stop_child("flaky")


async def test_five_consecutive_failures_escalate_to_a_clean_restart(
    sup: Supervisor, rec: Recorder, clock: FakeClock
) -> None:
    # Four failures, a success, four failures: no restart. Then five in a row: restart.
    script = Script([False] * 4 + [True] + [False] * 4 + [True] + [False] * 5)
    info = await sup.start_child("esc", script.factory)
    await rec.wait_kind("started", 2)
    assert script.made == 2
    assert script.teardowns == 1  # the first instance was torn down before the restart
    restarting = rec.of("restarting")
    assert len(restarting) == 1 and restarting[0].delay == 3.0 and restarting[0].restarts == 1
    assert len(rec.of("crashed")) == 13
    assert backoffs(clock) == [3.0]
    assert info.restarts == 1 and info.runs == 2
    await sup.stop_child("esc")


async def test_exact_backoff_sequence_until_budget_exhausted(
    sup: Supervisor, rec: Recorder, clock: FakeClock
) -> None:
    script = Script(then=False)
    info = await sup.start_child("crashy", script.factory, RestartPolicy(max_restarts=6))
    assert info.state == "running"
    await asyncio.wait_for(info.wait_finished(), TIMEOUT)
    assert [e.delay for e in rec.of("restarting")] == [3, 6, 12, 24, 48, 60]
    assert backoffs(clock) == [3, 6, 12, 24, 48, 60]
    assert info.state == "failed"
    assert script.made == 7 and script.teardowns == 7
    assert script.calls == 35  # five failures per run


async def test_budget_exhausted_marks_failed_removes_and_emits_fatal(
    sup: Supervisor, rec: Recorder, clock: FakeClock
) -> None:
    script = Script(then=False)
    info = await sup.start_child("doomed", script.factory)  # defaults: 5 restarts, 3 s
    await asyncio.wait_for(info.wait_finished(), TIMEOUT)
    assert backoffs(clock) == [3, 6, 12, 24, 48]
    assert info.state == "failed"
    assert info.restarts == 5
    assert "doomed" not in sup.children
    fatal = rec.of("fatal")
    assert len(fatal) == 1
    assert fatal[0].reason == "budget"
    assert "boom" in fatal[0].detail
    assert rec.kinds()[-1] == "fatal"
    # the name is free again
    again = await sup.start_child("doomed", Script().factory)
    assert again.state == "running"
    await sup.stop_all()


async def test_ten_successes_credit_one_restart_back(
    sup: Supervisor, rec: Recorder, clock: FakeClock
) -> None:
    # run 1: five failures -> restart 1; run 2: twenty successes -> one credit only
    script = Script([False] * 5 + [True] * 20 + [False] * 5)
    info = await sup.start_child("healer", script.factory)
    await rec.wait_kind("credited")
    assert info.restarts == 0
    assert rec.of("credited")[0].restarts == 0
    await rec.wait_kind("started", 2)
    await rec.wait(lambda: len(rec.of("restarting")) == 2)
    # the credit lowered the count, so the next back-off starts over at 3 s
    assert [e.delay for e in rec.of("restarting")] == [3.0, 3.0]
    assert len(rec.of("credited")) == 1  # the second ten successes had nothing to credit
    await sup.stop_child("healer")


async def test_credit_counter_resets_on_failure(sup: Supervisor, rec: Recorder) -> None:
    # restart, then 9 ok + 1 fail + 9 ok: never ten in a row -> no credit
    script = Script([False] * 5 + [True] * 9 + [False] + [True] * 9)
    script.hold_at = 5 + 9 + 1 + 9 + 1
    reached = script.at_call(script.hold_at)
    info = await sup.start_child("almost", script.factory)
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    assert "credited" not in rec.kinds()
    assert info.restarts == 1
    await sup.stop_child("almost")


# ---- fatal: compile error and setup failure -------------------------------------------------


async def test_factory_error_is_a_fatal_compile_error(sup: Supervisor, rec: Recorder) -> None:
    calls = 0

    def factory() -> Child:
        nonlocal calls
        calls += 1
        raise SyntaxError("bad code")

    info = await sup.start_child("broken", factory)
    assert info.state == "failed"
    assert calls == 1
    assert rec.kinds() == ["fatal"]
    assert rec.events[0].reason == "compile"
    assert "SyntaxError: bad code" in (info.last_error or "")
    assert sup.children == {}


async def test_setup_failure_is_fatal_without_restart_or_teardown(sup: Supervisor, rec: Recorder) -> None:
    script = Script(fail_setup_on_run=1)
    info = await sup.start_child("nosetup", script.factory)
    assert info.state == "failed"
    assert script.made == 1 and script.teardowns == 0 and script.calls == 0
    assert rec.kinds() == ["fatal"]
    assert rec.events[0].reason == "setup"
    assert "setup broke" in rec.events[0].detail


async def test_setup_failure_after_a_restart_is_fatal(
    sup: Supervisor, rec: Recorder, clock: FakeClock
) -> None:
    script = Script([False] * 5, fail_setup_on_run=2)
    info = await sup.start_child("regress", script.factory)
    await asyncio.wait_for(info.wait_finished(), TIMEOUT)
    assert info.state == "failed"
    assert rec.kinds()[-2:] == ["restarting", "fatal"]
    assert rec.events[-1].reason == "setup"
    assert script.made == 2
    assert backoffs(clock) == [3.0]


# ---- deliberate stop -----------------------------------------------------------------------


async def test_stop_during_process_tears_down_and_never_restarts(sup: Supervisor, rec: Recorder) -> None:
    script = Script()
    script.block = asyncio.Event()  # process() hangs
    reached = script.at_call(1)
    info = await sup.start_child("hang", script.factory)
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    await asyncio.wait_for(sup.stop_child("hang"), TIMEOUT)
    assert info.state == "stopped"
    assert script.teardowns == 1
    assert rec.kinds() == ["started", "stopped"]
    assert info.finished.is_set()
    await asyncio.sleep(0)
    assert script.made == 1


class GateClock(FakeClock):
    """A fake clock whose back-off sleeps (>= 3 s) block until released."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if seconds >= 3:
            self.waiting.set()
            await self.gate.wait()
        await super().sleep(seconds)


async def test_stop_during_backoff_means_no_restart(rec: Recorder) -> None:
    clock = GateClock()
    sup = Supervisor(clock=clock, on_event=rec)
    script = Script(then=False)
    info = await sup.start_child("resting", script.factory)
    await asyncio.wait_for(clock.waiting.wait(), TIMEOUT)
    assert info.state == "restarting"
    await asyncio.wait_for(sup.stop_child("resting"), TIMEOUT)
    clock.gate.set()
    await asyncio.sleep(0)
    assert info.state == "stopped"
    assert script.made == 1 and script.teardowns == 1
    assert rec.kinds()[-1] == "stopped"


async def test_stop_all_stops_every_child(sup: Supervisor, rec: Recorder) -> None:
    a, b = Script(), Script(poll=None)
    await sup.start_child("a", a.factory)
    await sup.start_child("b", b.factory)
    await asyncio.wait_for(sup.stop_all(), TIMEOUT)
    assert sup.children == {}
    assert sorted(e.child for e in rec.of("stopped")) == ["a", "b"]
    assert a.teardowns == 1 and b.teardowns == 1


async def test_child_stopping_itself_does_not_deadlock(sup: Supervisor, rec: Recorder) -> None:
    class SelfStopper(Child):
        async def process(self) -> None:
            await sup.stop_child("selfish")

    script = Script()
    info = await sup.start_child("selfish", lambda: SelfStopper(script, 1))
    await asyncio.wait_for(info.wait_finished(), TIMEOUT)
    assert info.state == "stopped"
    assert script.teardowns == 1


# ---- event-driven children ---------------------------------------------------------------


async def test_event_driven_child_cycles_on_health(sup: Supervisor, rec: Recorder, clock: FakeClock) -> None:
    script = Script(poll=None, health=[False] * 5)
    policy = RestartPolicy(health_interval=7.0)
    info = await sup.start_child("listener", script.factory, policy)
    await rec.wait_kind("started", 2)
    assert script.calls == 0  # process() is never polled
    assert [s for s in clock.sleeps if s != 7.0] == [3.0]
    assert clock.sleeps[:5] == [7.0] * 5
    assert all("unhealthy" in e.detail for e in rec.of("crashed"))
    reached = script.at_call(5 + 10)
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    await rec.wait_kind("credited")
    assert info.restarts == 0
    await sup.stop_child("listener")


async def test_health_exception_and_health_objects(sup: Supervisor, rec: Recorder) -> None:
    class Health:
        def __init__(self, ok: bool, detail: str) -> None:
            self.ok, self.detail = ok, detail

    class Odd(Child):
        async def health(self) -> Any:
            n = self.script.health_calls
            self.script.health_calls += 1
            if n == 0:
                raise OSError("sensor gone")
            return Health(n > 1, "warming up")

    script = Script(poll=None)
    await sup.start_child("odd", lambda: Odd(script, 1))
    await _until(lambda: script.health_calls >= 4)
    details = [e.detail for e in rec.of("crashed")]
    assert "health check raised OSError: sensor gone" in details[0]
    assert "unhealthy: warming up" in details[1]
    assert len(details) == 2
    await sup.stop_child("odd")


# ---- isolation ---------------------------------------------------------------------------


async def test_on_event_raising_is_logged_not_fatal(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def bad(event: SupervisorEvent) -> None:
        seen.append(event.kind)
        raise RuntimeError("listener bug")

    sup = Supervisor(clock=clock, on_event=bad)
    script = Script([False] * 5)
    info = await sup.start_child("x", script.factory)
    await asyncio.wait_for(_until(lambda: script.made >= 2), TIMEOUT)
    await sup.stop_child("x")
    assert info.state == "stopped"
    assert seen[0] == "started" and seen[-1] == "stopped"
    assert "on_event callback failed" in caplog.text


async def test_async_on_event_is_awaited(clock: FakeClock) -> None:
    seen: list[str] = []

    async def listener(event: SupervisorEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.kind)

    sup = Supervisor(clock=clock, on_event=listener)
    await sup.start_child("y", Script().factory)
    await sup.stop_child("y")
    assert seen == ["started", "stopped"]


async def test_system_exit_and_stray_cancellation_in_process_are_failures(
    sup: Supervisor, rec: Recorder
) -> None:
    class Rogue(Child):
        async def process(self) -> None:
            self.script.calls += 1
            if self.script.calls % 2:
                raise SystemExit(3)
            raise asyncio.CancelledError

    script = Script()
    await sup.start_child("rogue", lambda: Rogue(script, 1))
    await rec.wait_kind("restarting")
    details = [e.detail for e in rec.of("crashed")]
    assert details[0].startswith("SystemExit: 3")
    assert "CancelledError" in details[1]
    await sup.stop_child("rogue")


async def test_teardown_failure_is_logged_and_restart_continues(
    sup: Supervisor, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    class BadTeardown(Child):
        async def teardown(self) -> None:
            self.script.teardowns += 1
            raise OSError("port stuck")

    script = Script([False] * 5)
    await sup.start_child("td", lambda: BadTeardown(script, script.made))
    await rec.wait_kind("started", 2)
    assert "teardown failed" in caplog.text
    await sup.stop_child("td")
    assert script.teardowns == 2


async def test_duplicate_and_unknown_names(sup: Supervisor) -> None:
    await sup.start_child("dup", Script().factory)
    with pytest.raises(ChildExistsError) as err:
        await sup.start_child("dup", Script().factory)
    assert err.value.code == "conflict"
    with pytest.raises(ChildNotFoundError) as missing:
        await sup.stop_child("nobody")
    assert missing.value.code == "not_found"
    await sup.stop_all()


async def test_start_without_waiting(sup: Supervisor) -> None:
    info = await sup.start_child("lazy", Script().factory, wait=False)
    assert info.state == "starting"
    await _until(lambda: info.state == "running")
    assert info.to_dict()["state"] == "running"
    await sup.stop_child("lazy")


async def test_cancelled_caller_does_not_leak_the_child(sup: Supervisor) -> None:
    script = Script()
    waiter = asyncio.create_task(sup.start_child("c", script.factory))
    await asyncio.sleep(0)  # let start_child register the child and start waiting
    assert "c" in sup.children
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # the child still starts and can be stopped normally
    await _until(lambda: "c" in sup.children and sup.children["c"].state == "running")
    info = await sup.stop_child("c")
    assert info.state == "stopped" and script.teardowns == 1


async def test_external_cancellation_tears_down(sup: Supervisor, rec: Recorder) -> None:
    script = Script()
    script.block = asyncio.Event()
    reached = script.at_call(1)
    info = await sup.start_child("ext", script.factory)
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "devfleet-actor:ext")
    task.cancel()
    await asyncio.wait({task}, timeout=TIMEOUT)
    assert task.cancelled()  # not a deliberate stop: the cancellation propagates
    assert info.state == "stopped" and script.teardowns == 1
    assert sup.children == {}


async def test_event_wire_form(sup: Supervisor, rec: Recorder, clock: FakeClock) -> None:
    script = Script([False] * 5)
    await sup.start_child("w", script.factory)
    await rec.wait_kind("restarting")
    wire = rec.of("restarting")[0].to_wire()
    assert wire["kind"] == "restarting" and wire["delay"] == 3.0 and wire["restarts"] == 1
    assert wire["at"] >= clock.time() - 1000
    await sup.stop_child("w")


async def _until(pred: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0)
