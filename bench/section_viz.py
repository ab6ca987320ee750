"""The live fleet view under a simulated fleet: browser frame time, status latency, server cost.

``devfleet-sim`` runs N nodes with a heartbeat and three telemetry metrics every
second; ``devfleet viz`` (the real CLI, its own process) serves the view; Debian's
chromium, driven by Playwright, shows the fleet table. Measured over a steady
window:

- frame time: per delta, the page's handling plus its DOM updates
  (``performance.now()`` around each SSE message's work), p50 / p95; and the frame
  interval the browser paints at (``requestAnimationFrame``), which includes style,
  layout and paint of those updates;
- status change on the wire → page: a retained ``lost`` status published for a
  node, until the page's row has it (the page stamps ``Date.now()`` when a row's
  health changes; same host, same clock), and the part until the server sent the
  frame that carried it (the frame's own server time);
- the viz server's CPU and RSS (``/proc``), against the floor of a bare paho
  subscriber taking the same messages in its own process;
- bytes per second to the browser (SSE payloads) against the bytes per second
  on the wire (topics + payloads the server receives).

Run alone: ``python3 dev.py bench -- --only viz``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from measure import PY, Child, pct, proc_stat

from devfleet_base.testing.broker import MosquittoBroker

TITLE = "live fleet view (component-viz) under a simulated fleet"
CHROMIUM = os.environ.get("DEVFLEET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
FULL = {"nodes": 1000, "window": 30.0, "changes": 20}
QUICK = {"nodes": 40, "window": 3.0, "changes": 3}
FILTERS = [("nodes/+/#", 0), ("agents/+/heartbeat", 0), ("maps/+", 0)]
# Frame intervals as the browser paints (requestAnimationFrame, 60 Hz: 16.7 ms when no
# frame is dropped); layout and paint of the page's updates are inside them.
RAF = """(() => { window.__raf = []; let last = performance.now();
  const tick = (t) => { window.__raf.push(t - last); last = t;
    if (window.__raf.length < 200000) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); })()"""


async def run(quick: bool, log: Any, row: Any) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    n, window = sizes["nodes"], sizes["window"]
    extra = ["max_queued_messages 0", "max_inflight_messages 0"]
    with MosquittoBroker(extra_config=extra) as broker:
        sim = Child(
            [PY, "-m", "devfleet_agent.sim.cli", "--broker", broker.url, "--nodes", str(n), "--prefix", "viz",
             "--telemetry-interval", "1", "--heartbeat-interval", "1", "--report", "60"],
            ready=False,
        )  # fmt: skip
        floor = Child([PY, __file__, "floor", broker.host, str(broker.port)])
        viz = Child(
            [PY, "-m", "devfleet_command.cli", "viz", "--port", "0", "--broker", broker.url], ready=False
        )
        try:
            url = _address(viz)
            log(f"viz at {url}; waiting for {n} nodes in the page")
            out = await _browser(url, n, window, sizes["changes"], broker, viz, floor, log)
        finally:
            for child in (viz, floor, sim):
                child.proc.terminate()
                child.close()
    rings = _rings_bytes(n)
    frames = out["frames"]
    rows = [
        row(f"viz: browser frame time p95, {n:,} nodes (heartbeat + 3 metrics / s each)",
            pct(frames, 0.95), "ms", None, target="≤ 50 ms"),
        row("viz: browser frame time p50", pct(frames, 0.5), "ms", None),
        row("viz: browser frame interval p95 (requestAnimationFrame, layout and paint included)",
            pct(out["raf"], 0.95), "ms", None, target="≤ 50 ms"),
        row("viz: browser frame interval max", max(out["raf"]), "ms", None),
        row("viz: status change on the wire → page, p50", pct(out["latency"], 0.5) * 1e3, "ms", None),
        row("viz: status change on the wire → page, max", max(out["latency"]) * 1e3, "ms", None),
        row("viz: status change on the wire → the server's frame, p50", pct(out["server_part"], 0.5) * 1e3, "ms",
            None),
        row(f"viz: server CPU, {out['msg_rate']:,.0f} msg/s in", out["server_cpu"], "%", out["floor_cpu"] or None),
        row("viz: server RSS", out["server_rss"] / 2**20, "MB", out["floor_rss"] / 2**20),
        row(f"viz: telemetry rings when full ({n:,} nodes × 3 metrics × 300 points)", rings / 2**20, "MB",
            None),
        row("viz: bytes/s to the browser (floor: bytes/s on the wire)", out["page_bytes_s"] / 1024, "KB/s",
            out["wire_bytes_s"] / 1024),
    ]  # fmt: skip
    details = {k: v for k, v in out.items() if k not in ("frames", "latency", "raf", "server_part")}
    details["server_part_ms"] = [round(x * 1e3, 1) for x in out["server_part"]]
    details["raf_frames"] = len(out["raf"])
    details.update(nodes=n, frame_count=len(frames), latencies_ms=[round(x * 1e3, 1) for x in out["latency"]])
    return {"rows": rows, "details": details}


def _rings_bytes(nodes: int) -> int:
    """What the hub's series hold once every ring is full (the server's RSS above is
    measured after a short window, before the rings fill)."""
    import tracemalloc

    from devfleet_viz.series import Series

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rings = [Series() for _ in range(nodes * 3)]
    for ring in rings:
        for t in range(ring.capacity):
            ring.add(float(t), 1.0)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del rings
    return size


def _address(viz: Child) -> str:
    assert viz.proc.stdout is not None
    line = viz.proc.stdout.readline()
    found = re.search(r"http://\S+", line)
    if not found:
        raise RuntimeError(f"devfleet viz did not print its address: {line!r}")
    return found.group(0)


async def _browser(
    url: str, n: int, window: float, changes: int, broker: Any, viz: Child, floor: Child, log: Any
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from devfleet_base.testing.mqtt_probe import MqttProbe

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp: Playwright's wait_for_function evaluates strings, which the CSP forbids.
            page = await browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            await page.goto(url)
            await page.wait_for_function(
                f"Number(document.querySelector('[data-count=online]').textContent) >= {n}",
                timeout=300_000,
                polling=500,
            )
            await asyncio.sleep(min(5.0, window / 2))  # every node heartbeating, sparklines filling
            log(f"all {n} online; measuring {window:g} s")
            await page.evaluate("window.__viz.frames.length = 0; window.__viz.bytes = 0")
            await page.evaluate(RAF)
            floor.say("reset")
            cpu0, _, _ = proc_stat(viz.proc.pid)
            t0 = time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - t0
            cpu1, rss, _ = proc_stat(viz.proc.pid)
            stats = await page.evaluate(
                "({frames: window.__viz.frames.slice(), bytes: window.__viz.bytes, raf: window.__raf.slice(1)})"
            )
            floor.say("report")
            wire = json.loads(_line(floor))

            probe = MqttProbe.connect_to(broker)
            latency: list[float] = []
            server_part: list[float] = []  # wire → the server's frame (the rest: SSE and the page)
            try:
                for i in range(changes):
                    node = f"viz-{(i * 7) % n:05d}"
                    body = {"status": "lost", "node": node, "session": 10**9, "version": i, "ts": time.time()}
                    sent = time.time()
                    probe.publish(f"nodes/{node}/status", json.dumps(body), qos=1, retain=True)
                    await page.wait_for_function(
                        f"(window.__viz.seen[{json.dumps(node)}] || {{}}).health === 'lost'", timeout=30_000
                    )
                    seen = await page.evaluate(f"window.__viz.seen[{json.dumps(node)}]")
                    latency.append(seen["at"] - sent)
                    server_part.append(seen["sent"] - sent)
            finally:
                probe.close()
        finally:
            await browser.close()
    return {
        "frames": stats["frames"],
        "raf": stats["raf"],
        "latency": latency,
        "server_part": server_part,
        "window": elapsed,
        "msg_rate": wire["messages"] / wire["seconds"],
        "wire_bytes_s": wire["bytes"] / wire["seconds"],
        "page_bytes_s": stats["bytes"] / elapsed,
        "server_cpu": 100 * (cpu1 - cpu0) / elapsed,
        "server_rss": rss,
        "floor_cpu": wire["cpu_percent"],
        "floor_rss": wire["rss"],
    }


def _line(child: Child) -> str:
    assert child.proc.stdout is not None
    return child.proc.stdout.readline()


# ---- the floor: a bare paho subscriber taking the same messages ---------------------------


async def _floor(host: str, port: int) -> None:
    from rawmqtt import RawClient

    count = {"messages": 0, "bytes": 0}

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        count["messages"] += 1
        count["bytes"] += len(topic) + len(payload)

    client = RawClient("floor-viz", on_message)
    await client.connect(host, port)
    await client.subscribe(FILTERS)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    t0, cpu0 = time.monotonic(), sum(os.times()[:2])
    while True:
        cmd = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if cmd == "reset":
            count.update(messages=0, bytes=0)
            t0, cpu0 = time.monotonic(), sum(os.times()[:2])
        elif cmd == "report":
            seconds = time.monotonic() - t0
            cpu = 100 * (sum(os.times()[:2]) - cpu0) / seconds
            rss = proc_stat(os.getpid())[1]
            print(json.dumps({**count, "seconds": seconds, "cpu_percent": cpu, "rss": rss}), flush=True)
        else:
            break
    client.close()


if __name__ == "__main__" and sys.argv[1:2] == ["floor"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(_floor(sys.argv[2], int(sys.argv[3])))
