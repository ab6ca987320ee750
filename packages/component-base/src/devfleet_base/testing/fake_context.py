"""A fake :class:`~devfleet_base.ComponentContext` that records what a component does."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import contract
from ..interfaces import Interfaces

__all__ = ["FakeContext", "Published"]


@dataclass(frozen=True)
class Published:
    """One message a component published through its context."""

    subtopic: str
    payload: Any
    retain: bool
    qos: int


class FakeContext:
    """Stands in for the agent: records publishes, state and persisted values.

    Payloads go through a JSON round trip, as they would on the wire, so a
    component that publishes something unserialisable fails here too. Pass one
    :class:`~devfleet_base.interfaces.Interfaces` to several fakes to let their
    components reach each other as on one node.
    """

    def __init__(
        self, node: str = "test-node", name: str = "component", *, interfaces: Interfaces | None = None
    ) -> None:
        self._node = node
        self.interfaces = interfaces if interfaces is not None else Interfaces()
        self._name = name
        self._log = logging.getLogger(f"devfleet.component.{name}")
        self.published: list[Published] = []
        self.state: dict[str, Any] | None = None
        self.state_history: list[dict[str, Any]] = []
        self.store: dict[str, Any] = {}
        self._changed = asyncio.Event()
        self.subscriptions: dict[str, tuple[Callable[[str, bytes], None], int]] = {}
        """Input filters the component subscribed to (leaf under ``in/`` → callback, qos)."""

    @property
    def node(self) -> str:
        return self._node

    @property
    def name(self) -> str:
        return self._name

    @property
    def log(self) -> logging.Logger:
        return self._log

    async def publish(self, subtopic: str, payload: Any, *, retain: bool = False, qos: int = 0) -> None:
        self.published.append(Published(subtopic, json.loads(json.dumps(payload)), retain, qos))
        self._changed.set()

    async def subscribe(
        self, leaf: str, callback: Callable[[str, bytes], None], *, qos: int = 1
    ) -> Callable[[], Any]:
        contract.component_input_filter(self._node, self._name, leaf)  # the agent's check
        self.subscriptions[leaf] = (callback, qos)

        async def unsubscribe() -> None:
            if self.subscriptions.get(leaf, (None,))[0] is callback:
                del self.subscriptions[leaf]

        return unsubscribe

    def deliver(self, leaf: str, payload: bytes | str | Any) -> int:
        """Deliver a message on input ``leaf`` as the agent would; returns how many
        subscriptions matched. ``payload`` is bytes, text, or a value sent as JSON."""
        if isinstance(payload, str):
            raw = payload.encode()
        elif isinstance(payload, bytes):
            raw = payload
        else:
            raw = json.dumps(payload).encode()
        matched = 0
        for pattern, (callback, _qos) in list(self.subscriptions.items()):
            if contract.topic_matches(pattern, leaf):
                callback(leaf, raw)
                matched += 1
        return matched

    def report_state(self, state: dict[str, Any]) -> None:
        snapshot = json.loads(json.dumps(state))
        self.state = snapshot
        self.state_history.append(snapshot)
        self._changed.set()

    def persist(self, key: str, value: Any) -> None:
        self.store[key] = json.loads(json.dumps(value))

    def recall(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self.store.get(key, default))

    def messages(self, subtopic: str) -> list[Any]:
        """Payloads published on ``subtopic``, oldest first."""
        return [p.payload for p in self.published if p.subtopic == subtopic]

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` is true, re-checking after every publish or state."""

        async def _wait() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)
