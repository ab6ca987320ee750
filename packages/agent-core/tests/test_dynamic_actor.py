"""DynamicActor: compiling spawn code, the edge agent API, persisted state."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.actors import (
    ActorBus,
    CompileError,
    DynamicActor,
    SpawnSpec,
    StateStore,
    StateStoreError,
    dynamic_factory,
)
from devfleet_agent.clock import FakeClock
from devfleet_agent.supervisor import Runnable, Supervisor, SupervisorEvent
from devfleet_base.contract import actor_id, node_id
from devfleet_base.errors import CommandError


class MemoryBus:
    """An in-memory ActorBus."""

    def __init__(self, node: str = "rpi-test") -> None:
        self._node = node
        self.published: list[tuple[str, Any]] = []
        self.logs: list[tuple[str, str, str, str]] = []
        self.sent: list[tuple[str, Any, float]] = []
        self.reply: Any = {"ok": True}
        self.changed = asyncio.Event()

    @property
    def node(self) -> str:
        return self._node

    async def publish(self, topic: str, data: Any) -> None:
        self.published.append((topic, data))
        self.changed.set()

    async def log(self, actor_id: str, name: str, level: str, message: str) -> None:
        self.logs.append((actor_id, name, level, message))
        self.changed.set()

    async def send_to(self, name: str, payload: Any, timeout: float) -> Any:
        self.sent.append((name, payload, timeout))
        return self.reply

    def agents(self) -> list[dict[str, Any]]:
        return [{"name": "a", "actor_id": actor_id("a"), "node": self._node}]

    async def wait(self, pred: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self.changed.clear()
                await self.changed.wait()


class AlertingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[tuple[str, str]] = []

    async def alert(self, actor_id: str, name: str, severity: str, message: str) -> None:
        self.alerts.append((severity, message))


def make(code: str, tmp_path: Path, bus: MemoryBus | None = None, **fields: Any) -> DynamicActor:
    spec = SpawnSpec.from_payload({"name": "t1", "code": code, **fields})
    return DynamicActor(spec, bus or MemoryBus(), state_dir=tmp_path)


FULL = """
async def setup(agent):
    agent.state["ready"] = True
    await agent.log("ready")

async def process(agent):
    await agent.publish("sensors/t", {"node": agent.node, "ready": agent.state["ready"]})

async def handle_task(agent, payload):
    return {"echo": payload, "from": agent.name}
"""


def test_ids_are_stable_uuid5() -> None:
    assert actor_id("x") == str(uuid.uuid5(uuid.NAMESPACE_DNS, "wactorz.actor.x"))
    assert node_id("rpi") == str(uuid.uuid5(uuid.NAMESPACE_DNS, "wactorz.node.rpi"))
    assert actor_id("x") != node_id("x")


async def test_lifecycle_and_agent_api(tmp_path: Path) -> None:
    bus = MemoryBus()
    actor = make(FULL, tmp_path, bus, poll_interval=2)
    assert isinstance(actor, Runnable)
    assert isinstance(bus, ActorBus)
    assert actor.poll_interval == 2.0 and actor.handles_tasks
    assert actor.actor_id == actor_id("t1") == actor.agent.actor_id
    await actor.setup()
    await actor.process()
    assert bus.published == [("sensors/t", {"node": "rpi-test", "ready": True})]
    assert bus.logs == [(actor_id("t1"), "t1", "info", "ready")]
    assert await actor.handle_task({"q": 1}) == {"echo": {"q": 1}, "from": "t1"}
    assert await actor.health() is True
    await actor.teardown()
    assert repr(actor.agent) == "<agent t1 on rpi-test>"


async def test_send_to_agents_and_alerts(tmp_path: Path) -> None:
    bus = MemoryBus()
    actor = make("async def process(agent): pass", tmp_path, bus)
    agent = actor.agent
    assert await agent.send_to("other", {"x": 1}) == {"ok": True}
    assert await agent.delegate("other", 2, timeout=5) == {"ok": True}
    assert bus.sent == [("other", {"x": 1}, 30.0), ("other", 2, 5)]
    with pytest.raises(ValueError):
        await agent.send_to("other", {}, timeout=0)
    assert agent.agents()[0]["name"] == "a"
    await agent.alert("hot", "error")
    await agent.alert("warm")
    assert [(lvl, msg) for _, _, lvl, msg in bus.logs] == [("error", "hot"), ("warning", "warm")]
    with pytest.raises(ValueError, match="severity"):
        await agent.alert("x", "critical")
    for bad in ("", "a/+/b", "a/#", "a\0b"):
        with pytest.raises(ValueError):
            await agent.publish(bad, 1)
    alerting = AlertingBus()
    other = make("async def process(agent): pass", tmp_path, alerting)
    await other.agent.alert("smoke", "info")
    assert alerting.alerts == [("info", "smoke")] and alerting.logs == []


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("async def process(agent)\n    pass\n", "does not compile"),
        ("x = 'a\0b'\0", "does not compile"),
        ("import no_such_module_xyz\nasync def process(agent): pass", "failed at import"),
        ("raise SystemExit(1)", "failed at import"),
        ("def process(agent): pass", "must be an 'async def'"),
        ("async def setup(agent): pass", "none of process(), handle_task() and run()"),
    ],
)
def test_compile_errors(tmp_path: Path, code: str, fragment: str) -> None:
    with pytest.raises(CompileError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        make(code, tmp_path)


def test_syntax_error_names_the_actor(tmp_path: Path) -> None:
    with pytest.raises(CompileError) as err:
        make("async def process(agent):\n    return (\n", tmp_path)
    assert "<actor t1>" in str(err.value)
    assert isinstance(err.value.__cause__, SyntaxError)


async def test_event_driven_without_process(tmp_path: Path) -> None:
    code = "async def handle_task(agent, payload):\n    return payload * 2\n"
    actor = make(code, tmp_path)
    assert actor.poll_interval is None
    await actor.setup()
    await actor.process()  # a no-op
    assert await actor.handle_task(21) == 42


async def test_process_with_null_poll_interval_uses_the_default(tmp_path: Path) -> None:
    actor = make("async def process(agent): pass", tmp_path, poll_interval=None)
    assert actor.poll_interval == 5.0


async def test_handle_task_errors(tmp_path: Path) -> None:
    bus = MemoryBus()
    actor = make("async def process(agent): pass", tmp_path, bus)
    with pytest.raises(CommandError) as none:
        await actor.handle_task({})
    assert none.value.code == "unknown_command"
    failing = make("async def handle_task(agent, p):\n    raise KeyError(p)\n", tmp_path, bus)
    with pytest.raises(CommandError) as err:
        await failing.handle_task("k")
    assert err.value.code == "failed" and "KeyError" in err.value.message
    assert bus.logs[-1][2] == "error"


async def test_exit_in_actor_code_is_an_ordinary_error(tmp_path: Path) -> None:
    actor = make("import sys\nasync def process(agent):\n    sys.exit(2)\n", tmp_path)
    with pytest.raises(RuntimeError, match="exit"):
        await actor.process()


async def test_optional_teardown_and_health_hooks(tmp_path: Path) -> None:
    code = """
async def process(agent): pass
async def teardown(agent):
    await agent.log("bye")
async def health(agent):
    return agent.state.get("ok", False)
"""
    bus = MemoryBus()
    actor = make(code, tmp_path, bus)
    assert await actor.health() is False
    actor.agent.state["ok"] = True
    assert await actor.health() is True
    await actor.teardown()
    assert bus.logs[-1][3] == "bye"


async def test_traceback_shows_actor_source(tmp_path: Path) -> None:
    import traceback

    actor = make("async def process(agent):\n    raise ValueError('line two')\n", tmp_path)
    with pytest.raises(ValueError) as err:
        await actor.process()
    text = "".join(traceback.format_exception(err.value))
    assert 'File "<actor t1>", line 2' in text and "raise ValueError('line two')" in text


# ---- persist / recall ----------------------------------------------------------------------


async def test_persist_and_recall_survive_a_new_instance(tmp_path: Path) -> None:
    actor = make("async def process(agent): pass", tmp_path)
    agent = actor.agent
    assert agent.recall("missing") is None
    assert agent.recall("missing", 7) == 7
    agent.persist("count", 3)
    agent.persist("cfg", {"a": [1, 2]})
    path = tmp_path / "agentflow_t1_state.json"
    assert json.loads(path.read_text()) == {"count": 3, "cfg": {"a": [1, 2]}}
    got = agent.recall("cfg")
    got["a"].append(99)  # recall returns a copy
    assert agent.recall("cfg") == {"a": [1, 2]}
    again = make("async def process(agent): pass", tmp_path)
    assert again.agent.recall("count") == 3
    assert again.agent.state == {}  # state is in memory only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agentflow_t1_state.json"]


def test_default_state_path_is_wactorz_compatible() -> None:
    spec = SpawnSpec.from_payload({"name": "t9", "code": "async def process(agent): pass"})
    actor = DynamicActor(spec, MemoryBus())
    assert actor.store.path == Path("/tmp/agentflow_t9_state.json")


def test_persist_rejects_non_json_and_keeps_the_store(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json")
    store.set("a", 1)
    for bad in (object(), float("nan"), {1j: 2}):
        with pytest.raises(ValueError):
            store.set("b", bad)
    with pytest.raises(TypeError):
        store.set(5, 1)  # type: ignore[arg-type]
    assert store.get("b") is None
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1}


def test_write_is_atomic_when_replace_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    store = StateStore(path)
    store.set("a", 1)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StateStoreError, match="disk gone"):
        store.set("a", 2)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is untouched
    assert store.get("a") == 1  # and so is the store in memory
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temp file left


def test_write_uses_fsync_and_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    StateStore(tmp_path / "s.json").set("k", "v")
    assert calls[:2] == ["fsync", "replace"]


@pytest.mark.parametrize("content", ['{"a": 1, "b": [1, 2', "[1, 2]", "", "\xff"])
async def test_corrupt_file_gives_a_clear_error_and_an_empty_store(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "agentflow_t1_state.json"
    path.write_bytes(content.encode("latin-1"))
    bus = MemoryBus()
    actor = make("async def process(agent): pass", tmp_path, bus)
    await actor.setup()  # does not crash
    assert actor.agent.recall("a") is None
    assert actor.store.load_error is not None
    assert str(path) in actor.store.load_error
    assert "starting with an empty store" in caplog.text
    assert bus.logs and bus.logs[0][2] == "error" and str(path) in bus.logs[0][3]
    assert "is corrupt" in actor.store.load_error
    assert (tmp_path / "agentflow_t1_state.json.corrupt").exists()
    actor.agent.persist("a", 2)  # a fresh file replaces it
    assert json.loads(path.read_text()) == {"a": 2}


# ---- under the supervisor -----------------------------------------------------------------


async def test_dynamic_actor_under_the_supervisor(tmp_path: Path) -> None:
    events: list[SupervisorEvent] = []
    sup = Supervisor(clock=FakeClock(), on_event=events.append)
    bus = MemoryBus()
    spec = SpawnSpec.from_payload({"name": "sensor", "code": FULL, "poll_interval": 1})
    info = await sup.start_child("sensor", dynamic_factory(spec, bus, state_dir=tmp_path), spec.policy())
    assert info.state == "running"
    assert isinstance(info.instance, DynamicActor)
    assert await info.instance.handle_task("hi") == {"echo": "hi", "from": "sensor"}
    await bus.wait(lambda: len(bus.published) >= 5)
    await sup.stop_child("sensor")
    assert [e.kind for e in events] == ["started", "stopped"]


async def test_compile_error_is_fatal_under_the_supervisor(tmp_path: Path) -> None:
    events: list[SupervisorEvent] = []
    sup = Supervisor(clock=FakeClock(), on_event=events.append)
    spec = SpawnSpec.from_payload({"name": "bad", "code": "async def process(agent)"})
    info = await sup.start_child("bad", dynamic_factory(spec, MemoryBus(), state_dir=tmp_path))
    assert info.state == "failed"
    assert [(e.kind, e.reason) for e in events] == [("fatal", "compile")]
    assert "does not compile" in (info.last_error or "")
