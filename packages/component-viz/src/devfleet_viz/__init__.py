"""devfleet's live fleet web view: the ``viz`` component and ``devfleet viz``.

Importing this package is cheap; the web stack loads when a view starts.
"""

from __future__ import annotations

from devfleet_base.lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .component import Viz
    from .hub import FleetHub, HubLimits
    from .series import Series
    from .server import Access, VizServer
    from .view import FleetView

__version__ = "0.1.0"

__all__ = ["Access", "FleetHub", "FleetView", "HubLimits", "Series", "Viz", "VizServer", "__version__"]

_LAZY = {
    "Viz": "component",
    "FleetHub": "hub",
    "HubLimits": "hub",
    "Series": "series",
    "Access": "server",
    "VizServer": "server",
    "FleetView": "view",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
