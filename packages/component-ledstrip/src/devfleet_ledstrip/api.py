"""The strip's in-process interface for the other components of its node.

The ``ledstrip`` component provides a :class:`StripControl` under the interface
name ``"ledstrip"`` while it runs (see ``devfleet_base.interfaces``), so a
neighbour (the foraging behaviour's state light) sets the colour without a
broker round trip. The change shows on the next frame and in the component's
retained state exactly as the ``set_effect`` command would.

Example::

    strip = await self.ctx.interfaces.wait_for("ledstrip", timeout=10.0)
    strip.fill("#00ff00")
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["INTERFACE", "StripControl"]

INTERFACE = "ledstrip"
"""The name the ``ledstrip`` component provides its :class:`StripControl` under."""


class StripControl(Protocol):
    """What a neighbour may do with the strip."""

    def fill(self, color: str | list[int]) -> dict[str, Any]:
        """Every LED one colour (the ``solid`` effect); ``"#rrggbb"`` or ``[r, g, b]``.

        Returns the strip's state (as the ``set_effect`` command answers).

        Raises:
            ContractError: not a colour.
        """
        ...

    def set_effect(self, effect: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Switch to ``effect`` with ``params`` (see the effects table in the docs).

        Raises:
            ContractError: an unknown effect or a bad parameter.
        """
        ...

    def state(self) -> dict[str, Any]:
        """The strip's current state: effect, params, brightness, backend, led_count, fps."""
        ...
