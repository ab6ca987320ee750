"""The hub against a real broker: coalesced deltas, no history resent, bounded memory."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from devfleet_command import AsyncFleet
from devfleet_viz.hub import FleetHub, HubLimits


def _birth(probe: Any, node: str) -> None:
    for kind, extra in (
        ("meta", {}),
        ("status", {"status": "online"}),
        ("cfg", {"config_version": 1, "config": {}}),
    ):
        body = {"node": node, "session": 1, "version": 1, "ts": time.time(), **extra}
        probe.publish(f"nodes/{node}/{kind}", json.dumps(body), qos=1, retain=True)


async def test_a_burst_becomes_one_delta_with_only_new_points(fresh_broker: Any, probe_factory: Any) -> None:
    probe = probe_factory(fresh_broker)
    for i in range(20):
        _birth(probe, f"n{i}")
    limits = HubLimits(flush_interval=3600, points=5, log_lines=3, trail=4)  # flushed by hand
    hub = FleetHub(AsyncFleet(fresh_broker.url), limits)
    await hub.start()
    try:
        page, snapshot = hub.attach(focus="n0")
        snap = json.loads(snapshot)
        assert len(snap["nodes"]) == 20 and snap["nodes"]["n3"]["health"] == "online"
        hub.flush()  # whatever the start left dirty
        while not page.queue.empty():
            page.queue.get_nowait()

        # A burst: 20 nodes x 3 metrics x 3 samples, plus logs and poses.
        t0 = float(int(time.time()))
        for k in range(3):
            for i in range(20):
                for metric in ("cpu", "memory", "disk"):
                    body = {"value": 10.0 * k + i, "ts": t0 + k}
                    probe.publish(f"nodes/n{i}/telemetry/{metric}", json.dumps(body), qos=1)
        records = [{"seq": s, "ts": t0, "level": "INFO", "logger": "t", "msg": f"line {s}"} for s in range(5)]
        probe.publish("nodes/n0/logs", json.dumps({"node": "n0", "records": records}), qos=1)
        for step in range(6):
            pose = {"map": "arena", "x": float(step), "y": 1.0}
            probe.publish("nodes/n1/components/forage/map", json.dumps(pose), qos=1)
        await hub.fleet.wait_until_synced(10)  # every message above has arrived

        delta = hub.flush()
        assert delta is not None and page.queue.qsize() == 1  # one frame for the whole burst
        frame = json.loads(page.queue.get_nowait())
        assert set(frame["points"]) == {f"n{i}" for i in range(20)}
        assert frame["points"]["n4"]["cpu"] == [t0 + 2, 24.0]  # only the newest point
        assert [line["msg"] for line in frame["detail"]["logs"]] == ["line 2", "line 3", "line 4"]
        assert frame["poses"]["arena"]["n1"]["x"] == 5.0

        # Nothing new: no frame at all, nothing resent.
        assert hub.flush() is None and page.queue.empty()

        # Bounded: series, logs and trails keep their limits however much comes in.
        for k in range(3, 12):
            probe.publish("nodes/n0/telemetry/cpu", json.dumps({"value": float(k), "ts": t0 + k}), qos=1)
        await hub.fleet.wait_until_synced(10)
        hub.flush()
        assert len(hub.extra["n0"].series["cpu"]) == 5
        assert len(hub.extra["n0"].logs) == 3
        assert len(hub.trails["arena"]["n1"]) == 4
        assert [p[0] for p in hub.extra["n0"].series["cpu"].points()] == [t0 + k for k in range(7, 12)]

        # A node whose clock goes back (a Pi without RTC, then NTP) starts its series again.
        probe.publish("nodes/n0/telemetry/cpu", json.dumps({"value": 7.0, "ts": t0 - 3600}), qos=1)
        await hub.fleet.wait_until_synced(10)
        assert hub.flush()["points"]["n0"]["cpu"] == [t0 - 3600, 7.0]
        assert hub.extra["n0"].series["cpu"].points() == [[t0 - 3600, 7.0]]

        # A page that does not read is cut off, not buffered without end.
        slow, _ = hub.attach()
        for k in range(limits.page_queue + 2):
            probe.publish("nodes/n0/telemetry/cpu", json.dumps({"value": 1.0, "ts": t0 + 20 + k}), qos=1)
            await hub.fleet.wait_until_synced(10)
            hub.flush()
        assert slow.dropped and slow not in hub.pages
    finally:
        await hub.close()
    await asyncio.sleep(0)


async def test_hostile_requests_get_clear_refusals(view: Any) -> None:
    """Junk from the network: a 4xx with a reason, never a 500, and the view keeps serving."""
    import urllib.error
    import urllib.request

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = view.url

    def call(path: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, bytes]:
        headers = {"Content-Type": ctype} if body is not None else {}
        req = urllib.request.Request(base + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
        max_leaves=12,
    )
    bodies = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
    seen: list[int] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def post(body: bytes) -> None:
        status, _ = call("api/command", body)
        seen.append(status)
        assert status in (400, 413), (status, body)

    await asyncio.to_thread(post)
    deep = b"[" * 30_000 + b"]" * 30_000  # under the size cap, far past the recursion limit
    big = b'{"node": "n1", "verb": "ping", "args": {"x": "' + b"y" * 100_000 + b'"}}'
    results = await asyncio.gather(
        asyncio.to_thread(call, "api/command", deep),
        asyncio.to_thread(call, "api/command", big),
        asyncio.to_thread(call, "api/command", b'{"node": "n1", "verb": "ping"}', "text/plain"),
        asyncio.to_thread(call, "api/stream?node=a/b"),
        asyncio.to_thread(call, "api/nodes/nope/telemetry.csv"),
        asyncio.to_thread(call, "static/../hub.py"),
    )
    assert [r[0] for r in results] == [400, 413, 403, 400, 404, 404]
    status, body = await asyncio.to_thread(call, "")
    assert status == 200 and b"devfleet" in body
