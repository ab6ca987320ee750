"""Dynamic actors: code that arrives in a spawn command, run as a supervised child.

The spawn's ``code`` defines module-level coroutine functions::

    async def setup(agent): ...               # optional; raising is fatal
    async def process(agent): ...             # one cycle, every poll_interval seconds
    async def handle_task(agent, payload): ...  # optional; answers agents/by-name/{name}/task
    async def teardown(agent): ...            # optional (devfleet extension)
    async def health(agent): ...              # optional (devfleet extension), returns bool
    async def bid(agent, request): ...        # optional: work trading (docs/trading.md)
    async def run(agent, assignment): ...     # optional: an assigned task or a pool job

At least one of ``process``, ``handle_task`` and ``run`` must exist. Without ``process``
the actor is event-driven: the supervisor's cycle is its health check.

``agent`` is an :class:`ActorAgent`, the "Agent API on the edge" of Wactorz
remote nodes. Its I/O goes through an injected :class:`ActorBus`, so nothing
here imports paho; the agent's MQTT client implements the bus.

A :class:`DynamicActor` compiles its code in ``__init__``, so the supervisor's
factory (:func:`dynamic_factory`) raises :class:`CompileError` for broken code
and the supervisor treats it as fatal.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import inspect
import json
import linecache
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from devfleet_base.contract import actor_id
from devfleet_base.errors import Code, CommandError, ComponentError

from ..storage import atomic_write_json
from .spec import DEFAULT_POLL_INTERVAL, SpawnSpec

__all__ = [
    "ALERT_SEVERITIES",
    "DEFAULT_STATE_DIR",
    "ActorAgent",
    "ActorBus",
    "CompileError",
    "DynamicActor",
    "StateStore",
    "StateStoreError",
    "dynamic_factory",
    "state_file",
]

log = logging.getLogger("devfleet.actors")

ALERT_SEVERITIES = ("info", "warning", "error")
"""The severities :meth:`ActorAgent.alert` accepts."""

DEFAULT_STATE_DIR = Path("/tmp")  # noqa: S108 - Wactorz's documented location
"""Where ``agentflow_{name}_state.json`` lives unless the agent says otherwise."""

_AsyncFn = Callable[..., Coroutine[Any, Any, Any]]


def state_file(state_dir: Path | None, name: str) -> Path:
    """The file that holds the persisted values of the actor ``name``.

    Args:
        state_dir: the directory (``None``: :data:`DEFAULT_STATE_DIR`, Wactorz's ``/tmp``).
        name: the actor's name.
    """
    directory = state_dir if state_dir is not None else DEFAULT_STATE_DIR
    return directory / f"agentflow_{name}_state.json"


class CompileError(ComponentError):
    """An actor's code does not compile, fails at import, or lacks its functions."""

    code = Code.INVALID


class StateStoreError(ComponentError):
    """A persisted value could not be written."""


@runtime_checkable
class ActorBus(Protocol):
    """The agent-side I/O a dynamic actor needs (implemented over MQTT by the agent).

    A bus may also define ``async alert(actor_id, name, severity, message)``;
    when it does, :meth:`ActorAgent.alert` uses it, else alerts go to ``log``
    with the severity as level.
    """

    @property
    def node(self) -> str:
        """The node this agent runs on."""
        ...

    async def publish(self, topic: str, data: Any) -> None:
        """Publish ``data`` (JSON-able) on ``topic``."""
        ...

    async def log(self, actor_id: str, name: str, level: str, message: str) -> None:
        """Ship one log line to ``agents/{actor_id}/logs``."""
        ...

    async def send_to(self, name: str, payload: Any, timeout: float) -> Any:
        """Send a task to the actor ``name`` anywhere in the fleet; return its reply."""
        ...

    def agents(self) -> list[dict[str, Any]]:
        """The actors running on this node."""
        ...


class StateStore:
    """Small JSON values of one actor, in one file, written atomically.

    The file is read lazily on first use. A file that is not a JSON object (a
    truncated write from an older runner, say) is moved aside to
    ``<file>.corrupt``, logged, and the store starts empty;
    :attr:`load_error` then says what happened.

    Args:
        path: the JSON file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.load_error: str | None = None
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        data: dict[str, Any] = {}
        raw: bytes | None = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.load_error = f"cannot read {self.path}: {exc}"
            log.error("%s; starting with an empty store", self.load_error)
        if raw is not None:
            try:
                loaded = json.loads(raw.decode("utf-8"))
                if not isinstance(loaded, dict):
                    raise ValueError(f"expected a JSON object, got {type(loaded).__name__}")
                data = loaded
            except (ValueError, RecursionError) as exc:
                aside = self.path.with_name(self.path.name + ".corrupt")
                self.load_error = f"state file {self.path} is corrupt ({exc}); moved to {aside}"
                log.error("%s; starting with an empty store", self.load_error)
                with contextlib.suppress(OSError):
                    os.replace(self.path, aside)
        self._data = data
        return data

    def load(self) -> None:
        """Read the file now (normally it is read on first use)."""
        self._load()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` (a copy), or ``default``."""
        data = self._load()
        if key not in data:
            return default
        return copy.deepcopy(data[key])

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` and write the file atomically.

        Raises:
            TypeError: ``key`` is not a string.
            ValueError: ``value`` is not JSON (NaN and infinities included).
            StateStoreError: the file could not be written (the store is unchanged).
        """
        if not isinstance(key, str):
            raise TypeError(f"persist key must be a string, not {type(key).__name__}")
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"persist value for {key!r} is not JSON: {exc}") from None
        data = dict(self._load())
        data[key] = json.loads(encoded)
        self._write(data)
        self._data = data

    def replace_all(self, data: dict[str, Any]) -> None:
        """Replace every stored value with ``data`` (a migrated actor's state).

        Raises:
            ValueError: ``data`` is not a JSON object with string keys.
            StateStoreError: the file could not be written (the store is unchanged).
        """
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ValueError("actor state must be a JSON object with string keys")
        try:
            encoded = json.dumps(data, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"actor state is not JSON: {exc}") from None
        fresh = json.loads(encoded)
        self._write(fresh)
        self._data = fresh
        self.load_error = None

    def snapshot(self) -> dict[str, Any]:
        """Every stored value (a deep copy), read from disk if not loaded yet."""
        return copy.deepcopy(self._load())

    def _write(self, data: dict[str, Any]) -> None:
        try:
            atomic_write_json(self.path, data)
        except OSError as exc:
            raise StateStoreError(f"cannot write {self.path}: {exc}") from exc


class ActorAgent:
    """The ``agent`` object a dynamic actor's code receives (Wactorz's edge API).

    Args:
        name: the actor's name.
        bus: the agent's I/O.
        store: the actor's persisted values.

    Attributes:
        name: the actor's name.
        actor_id: ``uuid5(NAMESPACE_DNS, "wactorz.actor.{name}")``.
        state: an in-memory dict, fresh for every (re)start, never persisted.
    """

    def __init__(self, name: str, bus: ActorBus, store: StateStore) -> None:
        self.name = name
        self.actor_id = actor_id(name)
        self.state: dict[str, Any] = {}
        self._bus = bus
        self._store = store

    @property
    def node(self) -> str:
        """The node this actor runs on."""
        return self._bus.node

    async def publish(self, topic: str, data: Any) -> None:
        """Publish ``data`` (JSON-able) on any MQTT topic.

        Raises:
            ValueError: ``topic`` is empty or has a wildcard or NUL.
        """
        if not isinstance(topic, str) or not topic or any(c in topic for c in "+#\0"):
            raise ValueError(f"cannot publish to topic {topic!r}")
        await self._bus.publish(topic, data)

    async def log(self, message: Any) -> None:
        """Log to ``agents/{id}/logs``, visible on the central dashboard."""
        await self._bus.log(self.actor_id, self.name, "info", str(message))

    async def alert(self, message: Any, severity: str = "warning") -> None:
        """Publish an alert of ``severity`` ``info``, ``warning`` or ``error``.

        Raises:
            ValueError: any other severity.
        """
        if severity not in ALERT_SEVERITIES:
            raise ValueError(f"alert severity must be one of {', '.join(ALERT_SEVERITIES)}, not {severity!r}")
        alert = getattr(self._bus, "alert", None)
        if callable(alert):
            await alert(self.actor_id, self.name, severity, str(message))
        else:
            await self._bus.log(self.actor_id, self.name, severity, str(message))

    def persist(self, key: str, value: Any) -> None:
        """Store a JSON value that survives restarts (see :meth:`StateStore.set`)."""
        self._store.set(key, value)

    def recall(self, key: str, default: Any = None) -> Any:
        """A value stored with :meth:`persist`, or ``default``."""
        return self._store.get(key, default)

    async def send_to(self, name: str, payload: Any, timeout: float = 30.0) -> Any:
        """Send a task to the actor ``name`` (local or remote) and return its reply.

        Raises:
            ValueError: ``timeout`` is not positive.
        """
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        return await self._bus.send_to(name, payload, timeout)

    async def delegate(self, name: str, payload: Any, timeout: float = 30.0) -> Any:
        """Alias of :meth:`send_to` (Wactorz code uses both names)."""
        return await self.send_to(name, payload, timeout)

    def agents(self) -> list[dict[str, Any]]:
        """The actors running on this node."""
        return list(self._bus.agents())

    def __repr__(self) -> str:
        return f"<agent {self.name} on {self.node}>"


class DynamicActor:
    """A :class:`~devfleet_agent.supervisor.Runnable` compiled from a spawn's code.

    Args:
        spec: the validated spawn.
        bus: the agent's I/O.
        state_dir: the directory of ``agentflow_{name}_state.json``.
        state_path: the state file itself (overrides ``state_dir``; the agent's own
            layout is ``{data_dir}/actors/{name}.json``).

    Raises:
        CompileError: the code does not compile, raises at import, or defines
            neither ``process`` nor ``handle_task`` (or defines them not as
            ``async def``).
    """

    def __init__(
        self,
        spec: SpawnSpec,
        bus: ActorBus,
        *,
        state_dir: Path | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.actor_id = actor_id(spec.name)
        self.store = StateStore(state_path or state_file(state_dir, spec.name))
        self.agent = ActorAgent(spec.name, bus, self.store)
        self._bus = bus
        fns = _compile(spec.name, spec.code)
        self._setup = fns.get("setup")
        self._process = fns.get("process")
        self._handle_task = fns.get("handle_task")
        self._teardown = fns.get("teardown")
        self._health = fns.get("health")
        self.bid_fn = fns.get("bid")
        """``bid(agent, request)``: a work-trading proposal (see devfleet_agent.trading)."""
        self.run_fn = fns.get("run")
        """``run(agent, assignment)``: an assigned task or a pool job."""
        if self._process is None and self._handle_task is None and self.run_fn is None:
            raise CompileError(f"actor {spec.name!r} defines none of process(), handle_task() and run()")
        self.poll_interval: float | None = None
        if self._process is not None:
            self.poll_interval = (
                spec.poll_interval if spec.poll_interval is not None else DEFAULT_POLL_INTERVAL
            )

    @property
    def handles_tasks(self) -> bool:
        """Whether the code defines ``handle_task``."""
        return self._handle_task is not None

    async def setup(self) -> None:
        """Load persisted values (reporting a corrupt file), then run ``setup(agent)``."""
        self.store.load()
        if self.store.load_error is not None:
            with contextlib.suppress(Exception):
                await self._bus.log(self.actor_id, self.name, "error", self.store.load_error)
        if self._setup is not None:
            await _guard_exit(self._setup(self.agent))

    async def process(self) -> None:
        """Run ``process(agent)`` once."""
        if self._process is not None:
            await _guard_exit(self._process(self.agent))

    async def teardown(self) -> None:
        """Run ``teardown(agent)`` if the code defines it."""
        if self._teardown is not None:
            await _guard_exit(self._teardown(self.agent))

    async def health(self) -> bool:
        """``health(agent)`` if the code defines it, else ``True``."""
        if self._health is None:
            return True
        return bool(await _guard_exit(self._health(self.agent)))

    async def handle_task(self, payload: Any) -> Any:
        """Answer a task addressed to this actor.

        Raises:
            CommandError: the code has no ``handle_task`` (``unknown_command``)
                or it raised (``failed``; the error is also logged to the actor's logs).
        """
        if self._handle_task is None:
            raise CommandError(f"actor {self.name!r} does not handle tasks", code=Code.UNKNOWN_COMMAND)
        try:
            return await _guard_exit(self._handle_task(self.agent, payload))
        except Exception as exc:
            message = f"handle_task failed: {type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await self._bus.log(self.actor_id, self.name, "error", message)
            raise CommandError(message, code=Code.FAILED) from exc

    def __repr__(self) -> str:
        return f"<DynamicActor {self.name}>"


def dynamic_factory(
    spec: SpawnSpec, bus: ActorBus, *, state_dir: Path | None = None, state_path: Path | None = None
) -> Callable[[], DynamicActor]:
    """The supervisor factory of ``spec``: compiles a fresh actor on every (re)start."""

    def make() -> DynamicActor:
        return DynamicActor(spec, bus, state_dir=state_dir, state_path=state_path)

    return make


_HOOKS = ("setup", "process", "handle_task", "teardown", "health", "bid", "run")


def _compile(name: str, code: str) -> dict[str, _AsyncFn]:
    filename = f"<actor {name}>"
    try:
        compiled = compile(code, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise CompileError(f"actor {name!r} does not compile: {exc}") from exc
    # Let tracebacks from the actor's code show its source lines.
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"__name__": f"devfleet_actor_{name}", "__builtins__": builtins}
    try:
        exec(compiled, namespace)  # noqa: S102 - running spawned code is the feature
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CompileError(f"actor {name!r} failed at import: {type(exc).__name__}: {exc}") from exc
    fns: dict[str, _AsyncFn] = {}
    for hook in _HOOKS:
        fn = namespace.get(hook)
        if fn is None:
            continue
        if not inspect.iscoroutinefunction(fn):
            raise CompileError(f"actor {name!r}: {hook} must be an 'async def' function")
        fns[hook] = fn
    return fns


async def _guard_exit(awaitable: Coroutine[Any, Any, Any]) -> Any:
    """Await actor code, turning ``SystemExit`` into an ordinary error."""
    try:
        return await awaitable
    except SystemExit as exc:
        raise RuntimeError(f"actor code called exit({exc.code!r})") from None
