"""Purging a gone node's retained topics, and the will a frozen node may still hold.

:class:`PurgeOps` is mixed into :class:`~devfleet_command.aio.AsyncFleet`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from devfleet_base.mqtt import MqttMessage

from .errors import ConnectError, InvalidName, NodeNotFound, PurgeError

if TYPE_CHECKING:
    from devfleet_base.mqtt import MqttClient

    from .model import FleetModel

__all__ = ["PURGED_LEAVES", "PurgeOps"]

PURGED_LEAVES = ("meta", "status", "state", "cfg", "cfg/desired", "heartbeat", "spawn")
"""The retained node topics a purge always clears (plus any other retained one found)."""


class PurgeOps:
    """Purge over the fleet's session (a mixin of ``AsyncFleet``)."""

    mqtt: MqttClient
    model: FleetModel
    _taps: set[Callable[[MqttMessage], None]]
    confirm_liveness: Callable[..., Awaitable[list[str]]]
    wait_until_synced: Callable[[float], Awaitable[None]]
    scan_retained: Callable[..., Awaitable[None]]

    async def retained_topics(self, node: str, *, timeout: float = 10.0) -> dict[str, bytes]:
        """Every retained topic under ``nodes/{node}/`` now, through a fresh subscription."""
        filt = f"nodes/{_topic_level(node)}/#"
        prefix = filt[:-1]
        found: dict[str, bytes] = {}

        def tap(msg: MqttMessage) -> None:
            if msg.retain and msg.topic.startswith(prefix):
                if msg.payload:
                    found[msg.topic] = msg.payload
                else:
                    found.pop(msg.topic, None)

        await self.scan_retained(filt, tap, timeout=timeout)
        return found

    async def purge(
        self, node: str, *, force: bool = False, timeout: float = 10.0, linger: float = 0.0
    ) -> list[str]:
        """Clear every retained topic of a node that is gone, so no ghost remains.

        Clears meta, status, state, cfg, cfg/desired, heartbeat, spawn and any other
        retained topic found under ``nodes/{node}/`` (component states), then
        verifies with a fresh subscription that nothing retained remains. ``node``
        may be a name outside the grammar (``Kitchen Pi``) that the model ignores,
        as long as it is one topic level without wildcards.

        A node whose retained status still says ``online`` (stale, or purged with
        ``force``) may have a connection the broker has not yet given up on (a frozen
        agent): the broker publishes its will up to 1.5 keepalives later and the node
        reappears as ``lost``. ``linger`` seconds after the purge, such a will (or
        any other retained leftover) is cleared too.

        Args:
            node: the node.
            force: purge even though the node says it is online (it will be born
                again if it is alive).
            timeout: seconds for each broker round trip.
            linger: seconds to stay and clear a will published after the purge.

        Returns:
            The retained topics that held something (and any cleared while lingering).

        Raises:
            InvalidName: ``node`` is not one topic level.
            NodeNotFound: nothing of that name is known or retained.
            PurgeError: the node is online (without ``force``), came back online while
                lingering, or something remained.
        """
        level = _topic_level(node)
        await self.confirm_liveness()
        view = self.model.get(node)
        if view is not None and view.online and not force:
            raise PurgeError(f"{node} is online; stop its agent first (or force the purge)")
        found = await self.retained_topics(node, timeout=timeout)
        if view is None and not found:
            raise NodeNotFound(
                f"no node named {node!r}: nothing is retained under nodes/{level}/ (nothing purged)"
            )
        topics = set(found) | {f"nodes/{level}/{leaf}" for leaf in PURGED_LEAVES}
        await self._clear(topics)
        cleared = set(found)
        if linger > 0:
            cleared |= await self._linger(level, linger)
        remaining = await self._remaining(node, timeout)
        if remaining:
            raise PurgeError(f"{node}: retained topics remain after purge: {', '.join(sorted(remaining))}")
        return sorted(cleared)

    async def _remaining(self, node: str, timeout: float) -> dict[str, bytes]:
        """The node's retained topics still held, looked at again for up to ``timeout`` s
        while any are: a clustered broker (NATS) applies a retained delete to each server's
        view asynchronously, so a fresh subscription can still see a cleared topic for a
        moment (seen: 1 purge in 7 on a loaded 3-node NATS cluster)."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            remaining = await self.retained_topics(node, timeout=timeout)
            if not remaining or time.monotonic() + delay > deadline:
                return remaining
            await asyncio.sleep(delay)  # back-off between looks at the broker's view
            delay = min(delay * 2, 1.0)

    async def _clear(self, topics: set[str]) -> None:
        for topic in sorted(topics):
            if not await self.mqtt.publish(topic, b"", qos=1, retain=True, wait=True):
                raise ConnectError(f"the broker did not take the purge of {topic}")

    async def _linger(self, level: str, seconds: float) -> set[str]:
        """Watch ``nodes/{level}/#`` for ``seconds`` and clear what a will (or a late
        retained publication) puts back; raise PurgeError if the node is born again."""
        filt = f"nodes/{level}/#"
        arrived: asyncio.Queue[MqttMessage] = asyncio.Queue()

        def tap(msg: MqttMessage) -> None:
            if msg.topic.startswith(filt[:-1]) and msg.payload:
                arrived.put_nowait(msg)

        cleared: set[str] = set()
        deadline = time.monotonic() + seconds
        self._taps.add(tap)
        try:
            async with self.mqtt.subscription([(filt, 1)]):
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        msg = await asyncio.wait_for(arrived.get(), left)
                    except TimeoutError:
                        break
                    if msg.topic.endswith("/status") and b'"online"' in msg.payload:
                        raise PurgeError(
                            f"nodes/{level}: the node was born again while purging (it is alive)"
                        )
                    if msg.topic.endswith(("/heartbeat", "/logs", "/receipts")) and not msg.retain:
                        continue  # the traffic of a node waking up, not a leftover
                    await self._clear({msg.topic})
                    cleared.add(msg.topic)
        finally:
            self._taps.discard(tap)
        return cleared


def _topic_level(name: str) -> str:
    """``name`` if it is one topic level a purge may address, else InvalidName."""
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode()) > 1024
        or name.startswith("$")
        or any(c in name for c in "/+#\x00")
    ):
        raise InvalidName(f"{name!r} is not one MQTT topic level (no /, +, #, NUL, no leading $)")
    return name
