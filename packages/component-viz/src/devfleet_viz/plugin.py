"""The plugin module named by the ``devfleet.components`` entry point."""

from __future__ import annotations

from collections.abc import Callable

from devfleet_base import Component, hookimpl

__all__ = ["devfleet_register_components"]


@hookimpl
def devfleet_register_components(register: Callable[[type[Component]], None]) -> None:
    """Register :class:`~devfleet_viz.component.Viz`."""
    from .component import Viz

    register(Viz)
