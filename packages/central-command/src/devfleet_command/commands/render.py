"""Wire data to terminal text. Everything a node (or anyone on the broker) wrote is
data, never rich markup: a group named ``[/]`` or a 400-digit number is printed,
not interpreted.

Every renderer here takes what the model or a node's answer holds, whatever its
shape, and never raises (``tests/test_cli_render.py`` feeds them hypothesis junk).
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = [
    "actors_table",
    "cell",
    "components_renderables",
    "config_renderables",
    "drift_lines",
    "number",
]


def cell(value: Any, limit: int | None = None) -> Text:
    """``value`` as plain text (``str()`` of anything, cut to ``limit`` characters)."""
    text = value if isinstance(value, str) else _str(value)
    return Text(text if limit is None else text[:limit])


def _str(value: Any) -> str:
    try:
        return str(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return "<number too long>"


def number(value: Any, fmt: str = ".1f") -> str:
    """A finite JSON number formatted with ``fmt``, else ``-`` (bools, strings, 1e400,
    400-digit ints)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    try:
        as_float = float(value)
    except OverflowError:
        return "-"
    return format(as_float, fmt) if math.isfinite(as_float) else "-"


def age(ts: Any, now: float | None = None) -> str:
    """``12s`` since ``ts`` (wall clock seconds), ``-`` when unknown."""
    if number(ts) == "-":
        return "-"
    now = time.time() if now is None else now
    return f"{max(0.0, now - float(ts)):.0f}s"


def actors_table(rows: list[dict[str, Any]]) -> Table:
    """The ``devfleet actors`` table from :meth:`ActorOps.actors` rows."""
    t = Table(box=None, pad_edge=False)
    for col in ("NODE", "ACTOR", "STATE", "RESTARTS", "LAST ERROR"):
        t.add_column(col)
    for row in rows:
        t.add_row(
            cell(row.get("node")),
            cell(row.get("name")),
            cell(row.get("state", "-")),
            cell(row.get("restarts", "-")),
            cell(row.get("last_error") or "", 60),
        )
    return t


def config_renderables(result: Any) -> list[Any]:
    """What ``devfleet config get`` prints for the node's answer."""
    from ..output import json_text

    info = result if isinstance(result, dict) else {"config": result}
    kept = ", ".join(_str(v) for v in _list(info.get("kept_versions"))) or "none"
    head = Text(f"config version {_str(info.get('config_version'))} (kept: {kept})")
    return [head, Text(json_text(info.get("config")))]  # JSON: pastes back into config set


def components_renderables(info: Any) -> list[Any]:
    """What ``devfleet components`` prints for the node's answer: a table and one red
    line per component that failed to load."""
    info = info if isinstance(info, dict) else {}
    configured = _dict(info.get("configured"))
    available = {}
    for item in _list(info.get("available")):
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
            available[item["name"]] = item
    t = Table(box=None, pad_edge=False)
    for col in ("COMPONENT", "STATE", "HEALTH", "VERSION", "DIST", "RESTARTS"):
        t.add_column(col)
    for name in sorted({*(str(k) for k in configured), *available}):
        state = _dict(configured.get(name))
        avail = available.get(name, {})
        health = state.get("health")
        if health is None:
            shown = "-"
        else:
            ok = health.get("ok") if isinstance(health, dict) else health
            shown = "ok" if ok else "unhealthy"
        t.add_row(
            cell(name),
            cell(state.get("state", "available")),
            cell(shown),
            cell(state.get("version") or avail.get("version") or "-"),
            cell(state.get("dist") or avail.get("dist") or "-"),
            cell(state.get("restarts", "-")),
        )
    out: list[Any] = [t]
    for err in _list(info.get("errors")):
        err = _dict(err)
        out.append(Text(f"failed to load {_str(err.get('name'))}: {_str(err.get('error'))}", style="red"))
    return out


def drift_lines(drifts: list[Any]) -> list[str]:
    """One line per :class:`~devfleet_command.model.Drift` (``no drift`` when none)."""
    from ..output import json_text

    if not drifts:
        return ["no drift"]
    lines = []
    for d in drifts:
        diffs = ", ".join(
            f"{k}: {json_text(b, indent=None)} → {json_text(a, indent=None)}"
            for k, (a, b) in d.differences.items()
        )
        err = f" error: {_str(d.error.get('message'))}" if isinstance(d.error, dict) else ""
        lines.append(f"{d.node}: {diffs}{err}")
    return lines


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
