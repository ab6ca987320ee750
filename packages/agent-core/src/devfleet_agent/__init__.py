"""devfleet-agent: the long-lived device process of a devfleet node."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
