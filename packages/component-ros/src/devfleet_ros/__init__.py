"""devfleet ROS bridge component: a robot's rosbridge v2 bus as a fleet component.

roslibpy is imported only when the component starts; importing this package
is cheap (the agent lists components without starting them).
"""

from __future__ import annotations

from .api import INTERFACE, RosLink, Subscription

__version__ = "0.1.0"

__all__ = ["INTERFACE", "RosLink", "Subscription", "__version__"]
