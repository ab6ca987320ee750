"""The in-process interface registry components use to reach each other."""

from __future__ import annotations

import asyncio

import pytest

from devfleet_base.errors import ComponentError
from devfleet_base.interfaces import Interfaces
from devfleet_base.testing import FakeContext


async def test_wait_for_returns_a_later_provider() -> None:
    reg = Interfaces()
    waiter = asyncio.create_task(reg.wait_for("ros", timeout=2.0))
    await asyncio.sleep(0)  # the waiter is parked before anything is provided
    obj = object()
    reg.provide("ros", obj)
    assert await waiter is obj
    assert reg.names() == ["ros"]


async def test_wait_for_times_out_with_a_clear_error() -> None:
    with pytest.raises(ComponentError, match="no component provides interface 'ros'"):
        await Interfaces().wait_for("ros", timeout=0.01)


def test_withdraw_removes_only_its_own_object() -> None:
    reg = Interfaces()
    first = object()
    withdraw = reg.provide("led", first)
    with pytest.raises(ComponentError, match="already provided"):
        reg.provide("led", object())
    withdraw()
    assert reg.get("led") is None
    second = object()
    reg.provide("led", second)
    withdraw()  # a stale withdraw leaves the new provider alone
    assert reg.get("led") is second


async def test_fake_contexts_share_a_registry_like_one_node() -> None:
    shared = Interfaces()
    provider, consumer = (
        FakeContext(name="ros", interfaces=shared),
        FakeContext(name="foraging", interfaces=shared),
    )
    provider.interfaces.provide("ros", "link")
    assert await consumer.interfaces.wait_for("ros", timeout=1.0) == "link"
