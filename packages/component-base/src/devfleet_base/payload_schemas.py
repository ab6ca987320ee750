"""The schema of every payload a node publishes about itself, for both sides of the wire.

The agent builds ``meta``, ``status``, ``state``, ``cfg``, the heartbeat,
telemetry samples, log batches and its actors' heartbeats
(``devfleet_agent.payloads`` and the subsystems' description providers); its
tests hold every builder's output against these schemas. The console takes the
same payloads in with :meth:`~devfleet_base.schema.Schema.read` (a malformed
required field makes the message invalid, a malformed optional one is
dropped, unknown keys are kept), so what one side writes and the other reads
is written down once. :data:`PAYLOADS` is what ``docs/contract.md`` publishes
as JSON Schema (draft 2020-12) for consoles in other languages; a test holds
the two together (``python -m devfleet_base.payload_schemas`` prints the
section).

Commands, receipts, spawns and maps keep their schemas in :mod:`devfleet_base.contract`
(they travel the other way, or between nodes); :data:`PAYLOADS` lists them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from .contract import (
    COMMAND_SCHEMA,
    MAP_FRAME_SCHEMA,
    MAP_POSE_SCHEMA,
    NAME_PATTERN,
    RECEIPT_SCHEMA,
    SPAWN_SCHEMA,
    STATUS_SCHEMA,
)
from .schema import Field, Schema

__all__ = [
    "ACTOR_HEARTBEAT_SCHEMA",
    "CFG_SCHEMA",
    "DESCRIPTION_SCHEMAS",
    "ENVELOPE",
    "HEARTBEAT_SCHEMA",
    "LOGS_SCHEMA",
    "META_SCHEMA",
    "PAYLOADS",
    "STATE_SCHEMA",
    "STATUS_SCHEMA",
    "TELEMETRY_SCHEMA",
    "PayloadSpec",
    "json_schemas",
    "markdown",
]

# The envelope every retained description starts with (the status schema holds its fields).
ENVELOPE: Final = {key: STATUS_SCHEMA.fields[key] for key in ("node", "session", "version", "ts", "instance")}

_STR = Field("str")
_PERCENT = Field("float", min=0, max=100, doc="Percent.")

META_SCHEMA: Final = Schema(
    "meta",
    {
        **ENVELOPE,
        "hostname": Field("str", doc="The host's name."),
        "os": Field("str", doc="System and release, e.g. `Linux 6.1.0`."),
        "arch": Field("str", doc="Machine architecture, e.g. `armv6l`."),
        "board": Field("str", nullable=True, doc="The device-tree model (a Raspberry Pi's), else null."),
        "python": Field("str", doc="Python version."),
        "python_executable": Field("str", doc="The agent's interpreter."),
        "agent_version": Field("str", doc="devfleet-agent-core version."),
        "protocol": Field("str", doc="The contract's PROTOCOL_VERSION."),
        "commands": Field("dict", values=_STR, doc="Command verb → one line of help."),
        "groups": Field("list", items=Field("str", pattern=NAME_PATTERN), doc="Groups (from the config)."),
        "description": Field("str", doc="Free text (from the config)."),
        "capabilities": Field("list", items=_STR, doc="What the agent offers (commands, config, ...)."),
        "signed_commands": Field("bool", doc="Whether commands must be signed."),
        "started_at": Field("float", min=0, doc="When the agent process started (Unix seconds)."),
        "broker": Field("str", doc="`host:port` of the broker in use."),
        "components": Field("list", items=Field("dict"), doc="Installed components, one object each."),
        "component_errors": Field("list", items=Field("dict"), doc="Components that failed to load."),
        "actor_host": Field("dict", doc="allow_code, allow_install, heartbeat_interval of the actor host."),
    },
    extra="allow",
)
"""``nodes/{node}/meta``, the birth: who the node is."""

STATE_SCHEMA: Final = Schema(
    "state",
    {
        **ENVELOPE,
        "components": Field("dict", values=Field("dict"), doc="Component name → its supervisor state."),
        "actors": Field("dict", values=Field("dict"), doc="Actor name → its supervisor state."),
        "name_clash": STATUS_SCHEMA.fields["name_clash"],
    },
    extra="allow",
)
"""``nodes/{node}/state``: what runs."""

CFG_SCHEMA: Final = Schema(
    "cfg",
    {
        **ENVELOPE,
        "config_version": Field("int", min=0, doc="The reported config's version."),
        "config": Field("dict", doc="The reported node config (see Config)."),
        "applied_id": Field("str", nullable=True, doc="The id of the command that set this version."),
        "updated_at": Field("float", nullable=True, min=0, doc="When this version was set (Unix seconds)."),
        "kept_versions": Field("list", items=Field("int", min=0), doc="Versions kept for rollback."),
        "desired_error": Field(
            "any",
            doc="Why the retained desired config was refused: {id, code, message} (a string is a message).",
        ),
        "recovered_from": Field("str", doc="A damaged newer version on disk that was skipped."),
    },
    extra="allow",
)
"""``nodes/{node}/cfg``: the reported config."""

DESCRIPTION_SCHEMAS: Final = {
    "meta": META_SCHEMA,
    "status": STATUS_SCHEMA,
    "state": STATE_SCHEMA,
    "cfg": CFG_SCHEMA,
}
"""The retained descriptions, by topic leaf."""

HEARTBEAT_SCHEMA: Final = Schema(
    "heartbeat",
    {
        "node": ENVELOPE["node"],
        "node_id": Field("str", doc="Wactorz node id (uuid5 of the name)."),
        "agents": Field("list", doc="Wactorz: the actors' names."),
        "agent_count": Field("int", min=0, doc="Wactorz: how many actors."),
        "broker": Field("str", doc="`host:port` of the broker in use."),
        "timestamp": Field("float", min=0, doc="Unix seconds (Wactorz's name for ts)."),
        "session": Field("int", min=0, doc="The agent's session counter."),
        "uptime": Field("float", min=0, doc="Seconds since the agent started."),
        "status": Field("str", doc="online (a Wactorz node says offline or restarting on its way down)."),
        "commands": Field("dict", values=Field("int", min=0), doc="Commands received, ok, error, duplicate."),
        "logs": Field("dict", values=Field("int", min=0), doc="Log records pending, shipped, dropped."),
        "cpu": _PERCENT,
        "memory": _PERCENT,
        "disk": _PERCENT,
        "agent": Field("dict", doc="The agent process's own rss_mb and cpu percent."),
    },
    extra="allow",
)
"""``nodes/{node}/heartbeat`` (the last one retained)."""

TELEMETRY_SCHEMA: Final = Schema(
    "telemetry",
    {
        "value": Field("number", required=True, doc="The sample."),
        "unit": Field("str", max=16, doc="e.g. `%`."),
        "ts": STATUS_SCHEMA.fields["ts"],
    },
    extra="allow",
)
"""``nodes/{node}/telemetry/{metric}``: one sample."""

LOGS_SCHEMA: Final = Schema(
    "logs",
    {
        "node": ENVELOPE["node"],
        "records": Field(
            "list",
            required=True,
            items=Field(
                "dict",
                schema=Schema(
                    "record",
                    {
                        "seq": Field("int", required=True, min=0, doc="Increasing per agent process."),
                        "ts": Field("float", required=True, min=0, doc="Unix seconds."),
                        "level": Field("str", required=True, doc="DEBUG, INFO, WARNING, ERROR, CRITICAL."),
                        "logger": Field("str", required=True),
                        "msg": Field("str", required=True, max=8192),
                    },
                    extra="allow",
                ),
            ),
            doc="The records, oldest first.",
        ),
        "dropped": Field("int", min=0, default=0, doc="Records dropped since the last batch."),
    },
    extra="allow",
)
"""``nodes/{node}/logs``: a batch of the agent's log records."""


ACTOR_HEARTBEAT_SCHEMA: Final = Schema(
    "actor heartbeat",
    {
        "actor_id": Field("str", doc="uuid5 of the actor's name."),
        "name": Field("str", doc="The actor's name."),
        "node": Field("str", doc="The node it runs on."),
        "node_id": Field("str", doc="Wactorz node id (uuid5 of the node's name)."),
        "state": Field("str", doc="Its supervisor state (running, restarting, failed, ...)."),
        "timestamp": Field("float", min=0, doc="Unix seconds."),
        "restarts": Field("int", min=0, doc="Restarts so far."),
        "max_restarts": Field("int", min=0, doc="Its restart budget."),
        "last_error": Field("str", nullable=True, doc="The last error, or null."),
        "type": Field("str", doc="Actor type."),
        "description": Field("str", doc="One line for listings."),
        "poll_interval": Field(
            "float", nullable=True, doc="Seconds between process() calls; null = event-driven."
        ),
        "uptime": Field("float", min=0, doc="Seconds since it (re)started."),
        "migration": Field("str", nullable=True, doc="The id of the migration that brought it, or null."),
    },
    extra="allow",
)
"""``agents/{id}/heartbeat`` (Wactorz-compatible): one actor, with its node."""


@dataclass(frozen=True)
class PayloadSpec:
    """One published schema: the topic its payloads travel on, and the schema."""

    topic: str
    schema: Schema


PAYLOADS: Final[tuple[PayloadSpec, ...]] = (
    PayloadSpec("nodes/{node}/meta", META_SCHEMA),
    PayloadSpec("nodes/{node}/status", STATUS_SCHEMA),
    PayloadSpec("nodes/{node}/state", STATE_SCHEMA),
    PayloadSpec("nodes/{node}/cfg", CFG_SCHEMA),
    PayloadSpec("nodes/{node}/heartbeat", HEARTBEAT_SCHEMA),
    PayloadSpec("nodes/{node}/telemetry/{metric}", TELEMETRY_SCHEMA),
    PayloadSpec("nodes/{node}/logs", LOGS_SCHEMA),
    PayloadSpec("agents/{id}/heartbeat", ACTOR_HEARTBEAT_SCHEMA),
    PayloadSpec("nodes/{node}/cmd/{verb}", COMMAND_SCHEMA),
    PayloadSpec("replies/{inbox}, nodes/{node}/receipts", RECEIPT_SCHEMA),
    PayloadSpec("nodes/{node}/spawn", SPAWN_SCHEMA),
    PayloadSpec("maps/{map}", MAP_FRAME_SCHEMA),
    PayloadSpec("nodes/{node}/components/{component}/map", MAP_POSE_SCHEMA),
)
"""Every payload schema ``docs/contract.md`` publishes, in its order."""


def json_schemas() -> dict[str, dict[str, Any]]:
    """Topic pattern → JSON Schema (draft 2020-12) of its payloads."""
    return {spec.topic: spec.schema.to_json_schema() for spec in PAYLOADS}


def markdown() -> str:
    """The ``payload-schemas`` section of ``docs/contract.md``: one JSON Schema per topic,
    one property a line (valid JSON still: a reader can copy a block as it is)."""
    parts: list[str] = []
    for topic, schema in json_schemas().items():
        parts.append(f"#### `{topic}`\n\n```json\n{_json_lines(schema)}\n```\n")
    return "\n".join(parts)


def _json_lines(schema: dict[str, Any]) -> str:
    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"]
    items = list(schema.items())
    for n, (key, value) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        if key == "properties":
            lines.append(f"  {one(key)}: {{")
            props = list(value.items())
            for m, (name, sub) in enumerate(props):
                lines.append(f"    {one(name)}: {one(sub)}" + ("," if m < len(props) - 1 else ""))
            lines.append("  }" + comma)
        else:
            lines.append(f"  {one(key)}: {one(value)}{comma}")
    lines.append("}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the doc section
    print(markdown(), end="")
