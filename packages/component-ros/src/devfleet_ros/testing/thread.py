"""A :class:`RosbridgeServer` on its own event loop in a daemon thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .server import RosbridgeServer

__all__ = ["RosbridgeThread"]

_T = TypeVar("_T")


class RosbridgeThread:
    """Runs a :class:`RosbridgeServer` in a thread; :meth:`call` runs code on its loop.

    ``with RosbridgeThread() as rb: rb.call(rb.server.publish, "/odom", "nav_msgs/Odometry", msg)``
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = RosbridgeServer(host, port)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rosbridge-server", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, fn: Callable[..., _T], *args: Any, timeout: float = 10.0) -> _T:
        """Run ``fn(*args)`` (a function or a coroutine function) on the server's loop; wait for it."""
        out: _T = self.submit(fn, *args).result(timeout)
        return out

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Start ``fn(*args)`` on the server's loop; ``asyncio.wrap_future`` awaits it from another loop."""

        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self.submit(self.server.start).result(10)

    def stop(self) -> None:
        """Stop the server (it can be started again)."""
        self.submit(self.server.stop).result(10)

    def close(self) -> None:
        """Stop the server and the thread."""
        if self._thread.is_alive():
            self.submit(self.server.stop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        self.loop.close()

    def __enter__(self) -> RosbridgeThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
