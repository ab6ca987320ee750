"""The view as a component inside a real agent, and standalone as ``devfleet viz``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from devfleet_agent.testing import AgentThread, settings_for
from devfleet_command import AsyncFleet

SPANS = '[data-component="ledstrip"] .leds span'
PAINTED = "spans => spans.map(s => getComputedStyle(s).backgroundColor)"


def _component(model: Any, node: str, name: str) -> dict[str, Any]:
    view = model.get(node)
    return ((view.state or {}).get("components") or {}).get(name, {}) if view else {}


async def test_viz_runs_inside_an_agent_and_shows_the_led_strip(
    mqtt_broker: Any, tmp_path: Path, strict_page: Any, artifacts: Path
) -> None:
    page = strict_page
    node = "viz-node"
    with AgentThread(settings_for(mqtt_broker, node, tmp_path / node)):
        async with AsyncFleet(mqtt_broker.url) as fleet:
            await fleet.wait_for(lambda m: node in m and m.get(node).online, timeout=20)
            ledstrip = {"backend": "simulated", "led_count": 30, "fps": 20, "preview": {"enabled": True}}
            await fleet.config_set(
                node,
                {
                    "components.ledstrip": {"enabled": True, "settings": ledstrip},
                    "components.viz": {"enabled": True, "settings": {"port": 0, "broker": mqtt_broker.url}},
                },
            )
            await fleet.wait_for(lambda m: (_component(m, node, "viz").get("reported") or {}).get("url"), 20)
            reported = _component(fleet.model, node, "viz")["reported"]
            assert reported["url"].startswith("http://127.0.0.1:") and reported["readonly"] is False
            await fleet.component_command(node, "ledstrip", "set_effect", {"effect": "rainbow_cycle"})

            await page.goto(reported["url"] + f"#/node/{node}")
            await page.wait_for_selector('[data-component="ledstrip"] .leds span', timeout=15_000)
            await page.wait_for_selector('[data-component="viz"] .chip.running')
            # The preview follows the strip: a rainbow along the strip shows many colours, not
            # one, and they are painted (computed style) under the page's CSP.
            async with asyncio.timeout(10):
                while len(set(await page.eval_on_selector_all(SPANS, PAINTED))) <= 3:
                    await page.wait_for_timeout(100)
            await page.click("#commands button[data-verb=ping]")
            await page.wait_for_selector(
                '#receipts .receipt[data-verb="ping"][data-state="ok"]', timeout=10_000
            )
            # A component command from the page.
            await page.select_option("#comp-cmd", label="ledstrip · off")
            await page.click("#comp-run")
            await page.wait_for_selector('#receipts .receipt[data-verb="component"][data-state="ok"]')
            await page.screenshot(path=str(artifacts / "in-agent.png"), full_page=True)


def _devfleet(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devfleet_command.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


async def test_devfleet_viz_prints_its_address_and_serves(mqtt_broker: Any) -> None:
    proc = _devfleet("viz", "--port", "0", env={"DEVFLEET_BROKER": mqtt_broker.url})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith("devfleet viz: serving the fleet at http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        assert "devfleet" in body and "/static/app.js" in body
    finally:
        proc.send_signal(signal.SIGTERM)  # as systemd stops it: a clean exit
        assert proc.wait(15) == 0


def test_devfleet_viz_refuses_a_bad_port_and_says_when_viz_is_missing(mqtt_broker: Any) -> None:
    proc = _devfleet("viz", "--port", "70000", "--broker", mqtt_broker.url)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and err.count("\n") == 1 and "not a TCP port" in err
    missing = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['devfleet_viz'] = None\n"
         "from devfleet_command.cli import main; sys.exit(main(['viz']))"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr == (
        "devfleet: devfleet viz needs the devfleet-component-viz package (pip install devfleet-component-viz)\n"
    )


def test_help_lists_viz_without_loading_it() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from devfleet_command.cli import build_parser\n"
        "text = build_parser().format_help()\n"
        "print('viz' in text, 'devfleet_viz' in sys.modules, 'starlette' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
