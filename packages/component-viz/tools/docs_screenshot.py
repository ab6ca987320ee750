"""Take the screenshots in docs/components/viz.md: a small live fleet, then the page.

    python packages/component-viz/tools/docs_screenshot.py docs/components

A private mosquitto, 12 simulated nodes (two crashed), one real agent with the LED
strip, and a map publisher moving three robots; chromium (Debian's) shoots the fleet
page, a node page and the map.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from devfleet_agent.sim import FleetOptions, SimFleet
from devfleet_agent.testing import AgentThread, settings_for
from devfleet_base.testing.broker import MosquittoBroker
from devfleet_base.testing.mqtt_probe import MqttProbe
from devfleet_command import AsyncFleet
from devfleet_viz.view import FleetView

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


async def main(out: Path) -> None:
    with MosquittoBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        opts = FleetOptions(
            port=broker.port, nodes=12, prefix="rpi", telemetry_interval=1, heartbeat_interval=1
        )
        async with SimFleet(opts) as sim:
            await sim.wait_connected(30)
            agent = AgentThread(settings_for(broker, "lab-led", Path(tmp) / "lab-led")).start()
            try:
                async with FleetView(AsyncFleet(broker.url), port=0) as view:
                    fleet = view.hub.fleet
                    await fleet.wait_for(lambda m: "lab-led" in m and m.get("lab-led").online, 30)
                    led = {"backend": "simulated", "led_count": 30, "preview": {"enabled": True}}
                    await fleet.config_set("lab-led", {"components.ledstrip": {"enabled": True, "settings": led},
                                                       "telemetry.interval": 1, "groups": ["lab"],
                                                       "description": "bench LED strip"})  # fmt: skip
                    await fleet.component_command(
                        "lab-led", "ledstrip", "set_effect", {"effect": "rainbow_cycle"}
                    )
                    sim.crash("rpi-00003")
                    sim.crash("rpi-00007")
                    probe = MqttProbe.connect_to(broker)
                    frame = {"map": "arena", "width": 6.0, "height": 4.0, "items": [[4.5, 3.0], [5.2, 1.1], [3.3, 2.6]],
                             "regions": [{"name": "nest", "x0": 0, "y0": 0, "x1": 1.2, "y1": 1.2, "color": "#2ea043"}]}  # fmt: skip
                    probe.publish("maps/arena", json.dumps(frame), qos=1, retain=True)
                    async with async_playwright() as pw:
                        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                        page = await browser.new_page(viewport={"width": 1400, "height": 900})
                        await page.goto(view.url)
                        for step in range(40):  # robots wander for a few seconds: trails
                            for i, colour in enumerate(("#ff5555", "#55aaff", "#ffd33d")):
                                a = step / 8 + i * 2.1
                                pose = {"map": "arena", "x": 3 + 2 * math.cos(a) * (0.5 + i / 4),
                                        "y": 2 + 1.4 * math.sin(a), "theta": a + math.pi / 2, "color": colour,
                                        "label": ("search", "carry", "home")[i]}  # fmt: skip
                                probe.publish(
                                    f"nodes/rpi-0000{i}/components/forage/map", json.dumps(pose), qos=0
                                )
                            await asyncio.sleep(0.15)
                        await page.screenshot(path=str(out / "viz-fleet.png"), full_page=True)
                        await page.goto(view.url + "#/node/lab-led")
                        await page.wait_for_selector('[data-component="ledstrip"] .leds span')
                        await page.click("#commands button[data-verb=ping]")
                        await page.wait_for_selector('#receipts [data-state="ok"]')
                        await asyncio.sleep(3)
                        await page.screenshot(path=str(out / "viz-node.png"), full_page=True)
                        await browser.close()
                    probe.close()
            finally:
                agent.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
