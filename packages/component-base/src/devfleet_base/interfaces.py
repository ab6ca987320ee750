"""Interfaces that one component provides to the others on the same node, in-process.

A component that offers a typed API to its neighbours (the ROS bridge offers
``subscribe``/``publish``/``call_service`` to the foraging behaviour) registers
an object under a well-known name; a consumer looks it up through its
:class:`~devfleet_base.ComponentContext`. Nothing crosses the broker, so a 10 Hz
control loop pays no round trip, and components still depend on component-base
only: the provider's package defines the interface's type (a ``Protocol``), the
consumer imports that type, and this registry carries the object between them.

The idea is OSGi's service registry (OSGi Core R8, chapter 5) cut down to what
an agent needs: one provider per name, withdrawn when the provider stops.

Example::

    # provider, in _setup()
    self._withdraw = self.ctx.interfaces.provide("ros", self.link)
    # consumer, in _setup()
    link = await self.ctx.interfaces.wait_for("ros", timeout=10.0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .errors import ComponentError

__all__ = ["Interfaces"]


class Interfaces:
    """One node's registry of in-process interfaces, shared by its components.

    Not thread-safe: use it from the agent's event loop.
    """

    def __init__(self) -> None:
        self._provided: dict[str, Any] = {}
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}

    def provide(self, name: str, obj: Any) -> Callable[[], None]:
        """Offer ``obj`` under ``name``; returns a function that withdraws it.

        Raises:
            ComponentError: another object already provides ``name``.
        """
        if name in self._provided and self._provided[name] is not obj:
            raise ComponentError(f"interface {name!r} is already provided")
        self._provided[name] = obj
        for waiter in self._waiters.pop(name, []):
            if not waiter.done():
                waiter.set_result(obj)

        def withdraw() -> None:
            if self._provided.get(name) is obj:
                del self._provided[name]

        return withdraw

    def get(self, name: str) -> Any | None:
        """The object providing ``name``, or ``None``."""
        return self._provided.get(name)

    def names(self) -> list[str]:
        """Every interface provided now, sorted."""
        return sorted(self._provided)

    async def wait_for(self, name: str, timeout: float) -> Any:
        """The object providing ``name``, waiting up to ``timeout`` seconds for it.

        Raises:
            ComponentError: nothing provided ``name`` in time.
        """
        obj = self._provided.get(name)
        if obj is not None:
            return obj
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise ComponentError(
                f"no component provides interface {name!r} after {timeout:g} s"
                " (is the providing component enabled on this node?)"
            ) from None
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[name]
