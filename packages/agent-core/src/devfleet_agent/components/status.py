"""What the node's state says about one configured component (the host keeps one per name)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ComponentStatus"]


@dataclass
class ComponentStatus:
    """What the node's state says about one configured component."""

    name: str
    state: str = "starting"
    enabled: bool = True
    version: str | None = None
    dist: str | None = None
    restarts: int = 0
    last_error: str | None = None
    health: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    since: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        """Every field but ``name`` (the key it is filed under), in field order."""
        wire = asdict(self)
        del wire["name"]
        return wire
