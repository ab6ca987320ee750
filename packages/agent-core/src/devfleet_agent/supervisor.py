"""The ONE_FOR_ONE supervisor shared by components and dynamic actors.

Every actor on a node (a component instance or a dynamic actor from a spawn
command) runs as a *child* of one :class:`Supervisor`, each in its own asyncio
task. A child is a :class:`Runnable` made by a *factory* that is called again
on every (re)start, so each run gets a fresh instance.

The semantics are Wactorz's remote-node supervisor:

- The factory raising is a compile error: fatal, never retried.
- ``setup()`` raising is fatal, never retried (broken code won't fix itself).
- ``process()`` raising is logged (a ``crashed`` event) and the run continues;
  :attr:`RestartPolicy.escalate_after` (5) consecutive failures in one run
  escalate to a clean restart: teardown, back-off, new instance.
- Back-off before restart *n* is ``min(restart_delay * 2**(n-1), max_delay)``:
  3, 6, 12, 24, 48, 60, 60, ... seconds with the defaults.
- When a restart would exceed ``max_restarts`` the child is marked ``failed``,
  removed from the registry, and a ``fatal`` event is emitted.
- :attr:`RestartPolicy.credit_after` (10) consecutive successful cycles credit
  one restart token back (the restart count goes down by one, not below zero).
- A child with ``poll_interval is None`` is event-driven: its cycle is
  ``health()`` every :attr:`RestartPolicy.health_interval` seconds, and an
  unhealthy answer counts as a failed cycle.
- A deliberate stop is never restarted; the instance is torn down cleanly.

An exception in a child, or in the ``on_event`` callback, never escapes the
supervisor. Stopped and failed children leave the registry, so the name can be
spawned again; the :class:`ChildInfo` a caller holds keeps the final state.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from devfleet_base.errors import Code, ComponentError

from .clock import Clock, SystemClock

__all__ = [
    "ChildExistsError",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildState",
    "EventKind",
    "Factory",
    "RestartPolicy",
    "Runnable",
    "Supervisor",
    "SupervisorError",
    "SupervisorEvent",
]

log = logging.getLogger("devfleet.supervisor")

ChildState = Literal["starting", "running", "restarting", "failed", "stopped"]
EventKind = Literal["started", "crashed", "restarting", "fatal", "stopped", "credited"]


@runtime_checkable
class Runnable(Protocol):
    """One supervised unit of work: a component instance or a dynamic actor.

    Attributes:
        name: the child's name (for logs).
        poll_interval: seconds between ``process()`` calls, or ``None`` for an
            event-driven child whose cycle is the health check.
    """

    name: str
    poll_interval: float | None

    async def setup(self) -> None:
        """Acquire resources; raising is fatal."""
        ...

    async def process(self) -> None:
        """One cycle of work; raising is a failed cycle."""
        ...

    async def teardown(self) -> None:
        """Release resources; called once after every successful setup."""
        ...

    async def health(self) -> bool:
        """``True`` when healthy; the cycle of event-driven children."""
        ...


Factory = Callable[[], Runnable]


class SupervisorError(ComponentError):
    """Base of the supervisor's errors."""


class ChildExistsError(SupervisorError):
    """A child with this name is already supervised."""

    code = Code.CONFLICT


class ChildNotFoundError(SupervisorError):
    """No child with this name is supervised."""

    code = Code.NOT_FOUND


@dataclass(frozen=True)
class RestartPolicy:
    """How a child is restarted.

    Args:
        max_restarts: restarts allowed before the child is marked failed.
        restart_delay: the first back-off, doubled on every further restart.
        max_delay: the back-off cap.
        escalate_after: consecutive failed cycles in one run that force a restart.
        credit_after: consecutive good cycles that credit one restart back.
        health_interval: seconds between health checks of event-driven children.
        stop_timeout: real seconds :meth:`Supervisor.stop_child` waits for teardown.
    """

    max_restarts: int = 5
    restart_delay: float = 3.0
    max_delay: float = 60.0
    escalate_after: int = 5
    credit_after: int = 10
    health_interval: float = 10.0
    stop_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if self.restart_delay < 0 or self.max_delay < 0:
            raise ValueError("restart_delay and max_delay must be >= 0")
        if self.escalate_after < 1 or self.credit_after < 1:
            raise ValueError("escalate_after and credit_after must be >= 1")
        if self.health_interval <= 0 or self.stop_timeout <= 0:
            raise ValueError("health_interval and stop_timeout must be > 0")

    def backoff(self, restart: int) -> float:
        """The delay before restart number ``restart`` (1-based)."""
        exponent = max(0, restart - 1)
        if exponent > 64:  # avoid huge floats; the cap has long been reached
            return self.max_delay
        return float(min(self.restart_delay * (2**exponent), self.max_delay))


@dataclass(frozen=True)
class SupervisorEvent:
    """Something that happened to a child.

    Attributes:
        kind: ``started``, ``crashed``, ``restarting``, ``fatal``, ``stopped`` or ``credited``.
        child: the child's name.
        detail: a human sentence (the error for ``crashed`` and ``fatal``).
        reason: for ``fatal``: ``compile``, ``setup``, ``budget`` or ``internal``.
        restarts: the child's restart count after the event.
        delay: for ``restarting``: the back-off in seconds.
        at: the clock's wall time of the event.
    """

    kind: EventKind
    child: str
    detail: str = ""
    reason: str = ""
    restarts: int = 0
    delay: float | None = None
    at: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able dict for logs and heartbeats."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "child": self.child,
            "detail": self.detail,
            "restarts": self.restarts,
            "at": self.at,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.delay is not None:
            out["delay"] = self.delay
        return out


@dataclass(eq=False)
class ChildInfo:
    """The live record of one child (mutated by the supervisor).

    Attributes:
        name: the child's name.
        policy: its restart policy.
        state: ``starting``, ``running``, ``restarting``, ``failed`` or ``stopped``.
        restarts: the current restart count (credits lower it).
        consecutive_failures: failed cycles in a row in the current run.
        consecutive_successes: good cycles in a row since the last credit or failure.
        last_error: the most recent error, as ``Type: message``.
        started_at: wall time the current (or last) run finished setup.
        runs: how many instances completed setup.
        instance: the current instance while set up, else ``None``.
        finished: set once the child is ``stopped`` or ``failed``.
    """

    name: str
    policy: RestartPolicy
    state: ChildState = "starting"
    restarts: int = 0
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_error: str | None = None
    started_at: float | None = None
    runs: int = 0
    instance: Runnable | None = field(default=None, repr=False)
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait_finished(self) -> ChildInfo:
        """Wait until the child is ``stopped`` or ``failed``; return this record."""
        await self.finished.wait()
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for listings."""
        return {
            "name": self.name,
            "state": self.state,
            "restarts": self.restarts,
            "max_restarts": self.policy.max_restarts,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "started_at": self.started_at,
            "runs": self.runs,
        }


@dataclass(eq=False)
class _Child:
    info: ChildInfo
    factory: Factory
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class _Fatal(Exception):
    """Internal: the run ended in a way that must not be restarted."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cancel_is_ours() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Supervisor:
    """A ONE_FOR_ONE supervisor of :class:`Runnable` children.

    Args:
        clock: the time source (a :class:`~devfleet_agent.clock.FakeClock` in tests).
        on_event: called with every :class:`SupervisorEvent`; may return an
            awaitable, which is awaited. Its exceptions are logged, never raised.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        on_event: Callable[[SupervisorEvent], object] | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._on_event = on_event
        self._children: dict[str, _Child] = {}

    # ---- public API ------------------------------------------------------------------

    @property
    def children(self) -> dict[str, ChildInfo]:
        """The supervised children by name (a snapshot; the values are live)."""
        return {name: child.info for name, child in self._children.items()}

    def get(self, name: str) -> ChildInfo | None:
        """The child called ``name``, or ``None``."""
        child = self._children.get(name)
        return child.info if child else None

    async def start_child(
        self,
        name: str,
        factory: Factory,
        policy: RestartPolicy | None = None,
        *,
        wait: bool = True,
    ) -> ChildInfo:
        """Supervise a new child.

        Args:
            name: unique among the running children.
            factory: makes a fresh instance; called on every (re)start.
            policy: the restart policy (defaults: 5 restarts, 3 s delay).
            wait: return only once the first run has settled: setup finished
                (state ``running``) or the child failed (state ``failed``, with
                ``last_error``). A hanging setup makes this hang; bound it with
                :func:`asyncio.wait_for` if needed (the child is not cancelled).

        Returns:
            The child's live :class:`ChildInfo`.

        Raises:
            ChildExistsError: a child of that name is already supervised.
        """
        if name in self._children:
            raise ChildExistsError(f"actor {name!r} is already running")
        child = _Child(info=ChildInfo(name=name, policy=policy or RestartPolicy()), factory=factory)
        self._children[name] = child
        task = asyncio.create_task(self._guarded_run(child), name=f"devfleet-actor:{name}")
        child.task = task
        task.add_done_callback(_retrieve)
        if wait:
            await child.settled.wait()
        return child.info

    async def stop_child(self, name: str) -> ChildInfo:
        """Stop ``name`` deliberately: no restart, teardown if it was set up.

        Waits up to the policy's ``stop_timeout`` (real seconds) for teardown.
        A child that stops itself (from inside its own task) is cancelled
        without waiting.

        Raises:
            ChildNotFoundError: no child of that name is supervised.
        """
        child = self._children.get(name)
        if child is None:
            raise ChildNotFoundError(f"no actor named {name!r}")
        child.stop_requested = True
        task = child.task
        if task is None or task.done():
            self._finish(child, "stopped")
            return child.info
        task.cancel()
        if task is asyncio.current_task():
            return child.info
        done, _ = await asyncio.wait({task}, timeout=child.info.policy.stop_timeout)
        if not done:
            log.warning(
                "actor %s did not stop within %.1fs; abandoning it",
                name,
                child.info.policy.stop_timeout,
            )
            if child.info.state not in ("stopped", "failed"):
                self._finish(child, "stopped")
                await self._emit(SupervisorEvent("stopped", name, "stop timed out"), child)
        return child.info

    async def stop_all(self) -> None:
        """Stop every child concurrently."""
        names = list(self._children)
        results = await asyncio.gather(*(self.stop_child(name) for name in names), return_exceptions=True)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, ChildNotFoundError):
                log.error("stopping actor %s failed: %s", name, _describe(result))

    # ---- the run loop ----------------------------------------------------------------

    async def _guarded_run(self, child: _Child) -> None:
        info = child.info
        try:
            await self._run(child)
        except asyncio.CancelledError:
            if info.state not in ("stopped", "failed"):
                self._finish(child, "stopped")
                await self._emit(
                    SupervisorEvent("stopped", info.name, "stopped", restarts=info.restarts),
                    child,
                )
            if not child.stop_requested:
                raise
        except Exception as exc:  # a supervisor bug must not take the agent down
            log.exception("supervisor error in actor %s", info.name)
            info.last_error = _describe(exc)
            self._finish(child, "failed")
            await self._emit(
                SupervisorEvent(
                    "fatal", info.name, info.last_error, reason="internal", restarts=info.restarts
                ),
                child,
            )

    async def _run(self, child: _Child) -> None:
        info = child.info
        policy = info.policy
        while True:
            try:
                await self._run_once(child)
            except _Fatal:
                return
            info.restarts += 1
            if info.restarts > policy.max_restarts:
                info.restarts = policy.max_restarts
                self._finish(child, "failed")
                await self._emit(
                    SupervisorEvent(
                        "fatal",
                        info.name,
                        f"restart budget exhausted ({policy.max_restarts}); last error: {info.last_error}",
                        reason="budget",
                        restarts=info.restarts,
                    ),
                    child,
                )
                return
            delay = policy.backoff(info.restarts)
            info.state = "restarting"
            await self._emit(
                SupervisorEvent(
                    "restarting",
                    info.name,
                    f"restart {info.restarts}/{policy.max_restarts} in {delay:g}s",
                    restarts=info.restarts,
                    delay=delay,
                ),
                child,
            )
            await self._clock.sleep(delay)
            info.state = "starting"

    async def _run_once(self, child: _Child) -> None:
        """One run: make, set up, cycle until escalation, tear down.

        Returns normally when the run must be restarted; raises :class:`_Fatal`
        when it must not.
        """
        info = child.info
        try:
            instance = child.factory()
        except Exception as exc:
            await self._fatal(child, "compile", f"compile error: {_describe(exc)}")
            raise _Fatal from exc
        try:
            await instance.setup()
        except asyncio.CancelledError:
            if _cancel_is_ours():
                raise
            await self._fatal(child, "setup", "setup failed: CancelledError")
            raise _Fatal from None
        except (Exception, SystemExit) as exc:
            await self._fatal(child, "setup", f"setup failed: {_describe(exc)}")
            raise _Fatal from exc
        info.instance = instance
        info.state = "running"
        info.started_at = self._clock.time()
        info.runs += 1
        info.consecutive_failures = 0
        info.consecutive_successes = 0
        try:
            await self._emit(
                SupervisorEvent("started", info.name, f"run {info.runs}", restarts=info.restarts),
                child,
            )
            child.settled.set()
            await self._cycles(child, instance)
        finally:
            info.instance = None
            await self._teardown(instance, info.name)

    async def _cycles(self, child: _Child, instance: Runnable) -> None:
        info = child.info
        policy = info.policy
        poll = instance.poll_interval
        while True:
            if poll is None:
                await self._clock.sleep(policy.health_interval)
                error = await self._health_cycle(instance)
            else:
                error = await self._process_cycle(instance)
            if error is None:
                info.consecutive_failures = 0
                info.consecutive_successes += 1
                if info.consecutive_successes >= policy.credit_after:
                    info.consecutive_successes = 0
                    if info.restarts > 0:
                        info.restarts -= 1
                        await self._emit(
                            SupervisorEvent(
                                "credited",
                                info.name,
                                f"{policy.credit_after} healthy cycles; one restart credited",
                                restarts=info.restarts,
                            ),
                            child,
                        )
            else:
                info.consecutive_failures += 1
                info.consecutive_successes = 0
                info.last_error = error
                log.warning(
                    "actor %s cycle failed (%d in a row): %s",
                    info.name,
                    info.consecutive_failures,
                    error,
                )
                await self._emit(
                    SupervisorEvent(
                        "crashed",
                        info.name,
                        f"{error} ({info.consecutive_failures} in a row)",
                        restarts=info.restarts,
                    ),
                    child,
                )
                if info.consecutive_failures >= policy.escalate_after:
                    return
            if poll is not None:
                await self._clock.sleep(poll)

    async def _process_cycle(self, instance: Runnable) -> str | None:
        try:
            await instance.process()
        except asyncio.CancelledError:
            if _cancel_is_ours():
                raise
            return "process() raised CancelledError"
        except (Exception, SystemExit) as exc:
            return _describe(exc)
        return None

    async def _health_cycle(self, instance: Runnable) -> str | None:
        try:
            result: object = await instance.health()
        except asyncio.CancelledError:
            if _cancel_is_ours():
                raise
            return "health() raised CancelledError"
        except (Exception, SystemExit) as exc:
            return f"health check raised {_describe(exc)}"
        # A component's Health object carries ``ok``; a Runnable returns a bool.
        ok = getattr(result, "ok", result)
        if ok is True:
            return None
        detail = getattr(result, "detail", "")
        return f"unhealthy: {detail}" if detail else "unhealthy"

    async def _teardown(self, instance: Runnable, name: str) -> None:
        try:
            await instance.teardown()
        except asyncio.CancelledError:
            if _cancel_is_ours():
                raise
            log.error("actor %s teardown raised CancelledError", name)
        except (Exception, SystemExit):
            log.exception("actor %s teardown failed", name)

    # ---- bookkeeping -----------------------------------------------------------------

    async def _fatal(self, child: _Child, reason: str, detail: str) -> None:
        info = child.info
        info.last_error = detail
        log.error("actor %s: %s (fatal, not restarted)", info.name, detail)
        self._finish(child, "failed")
        await self._emit(
            SupervisorEvent("fatal", info.name, detail, reason=reason, restarts=info.restarts),
            child,
        )

    def _finish(self, child: _Child, state: ChildState) -> None:
        child.info.state = state
        child.info.instance = None
        if self._children.get(child.info.name) is child:
            del self._children[child.info.name]
        child.settled.set()
        child.info.finished.set()

    async def _emit(self, event: SupervisorEvent, child: _Child) -> None:
        if event.at == 0.0:
            event = SupervisorEvent(
                event.kind,
                event.child,
                event.detail,
                event.reason,
                event.restarts,
                event.delay,
                self._clock.time(),
            )
        log.debug("actor event %s", event)
        if self._on_event is None:
            return
        try:
            result = self._on_event(event)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            if _cancel_is_ours():
                raise
            log.error("on_event callback for %s raised CancelledError", child.info.name)
        except Exception:
            log.exception("on_event callback failed for %s event of %s", event.kind, event.child)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Done callback: consume a task's exception so asyncio never logs it as lost."""
    if not task.cancelled():
        exc = task.exception()
        if exc is not None:  # pragma: no cover - _guarded_run catches everything
            log.error("actor task %s ended with %s", task.get_name(), _describe(exc))
