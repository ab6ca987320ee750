"""The view in a real browser (Debian's chromium) against a real broker and real agents."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from devfleet_viz.view import FleetView

SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _online(*names: str) -> Any:
    def check(model: Any) -> bool:
        return all((n := model.get(name)) is not None and n.online and n.cfg is not None for name in names)

    return check


async def _row_health(page: Any, node: str, health: str, timeout: float) -> None:
    await page.wait_for_selector(f'tr[data-node="{node}"][data-health="{health}"]', timeout=timeout * 1000)


async def test_fleet_page_lists_agents_and_shows_a_killed_one_lost(
    view: FleetView, agents: Any, page: Any, artifacts: Path
) -> None:
    victim = agents.start("n1")
    agents.start("n2")
    await view.hub.fleet.wait_for(_online("n1", "n2"), timeout=30)
    await page.goto(view.url)
    await _row_health(page, "n1", "online", 10)
    await _row_health(page, "n2", "online", 10)
    assert await page.text_content('[data-count="online"]') == "2"
    reason = await page.text_content('tr[data-node="n1"] .reason')
    assert "heartbeat every" in reason

    # search narrows the table
    await page.fill("#search", "n2")
    await page.wait_for_selector('tr[data-node="n1"]', state="detached", timeout=5000)
    await page.fill("#search", "")
    await _row_health(page, "n1", "online", 5)
    await page.select_option("#health-filter", "lost")  # no lost node yet: an empty table
    await page.wait_for_selector('tr[data-node="n2"]', state="detached", timeout=5000)
    await page.select_option("#health-filter", "")
    await page.screenshot(path=str(artifacts / "fleet.png"), full_page=True)

    keepalive = float(victim.args[victim.args.index("--keepalive") + 1])  # as the agent was started
    killed_at = time.time()
    victim.kill()
    await _row_health(page, "n1", "lost", 1.5 * keepalive + 1.0)  # the broker's will, then one flush
    took = time.time() - killed_at
    seen = await page.evaluate("window.__viz.seen['n1']")
    assert seen["health"] == "lost"
    assert took <= 1.5 * keepalive + 1.0
    assert "will" in await page.text_content('tr[data-node="n1"] .reason')
    assert await page.text_content('[data-count="lost"]') == "1"
    await page.screenshot(path=str(artifacts / "fleet-lost.png"), full_page=True)


async def test_node_page_commands_config_logs_and_escaping(
    view: FleetView, agents: Any, page: Any, probe_factory: Any, fresh_broker: Any, artifacts: Path
) -> None:
    agents.start("n1")
    fleet = view.hub.fleet
    await fleet.wait_for(_online("n1"), timeout=30)
    # Telemetry every second so the plots have points, and a description with markup in it.
    await fleet.config_set("n1", {"telemetry.interval": 1, "description": SCRIPT})
    await page.goto(view.url + "#/node/n1")
    await page.wait_for_selector("#commands button[data-verb=ping]")

    await page.click("#commands button[data-verb=ping]")
    await page.wait_for_selector('#receipts .receipt[data-verb="ping"][data-state="ok"]', timeout=10_000)
    # every receipt state was pushed, not only the last one: accepted, then ok
    states = await page.get_attribute('#receipts .receipt[data-verb="ping"]', "data-states")
    assert states is not None and states.split()[-2:] == ["accepted", "ok"], states

    # The description shows as text; nothing in it ran.
    await page.wait_for_function(
        "document.getElementById('description').textContent.includes('<script>')", timeout=10_000
    )
    # A log line with markup, shipped the way an agent ships logs.
    probe = probe_factory(fresh_broker)
    batch = {"node": "n1", "records": [{"seq": 1, "ts": time.time(), "level": "ERROR", "logger": "x",
                                        "msg": SCRIPT}], "dropped": 0}  # fmt: skip
    probe.publish("nodes/n1/logs", json.dumps(batch), qos=1)
    await page.wait_for_function(
        "document.getElementById('logs').textContent.includes('window.__pwned = 1')", timeout=10_000
    )
    assert await page.evaluate("window.__pwned") is None
    assert (
        await page.evaluate("document.querySelectorAll('#logs script, #logs img, #main script').length") == 0
    )

    # A config change appears with its new version in the history.
    before = fleet.node("n1").config_version or 0
    version = await fleet.config_set("n1", {"groups": ["lab", "east"]})
    assert version == before + 1
    await page.wait_for_selector(f'#config [data-version="{version}"]', timeout=10_000)
    assert "groups" in await page.text_content(f'#config [data-version="{version}"]')

    # Telemetry arrives as several series on one chart; the CSV has them.
    await page.wait_for_selector("canvas.plot", timeout=15_000)
    await page.wait_for_function(
        "document.querySelector('.legend').textContent.includes('memory')", timeout=15_000
    )
    csv_text = await page.evaluate("fetch('/api/nodes/n1/telemetry.csv').then(r => r.text())")
    assert csv_text.startswith("ts,metric,value\n") and ",cpu," in csv_text
    await page.screenshot(path=str(artifacts / "node.png"), full_page=True)


async def test_junk_retained_payloads_show_malformed_and_the_page_keeps_working(
    view: FleetView, agents: Any, page: Any, probe_factory: Any, fresh_broker: Any, artifacts: Path
) -> None:
    agents.start("n1")
    await view.hub.fleet.wait_for(_online("n1"), timeout=30)
    await page.goto(view.url)
    await _row_health(page, "n1", "online", 10)
    probe = probe_factory(fresh_broker)
    probe.publish("nodes/junk/meta", b"\xff\xfe not json", qos=1, retain=True)
    probe.publish("nodes/junk/status", b'{"status": "online", "session": 1, "vers', qos=1, retain=True)
    probe.publish("nodes/n1/components/ledstrip/state", b"[1, 2", qos=1, retain=True)
    await page.wait_for_selector('tr[data-node="junk"] .bad', timeout=10_000)
    # both junk descriptions counted (they may arrive in two frames)
    await page.wait_for_function(
        "document.querySelector('tr[data-node=\"junk\"]').textContent.includes('2 malformed')", timeout=10_000
    )
    await page.wait_for_selector('tr[data-node="n1"] .bad', timeout=10_000)

    await page.click('tr[data-node="junk"] a.node-link')
    await page.wait_for_selector('#raw details[data-topic="nodes/junk/status"][data-verdict="truncated"]')
    await page.wait_for_selector('#raw details[data-topic="nodes/junk/meta"][data-verdict="malformed"]')
    await page.screenshot(path=str(artifacts / "inspector.png"), full_page=True)

    # Still working: a new node appears.
    agents.start("n2")
    await page.goto(view.url + "#/")
    await _row_health(page, "n2", "online", 30)
    # Clearing the junk removes the ghost row.
    probe.publish("nodes/junk/meta", b"", qos=1, retain=True)
    probe.publish("nodes/junk/status", b"", qos=1, retain=True)
    await page.wait_for_function("!document.querySelector('tr[data-node=\"junk\"] .bad')", timeout=10_000)


async def test_map_panel_draws_the_frame_poses_and_trails(
    view: FleetView, page: Any, probe_factory: Any, fresh_broker: Any, artifacts: Path
) -> None:
    probe = probe_factory(fresh_broker)
    frame = {
        "map": "arena",
        "width": 4.0,
        "height": 3.0,
        "regions": [{"name": "nest", "x0": 0, "y0": 0, "x1": 1, "y1": 1, "color": "#2ea043"}],
        "items": [[2.0, 2.0], [3.0, 1.0]],
    }
    probe.publish("maps/arena", json.dumps(frame), qos=1, retain=True)
    await page.goto(view.url + "#/map")
    await page.wait_for_selector('[data-map="arena"] svg.map')
    assert await page.locator('[data-map="arena"] circle.item').count() == 2
    for step in range(6):
        for i, color in enumerate(("#ff0000", "#0000ff")):
            pose = {"map": "arena", "x": 0.5 + 0.4 * step, "y": 0.5 + i, "theta": 0.3 * step,
                    "color": color, "label": "search" if i else "<b>carry</b>"}  # fmt: skip
            probe.publish(f"nodes/bot{i}/components/forage/map", json.dumps(pose), qos=0)
        await asyncio.sleep(0.12)  # a moving robot: poses over several flushes
    await page.wait_for_selector('[data-map="arena"] g.robot[data-node="bot1"]')
    await page.wait_for_function(
        "document.querySelector('polyline.trail[data-node=\"bot0\"]') &&"
        " document.querySelector('polyline.trail[data-node=\"bot0\"]').points.numberOfItems >= 3",
        timeout=10_000,
    )
    fill = await page.get_attribute('g.robot[data-node="bot0"] circle', "fill")
    assert fill == "#ff0000"
    assert "<b>carry</b>" in await page.text_content('[data-map="arena"]')
    # A malformed frame is reported, not drawn, and the panel keeps working.
    probe.publish("maps/broken", b'{"map": "broken", "width": "wide"}', qos=1, retain=True)
    await page.wait_for_selector('[data-map="broken"] .bad')
    await page.screenshot(path=str(artifacts / "map.png"), full_page=True)


async def test_token_guards_commands(fresh_broker: Any, agents: Any, page: Any) -> None:
    from devfleet_command import AsyncFleet

    agents.start("n1")
    async with FleetView(AsyncFleet(fresh_broker.url), port=0, token="s3cret") as v:
        await v.hub.fleet.wait_for(_online("n1"), timeout=30)
        bare = v.url.split("?", 1)[0]
        await page.goto(bare + "#/node/n1")
        await page.click("#commands button[data-verb=ping]")
        await page.wait_for_selector('#receipts .receipt[data-state="error"]', timeout=10_000)
        assert "token" in await page.text_content("#receipts")
        await page.goto(v.url + "#/node/n1")  # the address printed carries the token
        await page.wait_for_selector("#commands button[data-verb=ping]")
        await page.click("#commands button[data-verb=ping]")
        await page.wait_for_selector('#receipts .receipt[data-verb="ping"][data-state="ok"]', timeout=10_000)


COUNTER = """
async def setup(agent):
    agent.state['n'] = 0

async def process(agent):
    agent.state['n'] += 1
"""


async def test_signed_commands_and_actors_on_the_node_page(
    fresh_broker: Any, agents: Any, page: Any, tmp_path: Path, artifacts: Path
) -> None:
    from devfleet_base.signing import Identity
    from devfleet_command import AsyncFleet

    operator = Identity.generate("viz-operator")
    node_key = operator.issue_node("n1").save(tmp_path / "node.json")
    agents.start("n1", "--allow-code", "--signing-key-file", str(node_key))
    # restart needs a signature on this node (ping and rebirth are read-only commands)
    async with FleetView(AsyncFleet(fresh_broker.url), port=0) as unsigned:
        await unsigned.hub.fleet.wait_for(_online("n1"), timeout=30)
        await page.goto(unsigned.url + "#/node/n1")
        await page.click("#commands button[data-verb=restart]")
        await page.wait_for_selector(
            '#receipts .receipt[data-verb="restart"][data-state="error"]', timeout=10_000
        )
        assert "bad_signature" in await page.text_content('#receipts .receipt[data-state="error"]')
    signed = AsyncFleet(fresh_broker.url, identity=operator)
    async with FleetView(signed, port=0) as v:
        await v.hub.fleet.spawn("n1", {"name": "counter", "code": COUNTER, "poll_interval": 0.2})
        await page.goto(v.url + "#/node/n1")
        await page.wait_for_selector('#actors [data-actor="counter"] .chip.running', timeout=15_000)
        await page.screenshot(path=str(artifacts / "actors-signed.png"), full_page=True)
        await page.click("#commands button[data-verb=restart]")  # the view signs what the page sends
        await page.wait_for_selector(
            '#receipts .receipt[data-verb="restart"][data-state="ok"]', timeout=10_000
        )


async def test_component_states_projector_and_ros_rates(
    view: FleetView, page: Any, probe_factory: Any, fresh_broker: Any, artifacts: Path
) -> None:
    """Component states as the projector and the ROS bridge publish them (retained)."""
    probe = probe_factory(fresh_broker)
    for kind, extra in (
        ("meta", {}),
        ("status", {"status": "online"}),
        ("cfg", {"config_version": 1, "config": {}}),
    ):
        body = {"node": "r1", "session": 1, "version": 1, "ts": time.time(), **extra}
        probe.publish(f"nodes/r1/{kind}", json.dumps(body), qos=1, retain=True)
    projector = {
        "protocol": "escvp21",
        "port": "/dev/ttyUSB0",
        "power": "on",
        "input": "HDMI1",
        "last_error": None,
    }
    bridges = [
        {"direction": "ros_to_mqtt", "ros_topic": "/odom", "rate_hz": 9.8, "drops": 0},
        {"direction": "mqtt_to_ros", "ros_topic": "/cmd_vel", "rate_hz": 2.5, "drops": 1},
    ]
    ros = {"state": "ok", "connected": True, "bytes_per_s": 5120, "bridges": bridges}
    probe.publish("nodes/r1/components/projector/state", json.dumps(projector), qos=1, retain=True)
    probe.publish("nodes/r1/components/ros/state", json.dumps(ros), qos=1, retain=True)
    await page.goto(view.url + "#/node/r1")
    await page.wait_for_selector('[data-component="ros"] table.records')
    assert await page.text_content('[data-component="projector"] tr[data-key="power"]') == "poweron"
    assert await page.text_content('[data-component="projector"] tr[data-key="input"]') == "inputHDMI1"
    rates = await page.locator('[data-component="ros"] td[data-col="rate_hz"]').all_text_contents()
    assert rates == ["9.8", "2.5"]
    await page.screenshot(path=str(artifacts / "component-states.png"), full_page=True)


async def test_a_frozen_agent_shows_stale_with_the_console_reason_in_the_table_and_node_page(
    view: FleetView, agents: Any, page: Any, artifacts: Path
) -> None:
    frozen = agents.start("fz1")
    fleet = view.hub.fleet
    await fleet.wait_for(_online("fz1"), timeout=30)
    await fleet.config_set("fz1", {"heartbeat.interval": 1.0})
    await fleet.wait_for(
        lambda m: (n := m.get("fz1")) is not None and n.heartbeat_interval == 1.0, timeout=15
    )
    await page.goto(view.url)
    await _row_health(page, "fz1", "online", 10)

    frozen.pause()  # the connection stays open: no will, only the heartbeats stop
    try:
        await _row_health(page, "fz1", "stale", 15)
        reason = 'tr[data-node="fz1"] .reason'
        await page.wait_for_function(
            f"document.querySelector('{reason}').textContent.includes('(every 1 s expected)')", timeout=5000
        )
        first = await page.text_content(reason)
        assert first.startswith("no heartbeat for "), first
        # the silence keeps counting on the page between frames
        await page.wait_for_function(
            f"document.querySelector('{reason}').textContent !== {json.dumps(first)}", timeout=5000
        )
        await page.screenshot(path=str(artifacts / "fleet-stale.png"), full_page=True)

        await page.click('tr[data-node="fz1"] a.node-link')
        await page.wait_for_selector("h2 .health.stale", timeout=10000)
        await page.wait_for_function(
            "document.querySelector('h2 .reason').textContent.includes('(every 1 s expected)')", timeout=5000
        )
        assert (await page.text_content("h2 .reason")).startswith("no heartbeat for ")
        frozen.resume()  # heartbeats again: online, and the reason goes with it
        await page.wait_for_selector("h2 .health.online", timeout=15000)
        assert "no heartbeat" not in await page.text_content("h2 .reason")
    finally:
        frozen.resume()
