"""Wactorz packaged-runner nodes (``wactorz-node``, PyPI ``wactorz``) in the console.

Such a node publishes no meta, status or state. Its presence is its node
heartbeat (``nodes/{node}/heartbeat`` every 10 s, with ``runtime: "node"``; a
``status`` of ``offline`` or ``restarting`` when it goes down) and a retained
``nodes/{node}/manifest`` (what the machine is). Its figures have names of their
own (``cpu_pct``, ``mem_used_mb``, ``disk_free_mb``). This module reads those
into the console's :class:`~devfleet_command.model.NodeView` terms: health,
version, uptime, ``cpu``/``memory``/``disk`` percent and the actor rows.

Shapes from ``wactorz/node/runner.py`` (``_node_heartbeat_loop``,
``_publish_manifest``, ``shutdown``, ``_restart``) of wactorz 0.7.2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .model import NodeView

__all__ = [
    "RUNTIMES",
    "actor_rows",
    "is_wactorz",
    "mark_verified",
    "metric",
    "on_heartbeat",
    "on_list",
    "on_manifest",
    "uptime",
    "version",
]

#: ``runtime`` of a Wactorz node heartbeat: the packaged runner says ``node``, the
#: single-file runner ``runner`` (or nothing).
RUNTIMES: Final = frozenset({"node", "runner"})

#: Heartbeat ``status`` values a Wactorz node sends on its way down.
_DOWN: Final = frozenset({"offline", "restarting"})


def is_wactorz(view: NodeView) -> bool:
    """A node known only from Wactorz topics: a manifest, or a heartbeat naming a Wactorz
    ``runtime``, and no devfleet description (a devfleet agent always has a meta)."""
    if view.meta is not None:
        return False
    hb = view.heartbeat or {}
    return view.manifest is not None or hb.get("runtime") in RUNTIMES


def mark_verified(view: NodeView | None, signed: bool) -> None:
    """Record whether the presence message just taken was signed with the fleet key
    (``verified``: shown as such; an unverified node is not commanded by a console
    that signs). A node once seen unsigned stays unverified until a signed message."""
    if view is not None and is_wactorz(view):
        view.verified = signed


def on_manifest(view: NodeView, manifest: dict[str, Any]) -> None:
    """Take a (retained) manifest: the node is said to be up until a heartbeat
    shows otherwise; with no heartbeat it stays *unconfirmed*, which a one-shot
    console waits on and then marks stale (the broker keeps a dead node's manifest)."""
    view.manifest = manifest
    if view.status is None and view.meta is None:
        view.status = "online"


def on_heartbeat(view: NodeView, beat: dict[str, Any]) -> None:
    """Its heartbeat is a Wactorz node's status: ``offline``/``restarting`` when it
    says so, ``online`` otherwise."""
    if not is_wactorz(view):
        return
    said = beat.get("status")
    view.status = said if said in _DOWN else "online"
    names = beat.get("agents")
    if isinstance(names, list):
        view.listed = sorted({n for n in names if isinstance(n, str)})
    elif said in _DOWN:
        view.listed = []


def on_list(view: NodeView, answer: dict[str, Any], now: float | None) -> None:
    """Its answer on ``nodes/{node}/agents`` (``{"node", "agents": [{"name", "actor_id"}]}``):
    the actors it runs, and proof that it lives (a one-shot console asks rather than
    wait up to 10 s for a heartbeat; see :func:`devfleet_command.wactorz_ops.ask_lists`)."""
    agents = answer.get("agents")
    if not isinstance(agents, list):
        return
    view.listed = sorted(
        {a["name"] for a in agents if isinstance(a, dict) and isinstance(a.get("name"), str)}
    )
    if now is not None:
        view.seen_at = now
        view.awaiting = False


def version(view: NodeView) -> str | None:
    """``wactorz 0.7.2`` (from the heartbeat or the manifest)."""
    for source in (view.heartbeat, view.manifest):
        if isinstance(source, dict) and isinstance(source.get("version"), str):
            return f"wactorz {source['version']}"
    return None


def uptime(view: NodeView) -> float | None:
    """Seconds since the runner started (``uptime_s``)."""
    value = (view.heartbeat or {}).get("uptime_s")
    return _number(value)


def metric(view: NodeView, name: str) -> float | None:
    """``cpu``/``memory``/``disk`` percent from the Wactorz figures.

    memory: ``mem_used_mb`` of ``mem_used_mb + mem_free_mb`` (else the manifest's
    ``ram_total_mb``); disk: the state directory's ``total_mb`` in the manifest less
    the heartbeat's ``disk_free_mb``. None when a figure is missing.
    """
    hb = view.heartbeat or {}
    if name == "cpu":
        return _number(hb.get("cpu_pct"))
    if name == "memory":
        used, free = _number(hb.get("mem_used_mb")), _number(hb.get("mem_free_mb"))
        total = used + free if used is not None and free is not None else None
        total = total or _number((view.manifest or {}).get("ram_total_mb"))
        return _percent(used, total)
    if name == "disk":
        disk = (view.manifest or {}).get("disk")
        state = disk.get("state") if isinstance(disk, dict) else None
        total = _number(state.get("total_mb")) if isinstance(state, dict) else None
        free = _number(hb.get("disk_free_mb"))
        return _percent(total - free if total is not None and free is not None else None, total)
    return None


def actor_rows(view: NodeView) -> list[dict[str, Any]]:
    """The actors its heartbeat lists (``agents``), with their own heartbeats' state."""
    names = view.listed
    if names is None:
        return []
    beats = {b.get("name"): b for b in view.actors.values() if isinstance(b, dict)}
    rows = []
    for name in names:
        beat = beats.get(name, {})
        state = beat.get("state") if isinstance(beat.get("state"), str) else "running"
        row = {"node": view.name, "name": name, "state": state, "restarts": None, "runtime": "wactorz"}
        if isinstance(beat.get("actor_id"), str):
            row["actor_id"] = beat["actor_id"]
        rows.append(row)
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a 400-digit int
        return None
    return number if number == number and abs(number) != float("inf") else None


def _percent(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole or whole <= 0:
        return None
    return round(100.0 * part / whole, 1)
