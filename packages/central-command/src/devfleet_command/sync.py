"""The synchronous console client for scripts and notebooks.

One implementation, two faces: :class:`Fleet` runs an :class:`AsyncFleet` on an
event loop in one background thread and calls it from the caller's thread::

    with Fleet.connect("mqtt://127.0.0.1:1883") as fleet:
        print([n.name for n in fleet.nodes()])
        print(fleet.send("n1", "ping").wait().state)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from .aio import INSTALL_TIMEOUT, AsyncFleet, Broadcast, CommandHandle, LogRecord
from .errors import ConsoleTimeout
from .model import Drift, Event, FleetModel, NodeView

__all__ = ["Fleet", "SyncCommandHandle"]

T = TypeVar("T")


class SyncCommandHandle:
    """A :class:`CommandHandle` seen from a blocking caller."""

    def __init__(self, fleet: Fleet, handle: CommandHandle) -> None:
        self._fleet = fleet
        self.handle = handle

    @property
    def id(self) -> str:
        """The command id."""
        return self.handle.id

    @property
    def state(self) -> str:
        """``pending``, ``accepted``, ``ok``, ``error``, ``expired`` or ``timed_out``."""
        return self.handle.state

    def wait(self) -> CommandHandle:
        """Block until a final state; return the underlying handle (never raises for
        a failed command)."""
        return self._fleet._call(self.handle.wait())

    def result(self) -> Any:
        """Block and return the node's result; raise ``CommandFailed`` / ``CommandTimeout``."""
        return self._fleet._call(self.handle.result())


class Fleet:
    """The blocking face of :class:`AsyncFleet` (same arguments)."""

    def __init__(self, url: str | Sequence[str] = "mqtt://127.0.0.1:1883", **kwargs: Any) -> None:
        self._url = url
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devfleet-console", daemon=True)
        self._async: AsyncFleet | None = None

    @classmethod
    def connect(cls, url: str | Sequence[str] = "mqtt://127.0.0.1:1883", **kwargs: Any) -> Fleet:
        """A client to use as ``with Fleet.connect(url) as fleet``."""
        return cls(url, **kwargs)

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ---------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ConsoleTimeout(f"no result within {timeout:g} s") from None

    def _on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self._call(run())

    @property
    def aio(self) -> AsyncFleet:
        """The asyncio client underneath (use it only from its loop)."""
        if self._async is None:
            raise RuntimeError("the fleet is not connected; use `with Fleet.connect(...)`")
        return self._async

    def start(self) -> None:
        """Start the loop thread, connect and wait for the retained burst."""
        self._thread.start()

        async def make() -> AsyncFleet:
            fleet = AsyncFleet(self._url, **self._kwargs)
            await fleet.start()
            return fleet

        try:
            self._async = self._call(make())
        except BaseException:
            self._stop_loop()
            raise

    def close(self) -> None:
        """Disconnect and stop the loop thread."""
        if self._async is not None:
            try:
                self._call(self._async.close(), 15.0)
            finally:
                self._async = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
        if not self._loop.is_running():
            self._loop.close()

    # ---- the API ------------------------------------------------------------------------------

    @property
    def model(self) -> FleetModel:
        """The live model (mutated on the loop thread: prefer :meth:`nodes`)."""
        return self.aio.model

    def nodes(self) -> list[NodeView]:
        """Every known node, by name."""
        return self._on_loop(self.aio.nodes)

    def node(self, name: str) -> NodeView:
        """One node; raises ``NodeNotFound``."""
        return self._on_loop(lambda: self.aio.node(name))

    def drift(self) -> list[Drift]:
        """Nodes whose desired config differs from what they report."""
        return self._on_loop(self.aio.drift)

    def wait_for(self, predicate: Callable[[FleetModel], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(model)`` holds (checked on the loop thread)."""
        self._call(self.aio.wait_for(predicate, timeout))

    def wait_until_synced(self, timeout: float = 10.0) -> None:
        """Block until the broker echoed a marker (everything before it arrived)."""
        self._call(self.aio.wait_until_synced(timeout))

    def send(
        self,
        node: str,
        verb: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float = 10.0,
        ttl: float | None = None,
    ) -> SyncCommandHandle:
        """Send a command; ``.wait()`` or ``.result()`` on what it returns."""
        handle = self._call(self.aio.send(node, verb, args, timeout=timeout, ttl=ttl))
        return SyncCommandHandle(self, handle)

    def call(self, node: str, verb: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0) -> Any:
        """Send and return the result."""
        return self._call(self.aio.call(node, verb, args, timeout=timeout))

    def broadcast(
        self,
        verb: str,
        args: dict[str, Any] | None = None,
        *,
        group: str | None = None,
        timeout: float = 10.0,
        on_progress: Callable[[Broadcast], None] | None = None,
    ) -> Broadcast:
        """Send to every node (or a group) and block until done; ``on_progress`` runs
        on the loop thread."""

        async def run() -> Broadcast:
            bc = await self.aio.broadcast(verb, args, group=group, timeout=timeout, on_progress=on_progress)
            return await bc.wait()

        return self._call(run())

    def config_get(self, node: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """The node's config as it answers ``config_get``."""
        return self._call(self.aio.config_get(node, timeout=timeout))

    def config_set(
        self,
        node: str,
        values: dict[str, Any],
        *,
        expect_version: int | None = None,
        desired: bool = False,
        timeout: float = 10.0,
    ) -> int | None:
        """Set dotted config keys; return the new config version."""
        return self._call(
            self.aio.config_set(node, values, expect_version=expect_version, desired=desired, timeout=timeout)
        )

    def components(self, node: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """What ``node`` has installed, available and configured."""
        return self._call(self.aio.components(node, timeout=timeout))

    def install(
        self, node: str, spec: str, *, upgrade: bool = False, timeout: float = INSTALL_TIMEOUT
    ) -> dict[str, Any]:
        """pip-install (or upgrade) a component distribution on ``node`` (rolled back on failure)."""
        return self._call(self.aio.install(node, spec, upgrade=upgrade, timeout=timeout))

    def uninstall(self, node: str, spec: str, *, timeout: float = INSTALL_TIMEOUT) -> dict[str, Any]:
        """pip-uninstall a component distribution from ``node``."""
        return self._call(self.aio.uninstall(node, spec, timeout=timeout))

    def component_command(
        self,
        node: str,
        component: str,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float = 10.0,
    ) -> Any:
        """Run one of a component's declared commands."""
        return self._call(self.aio.component_command(node, component, command, args, timeout=timeout))

    def spawn(
        self,
        node: str,
        spec: dict[str, Any],
        *,
        replace: bool | None = None,
        retain: bool = True,
        timeout: float = 30.0,
    ) -> Any:
        """Spawn a dynamic actor on ``node`` (see :meth:`AsyncFleet.spawn`)."""
        return self._call(self.aio.spawn(node, spec, replace=replace, retain=retain, timeout=timeout))

    def stop_actor(
        self, node: str, name: str, *, delete: bool = False, keep_topics: bool = False, timeout: float = 30.0
    ) -> Any:
        """Stop the actor ``name`` on ``node`` (``delete``: and erase its state; see AsyncFleet)."""
        return self._call(
            self.aio.stop_actor(node, name, delete=delete, keep_topics=keep_topics, timeout=timeout)
        )

    def stop_all(self, node: str, *, timeout: float = 30.0) -> Any:
        """Stop every actor on ``node`` and shut it down."""
        return self._call(self.aio.stop_all(node, timeout=timeout))

    def resumes(self, skill: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        """Known résumés joined with node liveness (see ``AsyncFleet.resumes``)."""
        return self._on_loop(lambda: self.aio.resumes(skill, region))

    def auction(
        self, skill: str, inputs: Any = None, *, deadline: float = 2.0, **kwargs: Any
    ) -> dict[str, Any]:
        """Auction one task; its final outcome (see ``AsyncFleet.auction``)."""
        return self._call(self.aio.auction(skill, inputs, deadline=deadline, **kwargs))

    def pool_run(self, pool: str, jobs: list[Any], **kwargs: Any) -> dict[str, Any]:
        """Run jobs on a worker pool (see ``AsyncFleet.pool_run``)."""
        return self._call(self.aio.pool_run(pool, jobs, **kwargs))

    def actors(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every actor in the fleet's retained state (optionally of one node)."""
        return self._on_loop(lambda: self.aio.actors(node))

    def migrate(
        self, name: str, to: str, *, source: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Move the actor ``name`` to node ``to`` with its persisted state."""
        return self._call(self.aio.migrate(name, to, source=source, timeout=timeout))

    def task(self, name: str, payload: Any, *, timeout: float = 30.0) -> Any:
        """Send a task to the actor ``name`` wherever it runs; return its answer."""
        return self._call(self.aio.task(name, payload, timeout=timeout))

    def purge(
        self, node: str, *, force: bool = False, timeout: float = 10.0, linger: float = 0.0
    ) -> list[str]:
        """Clear every retained topic of a gone node (see :meth:`AsyncFleet.purge`)."""
        return self._call(self.aio.purge(node, force=force, timeout=timeout, linger=linger))

    def confirm_liveness(self, timeout: float | None = None) -> list[str]:
        """Wait for a heartbeat from nodes known only from a retained ``online``; return
        those marked stale (see :meth:`AsyncFleet.confirm_liveness`)."""
        return self._call(self.aio.confirm_liveness(timeout))

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Model events from now on, until ``timeout`` seconds have passed (None: forever)."""
        return self._iterate(self.aio.events(), timeout)

    def logs(self, node: str | None = None, timeout: float | None = None) -> Iterator[LogRecord]:
        """Log records from now on, until ``timeout`` seconds have passed (None: forever)."""
        return self._iterate(self.aio.logs(node), timeout)

    def _iterate(self, agen: AsyncIterator[T], timeout: float | None) -> Iterator[T]:
        deadline = None if timeout is None else time.monotonic() + timeout

        async def next_item(remaining: float | None) -> tuple[bool, T | None]:
            try:
                return True, await asyncio.wait_for(agen.__anext__(), remaining)
            except (TimeoutError, StopAsyncIteration):
                return False, None

        async def close() -> None:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining == 0.0:
                    return
                got, item = self._call(next_item(remaining))
                if not got:
                    return
                yield item  # type: ignore[misc]
        finally:
            if self._async is not None:
                self._call(close())
