"""Fixtures for the viz tests: real agents (subprocesses, so kill -9 is real), a running
view, and Debian's chromium driven by Playwright (never a downloaded browser).

Screenshots go to ``tmp/artifacts/viz/`` at the repository root (``DEVFLEET_ARTIFACTS``
overrides the ``tmp/artifacts`` part).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devfleet_agent.testing import AgentPool
from devfleet_command import AsyncFleet
from devfleet_viz import testing as kit
from devfleet_viz.hub import HubLimits
from devfleet_viz.view import FleetView

KEEPALIVE = 5  # the agent's minimum: the broker sends the will within 1.5x


def artifacts_dir() -> Path:
    return kit.artifacts_dir(Path(__file__).resolve().parents[3] / "tmp" / "artifacts")


@pytest.fixture
def artifacts() -> Path:
    """Where this run's screenshots go."""
    return artifacts_dir()


@pytest.fixture
def agents(fresh_broker: Any, tmp_path: Path) -> Iterator[AgentPool]:
    """Start agents with ``agents.start("n1")``; all are killed at teardown."""
    pool = AgentPool(fresh_broker, tmp_path / "agents", extra=("--keepalive", str(KEEPALIVE)))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
async def view(fresh_broker: Any) -> AsyncIterator[FleetView]:
    """A running view on a free loopback port over the test's broker (fast flushes)."""
    fleet = AsyncFleet(fresh_broker.url, stale_check_interval=0.5)
    async with FleetView(fleet, port=0, limits=HubLimits(flush_interval=0.1)) as v:
        yield v


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium through Playwright (``apt-get install chromium``)."""
    try:
        async with kit.chromium() as b:
            yield b
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


async def _page(browser: Any, *, bypass_csp: bool) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=bypass_csp)
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    pg.errors = errors
    try:
        yield pg
    finally:
        await context.close()
    assert not errors, f"the page threw or broke its CSP: {errors}"


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page with the CSP bypassed: the escaping tests prove the escaping itself
    (the page's Content-Security-Policy would stop injected scripts too), and
    Playwright's ``wait_for_function`` (which evaluates strings) works."""
    async for pg in _page(browser, bypass_csp=True):
        yield pg


@pytest.fixture
async def strict_page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page under the view's own CSP; a CSP violation fails the test."""
    async for pg in _page(browser, bypass_csp=False):
        yield pg
