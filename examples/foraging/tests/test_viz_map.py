"""The web view's map panel during a real foraging run: 3 robot agents (real processes),
the arena publishing its frame on ``maps/arena``, each robot's pose from its own agent,
and the view in the runner's process, looked at by Debian's chromium."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest
from devfleet_foraging.controller import COLORS, State
from devfleet_foraging.runner import Run, RunOptions

from devfleet_viz import testing as kit

pytestmark = pytest.mark.timeout(120)

ROBOTS = ["bot-1", "bot-2", "bot-3"]
MAP = '[data-map="arena"]'
# every robot on the map: (node, fill colour, label text "node · state")
ROBOTS_SHOWN = """() => [...document.querySelectorAll('[data-map="arena"] g.robot')].map((g) => [
  g.dataset.node, g.querySelector('circle').getAttribute('fill')])"""
LABELS = (
    """() => [...document.querySelectorAll('[data-map="arena"] svg.map > text')].map((t) => t.textContent)"""
)


async def test_the_map_panel_shows_the_arena_and_every_robot_in_its_state_colour(
    fresh_broker: Any, tmp_path: Path
) -> None:
    lines: list[str] = []
    # A foraging window far longer than the page's checks need (a slow browser start must
    # not find every robot recalled); the run is stopped as an operator would, by cancelling.
    options = RunOptions(
        robots=len(ROBOTS), duration=600.0, seed=4, speed=2.0, headless=True, out=tmp_path, kill=False
    )
    run = Run(options, fresh_broker.url, fresh_broker.host, fresh_broker.port, lines.append)
    task = asyncio.create_task(run.main(None))
    try:
        started = asyncio.ensure_future(run.started.wait())  # the fleet-wide start was acknowledged
        await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        assert run.started.is_set(), "\n".join(lines)
        url = run.result.viz_url
        assert url is not None and url.startswith("http://127.0.0.1:") and url.endswith("/#/map")
        assert any(line.startswith(f"web view: {url}") for line in lines), lines

        async with kit.chromium() as browser:
            context = await browser.new_context(viewport={"width": 1100, "height": 900})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url)
            # the arena's frame: its size, the nest region, food on the floor
            await page.wait_for_selector(f"{MAP} svg.map", timeout=15_000)
            assert "3 m × 3 m" in await page.text_content(MAP)
            assert await page.locator(f"{MAP} rect title").all_text_contents() == ["nest"]
            assert await page.locator(f"{MAP} circle.item").count() > 10
            # every robot, each in the colour of its state (the ARGoS convention)
            for name in ROBOTS:
                await page.wait_for_selector(f'{MAP} g.robot[data-node="{name}"]', timeout=15_000)
            # some leave the nest: green (exploring) appears, and trails grow
            green = COLORS[State.EXPLORING]
            await page.wait_for_selector(f'{MAP} g.robot circle[fill="{green}"]', timeout=30_000)
            await page.wait_for_selector(f"{MAP} polyline.trail", timeout=15_000)
            shown = dict(await page.evaluate(ROBOTS_SHOWN))
            labels = await page.evaluate(LABELS)
            assert sorted(shown) == ROBOTS, shown
            states = {label.split(" · ")[0]: label.split(" · ")[1] for label in labels}
            assert sorted(states) == ROBOTS, labels
            for name, fill in shown.items():
                assert fill == COLORS[State(states[name])], (name, fill, states[name])
            await page.screenshot(path=str(kit.artifacts_dir() / "foraging-map.png"))
            assert not errors, errors
            await context.close()
        assert not task.done(), "the run ended before the page was checked"
    finally:
        if not task.done():
            task.cancel()  # the run's own finally stops the agents and the view
            with contextlib.suppress(BaseException):
                await task
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(OSError):  # the view stopped with the run
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
