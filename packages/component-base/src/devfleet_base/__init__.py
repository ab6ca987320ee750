"""devfleet component base: the wire contract, the Component contract, the test kit."""

from __future__ import annotations

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
