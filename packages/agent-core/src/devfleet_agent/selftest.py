"""The built-in supervisor self-test (``devfleet-agent --test``), no broker needed.

It runs the seven scenarios of Wactorz's ``remote_runner.py --test`` against the
real :class:`~devfleet_agent.supervisor.Supervisor` and real
:class:`~devfleet_agent.actors.DynamicActor` s compiled from code strings, on a
:class:`~devfleet_agent.clock.FakeClock` (so back-off costs no real time), and
prints one ``PASS name`` or ``FAIL name: why`` line per scenario and a summary.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from .actors.dynamic import dynamic_factory
from .actors.spec import SpawnSpec
from .clock import FakeClock
from .supervisor import ChildInfo, Supervisor, SupervisorEvent

__all__ = ["SCENARIOS", "run_selftest"]

_TIMEOUT = 10.0  # real seconds per scenario; they take milliseconds


class _Failed(Exception):
    pass


class _Bus:
    """An in-memory ActorBus that counts publishes per topic."""

    node = "selftest"

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self.logs: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    async def publish(self, topic: str, data: Any) -> None:
        self.published.append((topic, data))
        self._changed.set()

    async def log(self, actor_id: str, name: str, level: str, message: str) -> None:
        self.logs.append((level, message))

    async def send_to(self, name: str, payload: Any, timeout: float) -> Any:
        return None

    def agents(self) -> list[dict[str, Any]]:
        return []

    def count(self, topic: str) -> int:
        return sum(1 for t, _ in self.published if t == topic)

    async def wait_count(self, topic: str, n: int) -> None:
        while self.count(topic) < n:
            self._changed.clear()
            await self._changed.wait()


class _Run:
    """One scenario's world: a fake clock, a supervisor, a bus and the events."""

    def __init__(self, state_dir: Path) -> None:
        self.clock = FakeClock()
        self.events: list[SupervisorEvent] = []
        self._changed = asyncio.Event()
        self.sup = Supervisor(clock=self.clock, on_event=self._record)
        self.bus = _Bus()
        self.state_dir = state_dir

    def _record(self, event: SupervisorEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def kinds(self, kind: str) -> list[SupervisorEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait_event(self, kind: str, n: int = 1) -> None:
        while len(self.kinds(kind)) < n:
            self._changed.clear()
            await self._changed.wait()

    async def spawn(self, name: str, code: str, **fields: Any) -> ChildInfo:
        spec = SpawnSpec.from_payload({"name": name, "code": code, "poll_interval": 1, **fields})
        factory = dynamic_factory(spec, self.bus, state_dir=self.state_dir)
        return await self.sup.start_child(name, factory, spec.policy())


def _check(condition: bool, why: str) -> None:
    if not condition:
        raise _Failed(why)


_TICK = """
async def setup(agent):
    await agent.log("ready")

async def process(agent):
    agent.state["n"] = agent.state.get("n", 0) + 1
    await agent.publish("selftest/tick", {"n": agent.state["n"]})
"""

_CRASH = """
async def process(agent):
    raise RuntimeError("sensor unplugged")
"""


async def _stable(run: _Run) -> None:
    info = await run.spawn("stable", _TICK)
    _check(info.state == "running", f"state is {info.state}")
    await run.bus.wait_count("selftest/tick", 20)
    _check(info.restarts == 0, f"{info.restarts} restarts")
    _check(not run.kinds("crashed"), "a cycle failed")
    await run.sup.stop_child("stable")


async def _crash_restart(run: _Run) -> None:
    info = await run.spawn("crashy", _CRASH)
    await run.wait_event("started", 2)
    delays = [e.delay for e in run.kinds("restarting")]
    _check(delays == [3.0], f"back-off {delays}, want [3.0]")
    _check(len(run.kinds("crashed")) >= 5, "fewer than 5 failures before the restart")
    _check(info.restarts == 1, f"restart count {info.restarts}")
    await run.sup.stop_child("crashy")


async def _budget(run: _Run) -> None:
    info = await run.spawn("doomed", _CRASH, max_restarts=3)
    await info.wait_finished()
    delays = [e.delay for e in run.kinds("restarting")]
    _check(delays == [3.0, 6.0, 12.0], f"back-off {delays}, want [3, 6, 12]")
    _check(info.state == "failed", f"state is {info.state}")
    _check("doomed" not in run.sup.children, "still in the registry")
    fatal = run.kinds("fatal")
    _check(len(fatal) == 1 and fatal[0].reason == "budget", "no fatal budget event")


async def _deliberate_stop(run: _Run) -> None:
    info = await run.spawn("stopper", _TICK)
    await run.bus.wait_count("selftest/tick", 3)
    await run.sup.stop_child("stopper")
    seen = run.bus.count("selftest/tick")
    for _ in range(20):
        await asyncio.sleep(0)
    _check(info.state == "stopped", f"state is {info.state}")
    _check(run.bus.count("selftest/tick") == seen, "it kept running after the stop")
    _check(not run.kinds("restarting"), "it was restarted")
    _check([e.kind for e in run.events][-1] == "stopped", "no stopped event")


async def _health_credit(run: _Run) -> None:
    code = """
async def process(agent):
    n = agent.recall("n", 0)
    agent.persist("n", n + 1)
    if n < 5:
        raise RuntimeError(f"warming up {n}")
    await agent.publish("selftest/tick", n)
"""
    info = await run.spawn("healer", code)
    await run.wait_event("credited")
    _check(run.kinds("restarting")[0].restarts == 1, "no restart before the credit")
    _check(info.restarts == 0, f"restart count {info.restarts} after the credit, want 0")
    _check(run.bus.count("selftest/tick") >= 10, "fewer than 10 good cycles")
    await run.sup.stop_child("healer")


async def _compile_error(run: _Run) -> None:
    info = await run.spawn("broken", "async def process(agent)\n    pass\n")
    _check(info.state == "failed", f"state is {info.state}")
    fatal = run.kinds("fatal")
    _check(len(fatal) == 1 and fatal[0].reason == "compile", "no fatal compile event")
    _check(not run.kinds("restarting"), "it was restarted")


async def _setup_failure(run: _Run) -> None:
    code = """
async def setup(agent):
    raise OSError("no such device")

async def process(agent):
    await agent.publish("selftest/tick", 1)
"""
    info = await run.spawn("nosetup", code)
    _check(info.state == "failed", f"state is {info.state}")
    fatal = run.kinds("fatal")
    _check(len(fatal) == 1 and fatal[0].reason == "setup", "no fatal setup event")
    _check("no such device" in (info.last_error or ""), f"last_error {info.last_error!r}")
    _check(run.bus.count("selftest/tick") == 0, "process() ran")
    _check(not run.kinds("restarting"), "it was restarted")


SCENARIOS: dict[str, Callable[[_Run], Awaitable[None]]] = {
    "stable agent": _stable,
    "crash + restart": _crash_restart,
    "budget exhaustion": _budget,
    "deliberate stop": _deliberate_stop,
    "health credit": _health_credit,
    "compile error": _compile_error,
    "setup failure": _setup_failure,
}
"""The scenarios, in the order they run."""


async def _run_all(out: TextIO) -> int:
    failed = 0
    with tempfile.TemporaryDirectory(prefix="devfleet-selftest-") as tmp:
        for i, (name, scenario) in enumerate(SCENARIOS.items()):
            state_dir = Path(tmp) / str(i)
            run = _Run(state_dir)
            try:
                await asyncio.wait_for(scenario(run), _TIMEOUT)
            except _Failed as exc:
                failed += 1
                print(f"FAIL {name}: {exc}", file=out)
            except TimeoutError:
                failed += 1
                print(f"FAIL {name}: timed out after {_TIMEOUT:g}s", file=out)
            except Exception as exc:
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}", file=out)
            else:
                print(f"PASS {name}", file=out)
            finally:
                await run.sup.stop_all()
    total = len(SCENARIOS)
    print(f"{total - failed}/{total} supervisor tests passed", file=out)
    return 0 if failed == 0 else 1


def run_selftest(out: TextIO | None = None) -> int:
    """Run the seven supervisor scenarios; 0 when all pass, else 1.

    Args:
        out: where the report goes (``sys.stdout`` by default).

    Must be called outside a running event loop (it uses :func:`asyncio.run`).
    """
    # The scenarios crash on purpose: keep their warnings off an unconfigured
    # stderr (a configured root logger, e.g. --loglevel DEBUG, still gets them).
    quiet = logging.NullHandler()
    package_log = logging.getLogger("devfleet")
    package_log.addHandler(quiet)
    try:
        return asyncio.run(_run_all(out if out is not None else sys.stdout))
    finally:
        package_log.removeHandler(quiet)
