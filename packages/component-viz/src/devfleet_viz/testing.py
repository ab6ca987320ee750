"""A test kit for pages of the view: Debian's chromium through Playwright (never a
downloaded browser) and where screenshots go. Used by this package's tests and by
the foraging example's map test; needs ``playwright`` (the ``test`` extra).

Screenshots go to ``tmp/artifacts/viz/`` under the current directory (the
repository root in CI); ``DEVFLEET_ARTIFACTS`` overrides the ``tmp/artifacts`` part.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "artifacts_dir", "chromium"]

CHROMIUM = os.environ.get("DEVFLEET_CHROMIUM", "/usr/bin/chromium")
"""Debian's chromium (``apt-get install chromium``); ``DEVFLEET_CHROMIUM`` overrides it."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def artifacts_dir(root: Path | None = None) -> Path:
    """``<root or $DEVFLEET_ARTIFACTS or ./tmp/artifacts>/viz``, created."""
    base = Path(os.environ.get("DEVFLEET_ARTIFACTS", root or Path.cwd() / "tmp" / "artifacts"))
    out = base / "viz"
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A launched Playwright ``Browser`` on :data:`CHROMIUM`, closed on exit.

    Raises:
        FileNotFoundError: no chromium at :data:`CHROMIUM`.
    """
    if not shutil.which(CHROMIUM):  # a name on PATH or an executable path
        raise FileNotFoundError(f"the browser tests need chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
