"""What a node offers its subsystems: the one seam between the agent and what plugs in.

Subsystems (components, dynamic actors, work trading) are written against
:class:`NodeServices`, never against :class:`~devfleet_agent.agent.Agent` itself,
so none of them can reach into the agent's parts or another subsystem's
attributes, and a test can hand them a small stand-in. The agent implements it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from devfleet_base.contract import TopicMatch
from devfleet_base.mqtt import MqttMessage

if TYPE_CHECKING:
    from devfleet_base.signing import Identity

    from .commands import Dispatcher
    from .settings import Settings
    from .supervisor import Supervisor, SupervisorEvent

__all__ = ["ConfigValidator", "NodeServices", "Provider", "RouteHandler"]

RouteHandler = Callable[[MqttMessage, TopicMatch], Awaitable[None]]
"""Handles one inbound message whose topic parsed to a given kind."""
Provider = Callable[[], Any]
"""Returns one value of a retained description (called at every publish)."""
ConfigValidator = Callable[[dict[str, Any]], None]
"""Checks a whole node config after the schema; raises ContractError to refuse it."""


class NodeServices(Protocol):
    """The node services a subsystem may use (the agent provides them).

    Messaging: :meth:`publish_json`, :meth:`publish_raw`, :meth:`subscription`
    (reference-counted, see :meth:`devfleet_base.mqtt.MqttClient.subscribe`),
    :meth:`route`. Commands: :attr:`dispatcher` (``register``; signature checks).
    Descriptions: :meth:`add_provider`, :meth:`state_changed`, :meth:`publish_meta`.
    Config: :attr:`config`, :meth:`add_config_validator`, :meth:`on_config`.
    Actors: :attr:`supervisor`, :meth:`on_supervisor_event`. Lifetime:
    :meth:`spawn`, :meth:`request_stop`.
    """

    @property
    def node(self) -> str:
        """The node's name."""
        ...

    @property
    def settings(self) -> Settings: ...

    @property
    def data_dir(self) -> Path:
        """Where the node keeps its files (each subsystem in a folder of its own)."""
        ...

    @property
    def identity(self) -> Identity | None:
        """The node's signing identity, None when it has none."""
        ...

    @property
    def supervisor(self) -> Supervisor: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    @property
    def bd_seq(self) -> int:
        """This start's birth/death sequence number (Sparkplug's bdSeq; ``session`` on the wire)."""
        ...

    @property
    def config(self) -> Mapping[str, Any]:
        """The node config in force (read-only)."""
        ...

    async def publish_json(
        self,
        topic: str,
        obj: Any,
        *,
        qos: int = 0,
        retain: bool = False,
        wait: bool = False,
        correlation: bytes | None = None,
    ) -> bool: ...

    async def publish_raw(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, wait: bool = False
    ) -> bool:
        """Publish bytes as they are (``b""`` retained clears a retained message)."""
        ...

    def subscription(
        self, filters: Sequence[tuple[str, int]], *, fresh: bool = False
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``[(filter, qos)]`` for an ``async with`` block."""
        ...

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        """Hold filters until :meth:`unsubscribe` (for holds that outlive one block)."""
        ...

    async def unsubscribe(self, filters: Sequence[str]) -> None: ...

    async def wait_connected(self, timeout: float | None = None) -> None: ...

    def route(self, kind: str, handler: RouteHandler) -> None: ...

    def add_provider(self, section: str, key: str, provider: Provider) -> None: ...

    def add_config_validator(self, validator: ConfigValidator) -> None: ...

    def on_config(self, hook: Callable[[dict[str, Any]], Awaitable[None]]) -> None: ...

    def on_supervisor_event(self, listener: Callable[[SupervisorEvent], object]) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def state_changed(self) -> None: ...

    async def publish_meta(self) -> None: ...

    def request_stop(self, reason: str, *, exit_code: int = 0, restart: bool = False) -> None: ...
