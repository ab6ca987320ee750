"""Take the web view's map screenshot in docs/examples/foraging.md during a real run.

    python examples/foraging/tools/docs_screenshot.py docs/examples

A private mosquitto, the default 6 robot agents (seed 1) at double speed, and the
web view the runner serves; Debian's chromium shoots the map 30 simulated seconds
after the operator's start, then the run ends as usual.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from devfleet_foraging.runner import Run, RunOptions

from devfleet_base.testing.broker import MosquittoBroker
from devfleet_viz import testing as kit


async def main(out: Path) -> None:
    with MosquittoBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(
            robots=6, duration=40.0, seed=1, speed=2.0, headless=True, out=Path(tmp), kill=False
        )
        run = Run(options, broker.url, broker.host, broker.port, print)
        task = asyncio.create_task(run.main(None))
        await asyncio.wait_for(run.started.wait(), 90)
        await run._sim_until(30.0)
        assert run.result.viz_url is not None
        async with kit.chromium() as browser:
            page = await browser.new_page(viewport={"width": 1000, "height": 860})
            await page.goto(run.result.viz_url)
            await page.wait_for_selector('[data-map="arena"] g.robot[data-node="bot-6"]', timeout=15_000)
            await page.wait_for_timeout(1500)  # a few pose updates after the first paint
            await page.screenshot(path=str(out / "foraging-viz.png"))
        await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/examples")))
