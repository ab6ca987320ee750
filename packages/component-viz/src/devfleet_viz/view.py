"""One running view: a :class:`~devfleet_viz.hub.FleetHub` and its :class:`~devfleet_viz.server.VizServer`.

Both entry points use it: the ``viz`` component inside an agent and the
standalone ``devfleet viz`` command.
"""

from __future__ import annotations

from typing import Any

from devfleet_command import AsyncFleet

from .hub import FleetHub, HubLimits
from .server import VizServer

__all__ = ["FleetView"]


class FleetView:
    """The hub over ``fleet`` plus the web server.

    Args:
        fleet: an unstarted console client (its connection options, signing key...).
        bind: listen address; anything but loopback makes the view read-only unless
            ``token`` is set.
        port: TCP port (0: a free one, see :attr:`url` after :meth:`start`).
        token: the shared secret commands need ('' for none).
        limits: the hub's memory bounds.
    """

    def __init__(
        self,
        fleet: AsyncFleet,
        *,
        bind: str = "127.0.0.1",
        port: int = 8766,
        token: str = "",
        limits: HubLimits | None = None,
    ) -> None:
        self.hub = FleetHub(fleet, limits)
        self.server = VizServer(self.hub, bind=bind, port=port, token=token)

    @property
    def url(self) -> str:
        """The page's address (with ``?token=`` when a token is set)."""
        return self.server.url

    @property
    def readonly(self) -> bool:
        """Whether commands are refused whatever the request."""
        return self.server.access.readonly

    async def start(self) -> None:
        """Connect to the broker, then listen.

        Raises:
            ConnectError: no broker.
            OSError: the address cannot be bound.
        """
        await self.hub.start()
        try:
            await self.server.start()
        except BaseException:
            await self.hub.close()
            raise

    async def close(self) -> None:
        """Stop listening, then disconnect."""
        await self.server.close()
        await self.hub.close()

    async def __aenter__(self) -> FleetView:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
