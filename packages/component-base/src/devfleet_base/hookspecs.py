"""The hooks a component distribution implements.

A component distribution declares an entry point in the ``devfleet.components``
group whose value is a module (the plugin). The module implements
:func:`devfleet_register_components` with :data:`devfleet_base.hookimpl`::

    from devfleet_base import hookimpl

    @hookimpl
    def devfleet_register_components(register):
        register(LedStrip)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .component import Component

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "hookimpl", "hookspec"]

PROJECT = "devfleet"
ENTRY_POINT_GROUP = "devfleet.components"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def devfleet_register_components(register: Callable[[type[Component]], None]) -> None:
    """Called once when the agent loads the plugin: call ``register`` with each
    :class:`~devfleet_base.Component` subclass the distribution provides."""
