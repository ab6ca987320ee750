"""What the node's state says about one configured component (the host keeps one per name)."""

from __future__ import annotations

from dataclasses import dataclass
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
        return {
            "state": self.state,
            "enabled": self.enabled,
            "version": self.version,
            "dist": self.dist,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "health": self.health,
            "reported": self.reported,
            "since": self.since,
        }
