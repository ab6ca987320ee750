"""CommandHandle.on_state: every state a command reaches is reported, once, in order,
however briefly it lasts (the handle holds no I/O: receipts are fed as the transport does)."""

from __future__ import annotations

import asyncio
from typing import Any

from devfleet_base.contract import Receipt
from devfleet_command.handles import CommandHandle


def _feed(handle: CommandHandle, status: str, **kw: Any) -> None:
    receipt = Receipt(handle.id, handle.node, handle.verb, status, **kw)
    handle._on_receipt(receipt, receipt.to_wire())


async def test_accepted_then_ok_are_both_reported_even_back_to_back() -> None:
    handle = CommandHandle("c1", "n1", "ping", asyncio.get_running_loop())
    seen: list[tuple[str, str | None]] = []
    handle.on_state(lambda h: seen.append((h.state, h.code)))
    _feed(handle, "accepted")
    _feed(handle, "accepted")  # a duplicate receipt is not a new state
    _feed(handle, "ok", result={"pong": True})  # no await in between: a poll would miss "accepted"
    _feed(handle, "error", code="failed")  # after the final state: ignored
    assert seen == [("accepted", None), ("ok", None)]
    assert (await handle.wait()).value == {"pong": True}


async def test_error_expired_and_timeout_are_reported_with_their_code() -> None:
    loop = asyncio.get_running_loop()
    states: list[tuple[str, str | None]] = []
    for cmd_id, final in (("e", "error"), ("x", "expired"), ("t", "timed_out")):
        handle = CommandHandle(cmd_id, "n1", "restart", loop)
        handle.on_state(lambda h: states.append((h.state, h.code)))
        if final == "error":
            _feed(handle, "error", code="unknown_command")
        elif final == "expired":
            _feed(handle, "error", code="expired")
        else:
            handle._finish("timed_out")
    assert states == [("error", "unknown_command"), ("expired", "expired"), ("timed_out", "timeout")]


async def test_a_failing_callback_is_logged_and_the_others_still_run(caplog: Any) -> None:
    handle = CommandHandle("c2", "n1", "ping", asyncio.get_running_loop())
    seen: list[str] = []

    def broken(h: CommandHandle) -> None:
        raise RuntimeError("boom")

    handle.on_state(broken)
    handle.on_state(lambda h: seen.append(h.state))
    _feed(handle, "ok")
    assert seen == ["ok"] and handle.done
    assert "command state callback failed" in caplog.text


async def test_a_cancelled_waiter_leaves_the_other_waiters_and_the_handle_alone() -> None:
    handle = CommandHandle("c3", "n1", "ping", asyncio.get_running_loop())
    first = asyncio.ensure_future(handle.wait())
    second = asyncio.ensure_future(handle.result())
    await asyncio.sleep(0)  # both are waiting now
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled() and not second.done() and not handle.done
    _feed(handle, "ok", result={"pong": True})
    assert await asyncio.wait_for(second, 5) == {"pong": True}
    assert (await handle.wait()) is handle  # a wait after the end returns at once
