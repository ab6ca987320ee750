"""The ROS bridge's pytest plugin (``pytest11`` entry point ``devfleet_ros``).

Fixtures:

- ``rosbridge_server`` (function): a started :class:`~devfleet_ros.testing.RosbridgeServer`
  on a free loopback port, stopped after the test.

``websockets`` is imported only when the fixture is used, so installing the
component without its ``testing`` extra does not break anyone's pytest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from .server import RosbridgeServer

__all__ = ["rosbridge_server"]


@pytest_asyncio.fixture
async def rosbridge_server() -> AsyncIterator[RosbridgeServer]:
    """A rosbridge v2 server on ``127.0.0.1`` and a free port (``.url``, ``.port``)."""
    try:
        from .server import RosbridgeServer
    except ImportError as exc:
        pytest.fail(
            f"the rosbridge test server needs websockets: pip install 'devfleet-component-ros[testing]' ({exc})",
            pytrace=False,
        )
    server = RosbridgeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
