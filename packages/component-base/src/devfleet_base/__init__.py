"""devfleet component base: the wire contract, the Component contract, the test kit.

Importing the package is cheap: its names load from their modules on first use
(``from devfleet_base.errors import ...`` no longer pulls in pluggy and the
Component machinery, which keeps ``devfleet --help`` and the agent's start fast).
"""

from __future__ import annotations

from .lazy import lazy_attributes

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms at start-up
if TYPE_CHECKING:
    from .component import CommandSpec, Component, ComponentContext, Health, command
    from .errors import (
        Code,
        CommandError,
        ComponentError,
        ConfigError,
        ContractError,
        DevfleetError,
        SignatureError,
    )
    from .hookspecs import ENTRY_POINT_GROUP, hookimpl
    from .schema import Field, Schema

__version__ = "0.1.0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "Code",
    "CommandError",
    "CommandSpec",
    "Component",
    "ComponentContext",
    "ComponentError",
    "ConfigError",
    "ContractError",
    "DevfleetError",
    "Field",
    "Health",
    "Schema",
    "SignatureError",
    "__version__",
    "command",
    "hookimpl",
]

_LAZY = {
    "CommandSpec": "component",
    "Component": "component",
    "ComponentContext": "component",
    "Health": "component",
    "command": "component",
    "Code": "errors",
    "CommandError": "errors",
    "ComponentError": "errors",
    "ConfigError": "errors",
    "ContractError": "errors",
    "DevfleetError": "errors",
    "SignatureError": "errors",
    "ENTRY_POINT_GROUP": "hookspecs",
    "hookimpl": "hookspecs",
    "Field": "schema",
    "Schema": "schema",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
