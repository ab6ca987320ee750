"""Routes MQTT input to the components that subscribed to it through their context.

A component may subscribe only to its own input subtree,
``nodes/{node}/components/{name}/in/{leaf}`` (the context checks this with
:func:`~devfleet_base.contract.component_input_filter`). This module holds the
filters with their callbacks, holds one reference to a filter's subscription
per callback (the node's session counts them, subscribes at the first and
unsubscribes after the last, and re-sends them on every reconnect), and calls the
matching callbacks for each inbound message, each guarded so one failing
callback is logged, not fatal. A retained message is not delivered: input is
a stream of commands, and a retained one would come back, stale, on every
reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from devfleet_base import contract
from devfleet_base.component import InputCallback
from devfleet_base.contract import TopicMatch
from devfleet_base.mqtt import MqttMessage

from ..services import NodeServices

__all__ = ["ComponentInputs"]

log = logging.getLogger("devfleet.components")


class ComponentInputs:
    """Every component input subscription of one node."""

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self._callbacks: dict[str, list[InputCallback]] = {}
        self._warned: set[str] = set()
        services.route("component", self._on_message)

    async def subscribe(
        self, topic_filter: str, callback: InputCallback, qos: int
    ) -> Callable[[], Awaitable[None]]:
        """Call ``callback(leaf, payload)`` for messages matching ``topic_filter``
        (already checked by the context); returns the async unsubscribe."""
        self._callbacks.setdefault(topic_filter, []).append(callback)
        await self.services.subscribe([(topic_filter, qos)])

        async def unsubscribe() -> None:
            current = self._callbacks.get(topic_filter)
            if current is None or callback not in current:
                return
            current.remove(callback)
            if not current:
                del self._callbacks[topic_filter]
            await self.services.unsubscribe([topic_filter])

        return unsubscribe

    async def _on_message(self, msg: MqttMessage, match: TopicMatch) -> None:
        leaf = match.leaf or ""
        if match.node != self.services.node or not leaf.startswith(contract.INPUT_LEVEL + "/"):
            return
        if msg.retain:
            # Input is a stream of commands (a robot's cmd_vel): one the broker kept would be
            # replayed on every reconnect, stale. Not delivered; said once per topic.
            if msg.topic not in self._warned:
                self._warned.add(msg.topic)
                log.warning("%s arrived retained; component input is not retained: not delivered", msg.topic)
            return
        inner = leaf[len(contract.INPUT_LEVEL) + 1 :]
        for topic_filter, callbacks in list(self._callbacks.items()):
            if not contract.topic_matches(topic_filter, msg.topic):
                continue
            for callback in list(callbacks):
                try:
                    callback(inner, msg.payload)
                except Exception:
                    log.exception("component input callback for %s failed", msg.topic)
