"""The view's state beyond the console's fleet model, and the deltas each page is sent.

:class:`FleetHub` sits on one :class:`~devfleet_command.AsyncFleet`: the fleet
model keeps the nodes; the hub adds what a page needs and the model does not
keep (downsampled telemetry series, log tails, retained payloads for the raw
inspector, component publications, config history, map frames and pose trails,
command receipts). Memory is bounded everywhere (fixed-size deques and caps).

Messages are not forwarded one by one. The MQTT callback only records what is
dirty; every ``flush_interval`` seconds the hub builds ONE delta from the dirty
sets and hands it to every page (a burst of 3,000 messages becomes one frame).
A delta carries only what changed since the previous one; a page that connects
gets one snapshot, then deltas; history is never sent twice on a stream. A page
too slow to take its deltas is cut off (its bounded queue overflows) and its
browser reconnects for a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devfleet_base import contract
from devfleet_base.contract import MAP_FRAME_SCHEMA, MAP_POSE_SCHEMA
from devfleet_base.errors import ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage
from devfleet_command import AsyncFleet, NodeView

from .raw import inspect_payload
from .series import Series

__all__ = ["EXTRA_SUBSCRIPTIONS", "URGENT_DELAY", "FleetHub", "HubLimits", "Page"]

log = logging.getLogger("devfleet.viz")

EXTRA_SUBSCRIPTIONS = [("nodes/+/logs", 0), ("nodes/+/components/#", 0), ("maps/+", 1)]
"""What the view reads besides the console's own subscriptions."""

URGENT_DELAY = 0.02
"""Seconds from a status change to its frame (other changes wait for the next tick)."""

CLOCK_JUMP = 60.0
"""Seconds a node's sample times may go back before its series starts again."""

SPARK_POINTS = 30
"""Points of each series a snapshot carries for the table's sparklines."""

_SUMMARY_KINDS = frozenset({"meta", "status", "state", "cfg", "cfg_desired"})


@dataclass(frozen=True)
class HubLimits:
    """Every bound on the hub's memory.

    Attributes:
        points: points kept per telemetry series.
        step: seconds per series point (samples within are averaged).
        log_lines: log records kept per node.
        raw_topics: retained topics kept per node for the inspector.
        component_leaves: publications kept per component (latest of each subtopic).
        cfg_history: config versions kept per node.
        trail: pose points kept per node per map.
        receipts: recent receipts kept for new pages.
        page_queue: deltas queued per page before it is cut off.
        flush_interval: seconds between deltas.
    """

    points: int = 300
    step: float = 1.0
    log_lines: int = 200
    raw_topics: int = 64
    component_leaves: int = 16
    cfg_history: int = 10
    trail: int = 300
    receipts: int = 50
    page_queue: int = 64
    flush_interval: float = 0.25


@dataclass
class _NodeExtra:
    """What the hub keeps per node beyond the model's view."""

    series: dict[str, Series] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    logs: deque[dict[str, Any]] = field(default_factory=deque)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    cfg_history: deque[dict[str, Any]] = field(default_factory=deque)


@dataclass(eq=False)  # identity: pages live in a set
class Page:
    """One connected page: the node it shows in detail and its queue of frames."""

    focus: str | None
    queue: asyncio.Queue[str | None]
    dropped: bool = False


class FleetHub:
    """Live state for the web view over one (unstarted) :class:`AsyncFleet`.

    Args:
        fleet: the console client; :meth:`start` starts it.
        limits: memory bounds and pacing.
        clock: wall clock (seconds).
    """

    def __init__(
        self, fleet: AsyncFleet, limits: HubLimits | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.fleet = fleet
        self.limits = limits or HubLimits()
        self.clock = clock
        self.extra: dict[str, _NodeExtra] = {}
        self.maps: dict[str, dict[str, Any]] = {}
        self.poses: dict[str, dict[str, dict[str, Any]]] = {}
        self.trails: dict[str, dict[str, deque[list[float]]]] = {}
        self.receipts: deque[dict[str, Any]] = deque(maxlen=self.limits.receipts)
        self.pages: set[Page] = set()
        self.frames_sent = 0
        self.bytes_sent = 0
        self._sent: dict[str, dict[str, Any]] = {}
        self._dirty_summary: set[str] = set()
        self._dirty_hb: set[str] = set()
        self._dirty_points: set[tuple[str, str]] = set()
        self._dirty_detail: dict[str, dict[str, Any]] = {}
        self._dirty_poses: dict[str, dict[str, dict[str, Any]]] = {}
        self._dirty_maps: set[str] = set()
        self._new_receipts: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._remove_tap: Callable[[], None] | None = None
        self._urgent: asyncio.TimerHandle | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Tap the fleet's messages, add the view's subscriptions, start the fleet
        (waiting for the retained burst) and the flush loop.

        Raises:
            ConnectError: the broker cannot be reached (from :meth:`AsyncFleet.start`).
        """
        self._remove_tap = self.fleet.add_tap(self._on_message)
        await self.fleet.mqtt.subscribe(EXTRA_SUBSCRIPTIONS)
        await self.fleet.start()
        self._flusher = asyncio.create_task(self._flush_loop(), name="devfleet-viz-flush")

    async def close(self) -> None:
        """Stop the flush loop, end every page's stream, close the fleet."""
        if self._urgent is not None:
            self._urgent.cancel()
            self._urgent = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for task in list(self._tasks):
            task.cancel()
        for page in list(self.pages):
            self._end(page)
        if self._remove_tap is not None:
            self._remove_tap()
        await self.fleet.close()

    # ---- pages -------------------------------------------------------------------------

    def attach(self, focus: str | None = None) -> tuple[Page, str]:
        """Register a page; return it and its snapshot (JSON text)."""
        page = Page(focus, asyncio.Queue(self.limits.page_queue))
        self.pages.add(page)
        return page, json.dumps(self.snapshot(focus), separators=(",", ":"))

    def detach(self, page: Page) -> None:
        """Forget a page (its stream ended)."""
        self.pages.discard(page)

    def _end(self, page: Page) -> None:
        self.pages.discard(page)
        page.dropped = True
        with contextlib.suppress(asyncio.QueueFull):
            page.queue.put_nowait(None)

    # ---- inbound (the MQTT callback: record what is dirty, nothing more) -------------

    def _on_message(self, msg: MqttMessage) -> None:
        topic, payload, retain = msg[0], msg[1], msg[2]
        parts = topic.split("/", 3)
        if parts[0] == "nodes" and len(parts) >= 3:
            node, leaf = parts[1], parts[2]
            if leaf == "heartbeat":
                self._dirty_hb.add(node)
            elif leaf == "telemetry" and len(parts) == 4:
                self._dirty_points.add((node, parts[3]))
            else:
                self._on_node_message(topic, node, payload, retain)
        elif parts[0] == "maps" and len(parts) == 2:
            self._on_map(topic, parts[1], payload)
        elif parts[0] == "agents" and topic.endswith("/heartbeat"):
            self._on_actor_heartbeat(payload)

    def _on_node_message(self, topic: str, node: str, payload: bytes, retain: bool) -> None:
        match = contract.parse_topic(topic)
        if match is None or match.node is None:
            return
        kind = match.kind
        # A live delivery never carries the retain flag: a component's state is retained
        # by the contract, so it is inspected whether the flag came or not.
        if kind in _SUMMARY_KINDS or retain or (kind == "component" and match.leaf == "state"):
            self._keep_raw(node, topic, payload)
        if kind in _SUMMARY_KINDS:
            self._dirty_summary.add(node)
            if kind == "status":
                self._flush_soon()
            if kind == "cfg":
                self._note_cfg(node, payload)
        elif kind == "logs":
            self._on_logs(node, payload)
        elif kind == "component" and match.component and match.leaf:
            self._on_component(node, match.component, match.leaf, payload)

    def _node_extra(self, node: str) -> _NodeExtra:
        extra = self.extra.get(node)
        if extra is None:
            lim = self.limits
            extra = self.extra[node] = _NodeExtra(
                logs=deque(maxlen=lim.log_lines), cfg_history=deque(maxlen=lim.cfg_history)
            )
        return extra

    def _detail(self, node: str) -> dict[str, Any] | None:
        """The pending detail delta of ``node`` when a page looks at it, else None."""
        if not any(p.focus == node for p in self.pages):
            return None
        return self._dirty_detail.setdefault(node, {})

    def _keep_raw(self, node: str, topic: str, payload: bytes) -> None:
        extra = self._node_extra(node)
        if topic not in extra.raw and len(extra.raw) >= self.limits.raw_topics:
            return  # bounded: a node that floods retained topics shows the first ones
        seen = inspect_payload(topic, payload)
        seen["ts"] = self.clock()
        extra.raw[topic] = seen
        self._dirty_summary.add(node)  # the malformed count may have changed
        detail = self._detail(node)
        if detail is not None:
            detail.setdefault("raw", {})[topic] = seen

    def _note_cfg(self, node: str, payload: bytes) -> None:
        try:
            data = contract.decode(payload)
        except ContractError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("config_version"), int):
            return
        history = self._node_extra(node).cfg_history
        version = data["config_version"]
        if history and history[-1]["version"] == version:
            return
        entry = {"version": version, "ts": self.clock(), "config": data.get("config")}
        history.append(entry)
        detail = self._detail(node)
        if detail is not None:
            detail.setdefault("cfg", []).append(entry)

    def _on_logs(self, node: str, payload: bytes) -> None:
        try:
            batch = contract.decode(payload)
        except ContractError:
            return
        records = batch.get("records") if isinstance(batch, dict) else None
        if not isinstance(records, list):
            return
        extra = self._node_extra(node)
        detail = self._detail(node)
        for rec in records[-self.limits.log_lines :]:
            if not isinstance(rec, dict):
                continue
            line = {
                "ts": rec["ts"] if isinstance(rec.get("ts"), (int, float)) else None,
                "level": str(rec.get("level", ""))[:16],
                "logger": str(rec.get("logger", ""))[:64],
                "msg": str(rec.get("msg", ""))[:2000],
            }
            extra.logs.append(line)
            if detail is not None:
                detail.setdefault("logs", []).append(line)

    def _on_component(self, node: str, component: str, leaf: str, payload: bytes) -> None:
        if leaf == "map":
            self._on_pose(node, payload)
            return
        try:
            data = contract.decode(payload) if payload else None
        except ContractError as exc:
            data = {"malformed": exc.message}
        leaves = self._node_extra(node).components.setdefault(component, {})
        if leaf not in leaves and len(leaves) >= self.limits.component_leaves:
            return
        leaves[leaf] = data
        detail = self._detail(node)
        if detail is not None:
            detail.setdefault("components", {}).setdefault(component, {})[leaf] = data

    def _on_pose(self, node: str, payload: bytes) -> None:
        try:
            pose = MAP_POSE_SCHEMA.validate(contract.decode(payload))
        except ContractError:
            return  # a malformed pose is not drawn (non-retained: nothing to inspect later)
        name = pose["map"]
        poses = self.poses.setdefault(name, {})
        if node not in poses and len(poses) >= 10_000:
            return
        pose["node"] = node
        poses[node] = pose
        trail = self.trails.setdefault(name, {}).get(node)
        if trail is None:
            trail = self.trails[name][node] = deque(maxlen=self.limits.trail)
        point = [round(pose["x"], 3), round(pose["y"], 3)]
        if not trail or trail[-1] != point:
            trail.append(point)
        self._dirty_poses.setdefault(name, {})[node] = pose

    def _on_map(self, topic: str, name: str, payload: bytes) -> None:
        seen = inspect_payload(topic, payload)
        if seen["verdict"] == "cleared":
            self.maps.pop(name, None)
        elif seen["verdict"] == "ok":
            frame = MAP_FRAME_SCHEMA.validate(contract.decode(payload))
            self.maps[name] = {"frame": frame, "problem": ""}
        else:
            self.maps[name] = {"frame": None, "problem": f"{seen['verdict']}: {seen['reason']}"}
        self._dirty_maps.add(name)

    def _on_actor_heartbeat(self, payload: bytes) -> None:
        with contextlib.suppress(ContractError):
            data = contract.decode(payload)
            if isinstance(data, dict) and isinstance(data.get("node"), str):
                self._dirty_summary.add(data["node"])

    # ---- what pages get ----------------------------------------------------------------

    def summary(self, name: str) -> dict[str, Any]:
        """One table row: health with its reason, versions, groups, components, actors."""
        view = self.fleet.model.get(name)
        extra = self.extra.get(name)
        malformed = [
            t for t, r in (extra.raw.items() if extra else ()) if r["verdict"] in ("malformed", "truncated")
        ]
        if view is None:
            return {
                "node": name,
                "health": "unknown",
                "reason": "only malformed descriptions seen" if malformed else "no description yet",
                "malformed": len(malformed),
            }
        meta = view.meta or {}
        state_actors = view.state_actors
        actors = {k: v.get("state") for k, v in state_actors.items() if isinstance(v, dict)}
        for hb in view.actors.values():
            name_ = hb.get("name")
            if isinstance(name_, str) and name_ not in actors:
                actors[name_] = hb.get("state", "alive")
        now = self.clock()
        return {
            "node": name,
            "health": view.health,
            "reason": _reason(view, now),
            "stale_reason": view.stale_reason(now),
            "last_heard": view.last_heard,
            "status_ts": (view.status_payload or {}).get("ts"),
            "version": meta.get("agent_version") or meta.get("devfleet_version"),
            "python": meta.get("python"),
            "hostname": meta.get("hostname"),
            "description": str(meta.get("description", ""))[:200],
            "groups": view.groups,
            "components": {
                k: v.get("state") if isinstance(v, dict) else None for k, v in view.components.items()
            },
            "actors": actors,
            "heartbeat_at": view.heartbeat_at,
            "interval": view.heartbeat_interval,
            "config_version": view.config_version,
            "invalid": view.invalid,
            "malformed": len(malformed),
        }

    def node_detail(self, name: str) -> dict[str, Any]:
        """Everything the node page shows, for a snapshot."""
        view = self.fleet.model.get(name)
        extra = self.extra.get(name) or _NodeExtra()
        commands = sorted((view.meta or {}).get("commands", {})) if view and view.meta else []
        comp_commands: dict[str, list[str]] = {}
        for comp in (view.meta or {}).get("components", []) if view else []:
            if isinstance(comp, dict) and isinstance(comp.get("name"), str):
                comp_commands[comp["name"]] = [str(c) for c in comp.get("commands", []) if isinstance(c, str)]
        return {
            "node": name,
            "known": view is not None,
            "series": {m: s.points() for m, s in extra.series.items()},
            "logs": list(extra.logs),
            "raw": extra.raw,
            "components": extra.components,
            "component_states": view.components if view else {},
            "component_commands": comp_commands,
            "actors": view.state_actors if view else {},
            "actor_heartbeats": view.actors if view else {},
            "cfg": view.cfg if view else None,
            "cfg_history": list(extra.cfg_history),
            "meta": view.meta if view else None,
            "heartbeat": view.heartbeat if view else None,
            "commands": commands,
        }

    def snapshot(self, focus: str | None = None) -> dict[str, Any]:
        """What a page gets first: every row, recent sparkline points, maps, receipts."""
        names = set(self.fleet.model.nodes) | set(self.extra)
        spark: dict[str, dict[str, list[list[float]]]] = {}
        for name, extra in self.extra.items():
            if extra.series:
                spark[name] = {m: s.points(SPARK_POINTS) for m, s in extra.series.items()}
        return {
            "now": self.clock(),
            "nodes": {n: self.summary(n) for n in sorted(names)},
            "spark": spark,
            "maps": self.maps,
            "poses": self.poses,
            "trails": {m: {n: list(t) for n, t in tr.items()} for m, tr in self.trails.items()},
            "receipts": list(self.receipts),
            "focus": self.node_detail(focus) if focus else None,
        }

    # ---- the flush -----------------------------------------------------------------------

    def _flush_soon(self) -> None:
        """A status change goes out within :data:`URGENT_DELAY`, not at the next tick
        (a wave of status changes still shares that one early frame)."""
        if self._urgent is None and self._flusher is not None:
            self._urgent = asyncio.get_running_loop().call_later(URGENT_DELAY, self._urgent_flush)

    def _urgent_flush(self) -> None:
        self._urgent = None
        try:
            self.flush()
        except Exception:
            log.exception("viz flush failed")

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            tick = max(tick + self.limits.flush_interval, loop.time())  # a fixed pace, no drift
            await asyncio.sleep(tick - loop.time())
            try:
                self.flush()
            except Exception:  # one bad frame must not end the view
                log.exception("viz flush failed")

    def flush(self) -> dict[str, Any] | None:
        """Build one delta from everything dirty and queue it to every page; return it."""
        model = self.fleet.model
        now = self.clock()
        delta: dict[str, Any] = {"now": now}
        # Health changes without a message (staleness) show up here: compare every row.
        for name, view in model.nodes.items():
            sent = self._sent.get(name)
            if sent is None or sent.get("health") != view.health:
                self._dirty_summary.add(name)
        rows: dict[str, Any] = {}
        for name in self._dirty_summary:
            if name not in model.nodes and name not in self.extra:
                continue
            row = self.summary(name)
            if self._sent.get(name) != row:
                self._sent[name] = row
                rows[name] = row
        self._dirty_summary.clear()
        removed = [n for n in self._sent if n not in model.nodes and n not in self.extra]
        for name in removed:
            del self._sent[name]
        gone = [n for n in self.extra if n not in model.nodes and not self.extra[n].raw]
        for name in gone:
            del self.extra[name]
            removed.append(name)
        if rows:
            delta["nodes"] = rows
        if removed:
            delta["removed"] = removed
        if self._dirty_hb:
            delta["hb"] = {n: model.nodes[n].heartbeat_at for n in self._dirty_hb if n in model.nodes}
            self._dirty_hb.clear()
        if self._dirty_points:
            delta["points"] = self._take_points()
        if self._dirty_poses:
            delta["poses"], self._dirty_poses = self._dirty_poses, {}
        if self._dirty_maps:
            delta["maps"] = {m: self.maps.get(m) for m in self._dirty_maps}
            self._dirty_maps.clear()
        if self._new_receipts:
            delta["receipts"], self._new_receipts = self._new_receipts, []
        details, self._dirty_detail = self._dirty_detail, {}
        if len(delta) == 1 and not details:
            return None
        common = json.dumps(delta, separators=(",", ":"))
        for page in list(self.pages):
            detail = details.get(page.focus) if page.focus else None
            text = common
            if detail:
                text = json.dumps({**delta, "detail": detail}, separators=(",", ":"))
            try:
                page.queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("a page fell behind; cutting it off (it reconnects for a snapshot)")
                self.pages.discard(page)
                page.dropped = True
                continue
            self.frames_sent += 1
            self.bytes_sent += len(text)
        return delta

    def _take_points(self) -> dict[str, dict[str, list[float]]]:
        """New series points since the last flush, read from the model's samples."""
        out: dict[str, dict[str, list[float]]] = {}
        model = self.fleet.model
        lim = self.limits
        for node, metric in self._dirty_points:
            view = model.nodes.get(node)
            history = view.history.get(metric) if view is not None else None
            if not history:
                continue
            extra = self._node_extra(node)
            series = extra.series.get(metric)
            if series is None:
                if len(extra.series) >= 32:
                    continue  # bounded: the first 32 metrics of a node
                series = extra.series[metric] = Series(lim.points, lim.step)
            last = extra.last_ts.get(metric, float("-inf"))
            fresh = []
            if history[-1].ts < last - CLOCK_JUMP:  # the node's clock went back (a Pi without RTC)
                series = extra.series[metric] = Series(lim.points, lim.step)
                fresh.append(history[-1])
            else:
                for sample in reversed(history):  # newest first: usually one sample is new
                    if sample.ts <= last:
                        break
                    fresh.append(sample)
            point = None
            for sample in reversed(fresh):
                point = series.add(sample.ts, sample.value) or point
            extra.last_ts[metric] = history[-1].ts
            if point is not None:
                out.setdefault(node, {})[metric] = [point[0], point[1]]
        self._dirty_points.clear()
        return out

    # ---- commands ------------------------------------------------------------------------

    async def command(self, node: str, verb: str, args: dict[str, Any] | None = None) -> str:
        """Send a command through the console library; its receipts reach every page
        in the deltas as they come (``accepted`` → ``ok``/``error`` with a code).

        Returns:
            The command id.

        Raises:
            ContractError: a bad node or verb name.
            ConnectError: the broker did not take it.
        """
        # every state is pushed as the receipt is handled (a short ``accepted`` too):
        # the callback is registered before the command is published
        handle = await self.fleet.send(node, verb, args or {}, timeout=15.0, on_state=self._note_receipt)
        if handle.state == "pending":
            self._note_receipt(handle)
        return handle.id

    def _note_receipt(self, handle: Any) -> None:
        receipt = handle.receipt or {}
        entry = {
            "id": handle.id,
            "node": handle.node,
            "verb": handle.verb,
            "state": handle.state,
            "code": handle.code,
            "message": handle.message,
            "result": receipt.get("result") if handle.state == "ok" else None,
            "ts": self.clock(),
        }
        try:
            json.dumps(entry)
        except (TypeError, ValueError):
            entry["result"] = repr(entry["result"])[:500]
        self.receipts.append(entry)
        self._new_receipts.append(entry)

    def telemetry_csv(self, node: str) -> str:
        """The node's kept telemetry as CSV: ``ts,metric,value`` rows (ts in Unix seconds).

        Raises:
            DevfleetError: the view has no telemetry of ``node``.
        """
        extra = self.extra.get(node)
        if extra is None or not extra.series:
            raise DevfleetError(f"no telemetry of {node!r} is kept")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["ts", "metric", "value"])
        for metric, series in sorted(extra.series.items()):
            writer.writerows([f"{ts:.3f}", metric, f"{value:g}"] for ts, value in series.points())
        return out.getvalue()


def _reason(view: NodeView, now: float) -> str:
    """Why the node has its health, in a few words (``now``: wall clock, seconds)."""
    health = view.health
    if health == "online":
        return f"heartbeat every {view.heartbeat_interval:g} s"
    if health == "stale":
        # The console's own words; a clustered broker (NATS) may never send the will.
        return view.stale_reason(now) or "stale"
    if health == "lost":
        return "will: the broker saw its connection die"
    if health == "offline":
        why = (view.status_payload or {}).get("reason")
        return f"clean stop: {str(why)[:100]}" if why else "clean stop"
    return "no status yet"
