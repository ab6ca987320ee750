"""The agent's implementation of :class:`~devfleet_base.ComponentContext`, and the
adapter that lets the shared supervisor run a component."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from devfleet_base import contract
from devfleet_base.component import Component, Health, InputCallback
from devfleet_base.errors import ComponentError, ContractError
from devfleet_base.interfaces import Interfaces

from ..storage import atomic_write_json, read_json

__all__ = ["AgentComponentContext", "ComponentRunnable"]

log = logging.getLogger("devfleet.components")

Publisher = Callable[..., Awaitable[bool]]
Unsubscribe = Callable[[], Awaitable[None]]
InputSubscriber = Callable[[str, InputCallback, int], Awaitable[Unsubscribe]]


class AgentComponentContext:
    """What a running component is handed: its topics, logger, state and storage.

    Args:
        node: the node name.
        name: the component's name.
        publish_json: the agent's ``publish_json`` (topic, obj, qos=, retain=).
        on_state: called with the component's reported state (a JSON copy).
        data_dir: where ``{name}.json`` keeps the persisted values.
        interfaces: the node's in-process interfaces, one registry for every component.
        subscribe_input: subscribes a checked input filter (``ComponentInputs.subscribe``).
    """

    def __init__(
        self,
        node: str,
        name: str,
        *,
        publish_json: Publisher,
        on_state: Callable[[str, dict[str, Any]], None],
        data_dir: Path,
        interfaces: Interfaces,
        subscribe_input: InputSubscriber | None = None,
    ) -> None:
        self._node = node
        self._subscribe_input = subscribe_input
        self._inputs: list[Unsubscribe] = []
        self._interfaces = interfaces
        self._name = name
        self._publish_json = publish_json
        self._on_state = on_state
        self._path = data_dir / f"{name}.json"
        self._store: dict[str, Any] | None = None
        self._log = logging.getLogger(f"devfleet.component.{name}")

    @property
    def node(self) -> str:
        return self._node

    @property
    def name(self) -> str:
        return self._name

    @property
    def log(self) -> logging.Logger:
        return self._log

    @property
    def interfaces(self) -> Interfaces:
        return self._interfaces

    async def publish(self, subtopic: str, payload: Any, *, retain: bool = False, qos: int = 0) -> None:
        """Publish JSON on ``nodes/{node}/components/{name}/{subtopic}``."""
        topic = contract.component_topic(self._node, self._name, subtopic)
        await self._publish_json(topic, payload, qos=qos, retain=retain)

    async def subscribe(self, leaf: str, callback: InputCallback, *, qos: int = 1) -> Unsubscribe:
        """Receive ``nodes/{node}/components/{name}/in/{leaf}`` (see ComponentContext.subscribe)."""
        topic_filter = contract.component_input_filter(self._node, self._name, leaf)
        if qos not in (0, 1, 2):
            raise ContractError(f"subscribe {leaf}: qos must be 0, 1 or 2")
        if self._subscribe_input is None:
            raise ComponentError(f"component {self._name}: this agent offers no input subscriptions")
        inner = await self._subscribe_input(topic_filter, callback, qos)
        self._inputs.append(inner)

        async def unsubscribe() -> None:
            if inner in self._inputs:
                self._inputs.remove(inner)
                await inner()

        return unsubscribe

    async def drop_inputs(self) -> None:
        """End every input subscription of this component (it stopped or crashed)."""
        inputs, self._inputs = self._inputs, []
        for unsubscribe in inputs:
            try:
                await unsubscribe()
            except Exception:
                log.exception("component %s: unsubscribing an input failed", self._name)

    def report_state(self, state: dict[str, Any]) -> None:
        """Replace this component's reported state (retained, and in the node's state)."""
        snapshot = json.loads(json.dumps(state, allow_nan=False))
        if not isinstance(snapshot, dict):
            raise TypeError("report_state takes a dict")
        self._on_state(self._name, snapshot)

    def _load(self) -> dict[str, Any]:
        if self._store is None:
            try:
                data = read_json(self._path)
                self._store = data if isinstance(data, dict) else {}
            except FileNotFoundError:
                self._store = {}
            except ValueError as exc:
                log.error("component %s: persisted state unreadable (%s); starting empty", self._name, exc)
                self._store = {}
        return self._store

    def persist(self, key: str, value: Any) -> None:
        """Store a small JSON value in ``{data_dir}/components/{name}.json`` (atomically)."""
        store = self._load()
        store[key] = json.loads(json.dumps(value, allow_nan=False))
        self._path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._path, store)

    def recall(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self._load().get(key, default))


class ComponentRunnable:
    """Adapts a :class:`~devfleet_base.Component` to the supervisor's ``Runnable``.

    One instance per run: the supervisor's factory builds the component (its
    constructor validates the settings) and wraps it.
    """

    def __init__(
        self, component: Component, child_name: str, on_health: Callable[[Health], None] | None = None
    ) -> None:
        self.component = component
        self.name = child_name
        self.poll_interval = component.poll_interval
        self._on_health = on_health

    async def setup(self) -> None:
        await self._drop_inputs()  # a crashed run's subscriptions would call a dead instance
        await self.component.start()
        self.poll_interval = self.component.poll_interval  # a component may set it from its settings

    async def process(self) -> None:
        await self.component.process()

    async def teardown(self) -> None:
        try:
            await self.component.stop()
        finally:
            await self._drop_inputs()

    async def _drop_inputs(self) -> None:
        ctx = self.component.ctx
        if isinstance(ctx, AgentComponentContext):
            await ctx.drop_inputs()

    async def check_health(self) -> Health:
        """The component's :class:`Health`, recorded for the node's state."""
        result = await self.component.health()
        if self._on_health is not None:
            self._on_health(result)
        return result

    async def health(self) -> bool:
        return (await self.check_health()).ok
