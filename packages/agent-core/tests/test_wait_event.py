"""Cancelling a loop that waits on an event ends it, even when the event is set in the same turn.

On Python 3.11 ``asyncio.wait_for`` returns instead of raising when the awaited
event is set in the loop turn the waiting task is cancelled in (CPython gh-86296),
so a ``while True`` loop around it never ends and the agent's shutdown waits on it.
"""

from __future__ import annotations

import asyncio
import logging

from devfleet_agent.clock import wait_event
from devfleet_agent.logship import LogShipper


async def _ends(task: asyncio.Task[None]) -> bool:
    done, _ = await asyncio.wait([task], timeout=5.0)
    if not done:  # leave nothing running behind a failed test
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return bool(done) and task.cancelled()


async def test_a_loop_on_wait_event_ends_when_cancelled_as_the_event_is_set() -> None:
    event = asyncio.Event()
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            await wait_event(event, 30.0)
            event.clear()
            turns += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    assert await _ends(task)
    assert turns == 0


async def test_wait_event_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert not await wait_event(event, 0.01)
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5.0)


async def test_the_log_shipper_stops_when_cancelled_as_a_full_batch_wakes_it() -> None:
    async def publish(batch: object) -> bool:
        return True

    shipper = LogShipper(publish, "n1")
    shipper.configure(
        {"enabled": True, "level": "INFO", "batch_size": 1, "flush_interval": 3600, "buffer": 10}
    )
    task = asyncio.create_task(shipper.run())
    await asyncio.sleep(0)  # the loop is waiting
    shipper.handle(logging.LogRecord("devfleet.x", logging.INFO, __file__, 1, "m", None, None))
    await asyncio.sleep(0)  # the wake-up (call_soon_threadsafe) has set the event
    task.cancel()
    assert await _ends(task)
