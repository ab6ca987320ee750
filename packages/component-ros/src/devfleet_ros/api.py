"""The ROS bridge's in-process API, for the other components of the same node.

The ``ros`` component provides an object of type :class:`RosLink` under the
interface name ``"ros"`` (:data:`INTERFACE`) while it runs
(:mod:`devfleet_base.interfaces`). A behaviour on the same node drives the
robot through it without a broker round trip on its control loop::

    from devfleet_ros.api import INTERFACE, RosLink

    link: RosLink = await self.ctx.interfaces.wait_for(INTERFACE, timeout=10.0)
    await link.wait_connected(timeout=5.0)
    sub = link.subscribe("/odom", "nav_msgs/Odometry", self._on_odom, throttle_rate_ms=100)
    await link.publish("/cmd_vel", "geometry_msgs/Twist", {"linear": {"x": 0.2}})
    result = await link.call_service("/reset", {}, timeout=2.0)
    sub.close()

Importing this module imports neither roslibpy nor the component.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["INTERFACE", "MessageCallback", "RosLink", "Subscription"]

INTERFACE = "ros"
"""The name the ``ros`` component provides its :class:`RosLink` under."""

MessageCallback = Callable[[dict[str, Any]], None]
"""Called with each message (the JSON object rosbridge delivered), on the agent's event loop."""


@runtime_checkable
class Subscription(Protocol):
    """A live subscription made with :meth:`RosLink.subscribe`."""

    def close(self) -> None:
        """Unsubscribe; idempotent. No callback runs after it returns."""
        ...


@runtime_checkable
class RosLink(Protocol):
    """The robot's rosbridge connection, shared by the components of one node.

    Callbacks run on the agent's event loop (never on roslibpy's thread), so
    they may touch the component's state without locks; they must not block.
    """

    @property
    def connected(self) -> bool:
        """Whether the rosbridge connection is up now."""
        ...

    async def wait_connected(self, timeout: float) -> None:
        """Return once connected.

        Raises:
            ComponentError: not connected within ``timeout`` seconds.
        """
        ...

    def subscribe(
        self,
        topic: str,
        type: str,
        callback: MessageCallback,
        *,
        throttle_rate_ms: int = 0,
        queue_length: int = 1,
    ) -> Subscription:
        """Receive every message on ``topic`` of ROS type ``type``.

        Args:
            topic: ROS topic name, e.g. ``/odom``.
            type: ROS message type, e.g. ``nav_msgs/Odometry``.
            callback: called with each message dict.
            throttle_rate_ms: at most one message per this many ms (rosbridge-side).
            queue_length: messages rosbridge buffers for us while throttled or busy.

        Returns:
            A :class:`Subscription`; it survives reconnects (it is restored
            automatically when the rosbridge server comes back).
        """
        ...

    async def publish(self, topic: str, type: str, msg: dict[str, Any]) -> None:
        """Publish one message on ``topic`` (advertised automatically).

        Raises:
            ContractError: ``msg`` does not fit ``type`` (for the types in
                :data:`devfleet_ros.msgtypes.KNOWN_TYPES`), naming the bad field.
            ComponentError: not connected (the message is not queued).
        """
        ...

    async def call_service(
        self,
        service: str,
        args: dict[str, Any] | None = None,
        *,
        type: str | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Call a ROS service and return its response values.

        Raises:
            CommandError: code ``not_found`` for a service nobody offers,
                ``timeout`` when no response came within ``timeout`` seconds,
                ``failed`` for a failed response (its text in the message),
                ``unavailable`` while not connected.
        """
        ...
