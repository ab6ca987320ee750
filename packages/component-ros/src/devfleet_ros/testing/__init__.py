"""The ROS bridge's test kit: a rosbridge v2 protocol server and its pytest fixture.

Needs the ``testing`` extra (``websockets``):
``pip install 'devfleet-component-ros[testing]'``.
"""

from __future__ import annotations

from .server import RosbridgeServer, ServiceHandler
from .thread import RosbridgeThread

__all__ = ["RosbridgeServer", "RosbridgeThread", "ServiceHandler"]
