"""The wire contract: every topic devfleet uses and every payload schema.

This module is the only place that formats or parses a topic string. Other
modules call the builders (``node_topic(node, "meta")``) and the one parser
(:func:`parse_topic`). ``docs/contract.md`` documents the same table
(:data:`TOPICS`), and a test holds the two together.

Baseline is MQTT 3.1.1: correlation ids, reply topics, expiry and signatures
travel in the JSON payload. MQTT 5 properties are added on top by the
transports where the broker offers them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from .errors import Code, ContractError
from .schema import Field, Schema

__all__ = [
    "ACTOR_NAME_PATTERN",
    "COMMAND_SCHEMA",
    "DEFAULT_POLL_INTERVAL",
    "DESCRIPTIONS",
    "ID_PATTERN",
    "INPUT_LEVEL",
    "MAP_FRAME_SCHEMA",
    "MAP_POSE_SCHEMA",
    "MAX_CODE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "NAME_PATTERN",
    "PROTOCOL_VERSION",
    "RECEIPT_SCHEMA",
    "SPAWN_SCHEMA",
    "STATUS_SCHEMA",
    "TOPICS",
    "Command",
    "Receipt",
    "TopicMatch",
    "TopicSpec",
    "actor_id",
    "agent_topic",
    "by_name_task_topic",
    "check_id",
    "check_name",
    "component_input_filter",
    "component_topic",
    "decode",
    "encode",
    "expired",
    "fleet_command_topic",
    "group_command_topic",
    "handoff_topic",
    "job_filter",
    "job_node_topic",
    "job_topic",
    "map_topic",
    "new_id",
    "node_command_topic",
    "node_filter",
    "node_id",
    "node_reply_topic",
    "node_telemetry_topic",
    "node_topic",
    "parse_topic",
    "pool_share_filter",
    "pool_topic",
    "reply_inbox",
    "subscriptions_for_console",
    "subscriptions_for_node",
    "task_assign_filter",
    "task_topic",
    "topic_matches",
]

PROTOCOL_VERSION: Final = "1"
"""Bumped only on a breaking change of this contract; carried in ``meta``."""

MAX_PAYLOAD_BYTES: Final = 512 * 1024
"""Inbound payloads larger than this are refused with ``too_large`` (a spawn's code
may be 256 KiB; the rest is headroom for the envelope)."""

NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
"""Node, group, component and actor names: one topic level, no wildcards, no ``$``."""

ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
"""Command ids, task uuids, reply ids, actor ids."""

_NAME_RE = re.compile(NAME_PATTERN)
_ID_RE = re.compile(ID_PATTERN)

# --------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------

NODE_DESCRIPTIONS: Final = ("meta", "status", "state", "cfg")
DESCRIPTIONS = NODE_DESCRIPTIONS

#: Per-node leaves that take no extra level. Retained ones first.
_NODE_LEAVES: Final = frozenset(
    {
        "meta",
        "status",
        "state",
        "cfg",
        "cfg/desired",
        "heartbeat",
        "logs",
        "receipts",
        # Wactorz remote-node topics (seed 001)
        "spawn",
        "stop",
        "stop_all",
        "list",
        "agents",
        "migrate",
        "migrate_result",
        # The packaged Wactorz runner (wactorz-node): its presence and the verbs its main sends
        "manifest",
        "desired_state",
        "restart",
        "restart_agent",
        "state_return",
        "spawn_ack",
    }
)


@dataclass(frozen=True)
class TopicSpec:
    """One row of the topic table (and of ``docs/contract.md``)."""

    pattern: str
    direction: str  # "node→", "→node", "node→node", "any"
    retained: bool
    qos: int
    doc: str


TOPICS: Final[tuple[TopicSpec, ...]] = (
    TopicSpec(
        "nodes/{node}/meta",
        "node→",
        True,
        1,
        "Birth: who the node is (hardware, versions, components).",
    ),
    TopicSpec("nodes/{node}/status", "node→", True, 1, "online / offline (clean stop) / lost (the will)."),
    TopicSpec(
        "nodes/{node}/state",
        "node→",
        True,
        1,
        "What runs: components and actors with their supervisor state.",
    ),
    TopicSpec("nodes/{node}/cfg", "node→", True, 1, "Reported config with its config_version."),
    TopicSpec(
        "nodes/{node}/cfg/desired",
        "→node",
        True,
        1,
        "Desired config, a signed-able `configure` command kept retained.",
    ),
    TopicSpec(
        "nodes/{node}/heartbeat",
        "node→",
        True,
        0,
        "Every heartbeat interval: counts, uptime, CPU/memory/disk (the last one retained).",
    ),
    TopicSpec(
        "nodes/{node}/telemetry/{metric}",
        "node→",
        False,
        0,
        "One metric sample (cpu, memory, disk), paced by config.",
    ),
    TopicSpec(
        "nodes/{node}/logs",
        "node→",
        False,
        1,
        "A batch of the agent's log records, with the dropped count.",
    ),
    TopicSpec("nodes/{node}/cmd/{verb}", "→node", False, 1, "A command envelope for one node."),
    TopicSpec("nodes/{node}/receipts", "node→", False, 1, "Receipts for commands that named no reply_to."),
    TopicSpec(
        "nodes/{node}/components/{component}/{leaf}",
        "node→",
        False,
        0,
        "A component's own publications (state is retained).",
    ),
    TopicSpec(
        "nodes/{node}/components/{component}/in/{leaf}",
        "→node",
        False,
        0,
        "Input a component subscribes to through its context (the ROS bridge's mqtt2ros).",
    ),
    TopicSpec(
        "nodes/{node}/handoff/{target}",
        "node→node",
        False,
        1,
        "Migration: the spawn of an actor moving from `node` to `target`.",
    ),
    TopicSpec("fleet/cmd/{verb}", "→node", False, 1, "A command for every node."),
    TopicSpec("groups/{group}/cmd/{verb}", "→node", False, 1, "A command for every node in a group."),
    TopicSpec(
        "replies/{inbox}",
        "node→",
        False,
        1,
        "Receipts for a console that named this inbox in reply_to.",
    ),
    TopicSpec(
        "nodes/{node}/spawn",
        "→node",
        True,
        1,
        "Wactorz: spawn an actor (retained; the node clears it).",
    ),
    TopicSpec("nodes/{node}/stop", "→node", False, 1, 'Wactorz: stop one actor `{"name": ...}`.'),
    TopicSpec(
        "nodes/{node}/stop_all",
        "→node",
        False,
        1,
        "Wactorz: stop every actor and shut the agent down.",
    ),
    TopicSpec("nodes/{node}/list", "→node", False, 1, "Wactorz: ask for the actor list."),
    TopicSpec("nodes/{node}/agents", "node→", False, 1, "Wactorz: the actor list."),
    TopicSpec("nodes/{node}/migrate", "→node", False, 1, "Wactorz: move an actor to `target_node`."),
    TopicSpec("nodes/{node}/migrate_result", "node→", False, 1, "Wactorz: the outcome of a migration."),
    TopicSpec(
        "nodes/{node}/desired_state",
        "→node",
        True,
        1,
        "Wactorz: the actors a node should run (`agents`: spawn configs); missing ones are started.",
    ),
    TopicSpec("nodes/{node}/restart", "→node", False, 1, "Wactorz: restart the node's runner."),
    TopicSpec(
        "nodes/{node}/restart_agent",
        "→node",
        False,
        1,
        'Wactorz: restart one actor `{"name": ...}` with its config and state.',
    ),
    TopicSpec(
        "nodes/{node}/state_return",
        "node→",
        False,
        1,
        "Migration through a main: the actor's config and state, handed back (`migrate` to `@main`).",
    ),
    TopicSpec(
        "nodes/{node}/spawn_ack",
        "node→",
        False,
        1,
        "Migration through a main: the target started (or `refused`) the spawn with this `migration_token`.",
    ),
    TopicSpec(
        "nodes/{node}/manifest",
        "node→",
        True,
        1,
        "Wactorz packaged runner: what the machine is (retained); with its heartbeat, its presence.",
    ),
    TopicSpec(
        "nodes/{node}/reply/{id}",
        "node→node",
        False,
        1,
        "Wactorz: the answer to a send_to request.",
    ),
    TopicSpec("agents/{id}/heartbeat", "node→", False, 0, "Wactorz: one actor's heartbeat, with its node."),
    TopicSpec("agents/{id}/logs", "node→", False, 0, "Wactorz: an actor's log lines and alerts."),
    TopicSpec("agents/{id}/resume", "node→", True, 1, "An actor's capabilities for work trading."),
    TopicSpec(
        "agents/by-name/{name}/task",
        "→node",
        False,
        1,
        "Wactorz: a task for the actor with that name, wherever it runs.",
    ),
    TopicSpec(
        "maps/{map}",
        "any",
        True,
        1,
        "A shared map's frame (size, regions, items) for map views.",
    ),
    TopicSpec(
        "tasks/{task}/request",
        "any",
        False,
        1,
        "Work trading: a request any capable actor may bid on.",
    ),
    TopicSpec("tasks/{task}/proposal/{agent}", "any", False, 1, "Work trading: one actor's bid."),
    TopicSpec("tasks/{task}/assign/{agent}", "any", False, 2, "Work trading: the requester's choice."),
    TopicSpec(
        "tasks/{task}/output/{step}",
        "any",
        True,
        1,
        "Work trading: a step's result (retained for late joiners).",
    ),
    TopicSpec("jobs/{job}/spec", "any", True, 1, "Fleet job: what it does, to which nodes, in which stages."),
    TopicSpec("jobs/{job}/status", "any", True, 1, "Fleet job: its state, stage and per-stage counts."),
    TopicSpec("jobs/{job}/nodes/{node}", "any", True, 1, "Fleet job: one node's progress and command ids."),
    TopicSpec("jobs/{job}/control", "any", True, 1, "Fleet job: an operator's request (`abort`)."),
    TopicSpec(
        "pools/{pool}/jobs/{job}",
        "any",
        False,
        1,
        "Worker pools: one job, taken by one member through `$share/{pool}/pools/{pool}/jobs/+`.",
    ),
    TopicSpec(
        "pools/{pool}/done/{job}",
        "node→",
        False,
        1,
        "Worker pools: a job's result, the application-level acknowledgement.",
    ),
)


def check_name(name: Any, what: str = "name") -> str:
    """Return ``name`` if it is a valid single-level name, else raise ContractError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ContractError(
            f"{what} {name!r} is not valid: 1-64 characters of letters, digits, '.', '_', '-',"
            " starting with a letter or digit"
        )
    return name


def check_id(value: Any, what: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise ContractError."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ContractError(
            f"{what} {value!r} is not valid: 1-64 characters of letters, digits, '.', '_', ':', '-'"
        )
    return value


def node_topic(node: str, leaf: str) -> str:
    """``nodes/{node}/{leaf}`` for a leaf that takes no further level (meta, spawn, ...)."""
    check_name(node, "node")
    if leaf not in _NODE_LEAVES:
        raise ValueError(f"unknown node topic leaf {leaf!r}")
    return f"nodes/{node}/{leaf}"


_FILTER_LEAVES: Final = frozenset({"#", "telemetry/+", "components/+/state"})


def node_filter(node: str | None, leaf: str) -> str:
    """A subscription filter under ``nodes/``: ``node`` None means every node (``+``).

    ``leaf`` is a node leaf (``logs``, ``meta``, ...), ``telemetry/+``,
    ``components/+/state`` or ``#`` (everything the node has).
    """
    if leaf not in _NODE_LEAVES and leaf not in _FILTER_LEAVES:
        raise ValueError(f"unknown node filter leaf {leaf!r}")
    return f"nodes/{'+' if node is None else check_name(node, 'node')}/{leaf}"


def node_telemetry_topic(node: str, metric: str) -> str:
    return f"nodes/{check_name(node, 'node')}/telemetry/{check_name(metric, 'metric')}"


def node_command_topic(node: str, verb: str) -> str:
    return f"nodes/{check_name(node, 'node')}/cmd/{check_name(verb, 'command')}"


def fleet_command_topic(verb: str) -> str:
    return f"fleet/cmd/{check_name(verb, 'command')}"


def group_command_topic(group: str, verb: str) -> str:
    return f"groups/{check_name(group, 'group')}/cmd/{check_name(verb, 'command')}"


def component_topic(node: str, component: str, leaf: str) -> str:
    """``nodes/{node}/components/{component}/{leaf}``; ``leaf`` may have levels."""
    check_name(node, "node")
    check_name(component, "component")
    for part in leaf.split("/"):
        check_name(part, "component subtopic")
    return f"nodes/{node}/components/{component}/{leaf}"


INPUT_LEVEL: Final = "in"
"""The level under a component's topics where its inbound subscriptions live."""


def component_input_filter(node: str, component: str, leaf: str) -> str:
    """``nodes/{node}/components/{component}/in/{leaf}``: the only filters a component
    may subscribe to (its own input subtree, never another node's or the agent's topics).

    ``leaf`` may have levels, ``+`` for one level and a final ``#``.

    Raises:
        ContractError: a bad name, or a wildcard that is not a whole level.
    """
    check_name(node, "node")
    check_name(component, "component")
    parts = leaf.split("/")
    for i, part in enumerate(parts):
        if part == "+" or (part == "#" and i == len(parts) - 1):
            continue
        check_name(part, "component input subtopic")
    return f"nodes/{node}/components/{component}/{INPUT_LEVEL}/{leaf}"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter ``topic_filter`` (``+`` and a final ``#``)."""
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def node_reply_topic(node: str, reply_id: str) -> str:
    return f"nodes/{check_name(node, 'node')}/reply/{check_id(reply_id, 'reply id')}"


def handoff_topic(source: str, target: str) -> str:
    """``nodes/{source}/handoff/{target}``: a migrating actor's spawn, published by the
    source under its own subtree, so a per-node broker ACL lets exactly the source
    write it and the target read it (see deploy/mosquitto/acl)."""
    return f"nodes/{check_name(source, 'node')}/handoff/{check_name(target, 'node')}"


def reply_inbox(client: str) -> str:
    """The topic a console names in ``reply_to`` to receive its receipts."""
    return f"replies/{check_id(client, 'inbox')}"


def agent_topic(actor: str, leaf: str) -> str:
    """``agents/{id}/heartbeat|logs|resume``."""
    if leaf not in ("heartbeat", "logs", "resume"):
        raise ValueError(f"unknown agent topic leaf {leaf!r}")
    return f"agents/{check_id(actor, 'actor id')}/{leaf}"


def by_name_task_topic(name: str) -> str:
    return f"agents/by-name/{check_name(name, 'actor name')}/task"


def task_envelope(payload: Any, reply_topic: str) -> dict[str, Any]:
    """A by-name task as devfleet nodes and both Wactorz runners read it.

    A JSON object is merged with the envelope (what a Wactorz caller sends, so a
    Wactorz handler sees its own keys); any other value, or an object with ``_``
    keys of its own or a lone ``payload`` key, travels as ``payload``. Source:
    ``send_to`` in wactorz/agents/dynamic/messaging.py (wactorz 0.7.2).
    """
    envelope: dict[str, Any] = {"_remote_task": True, "_reply_topic": reply_topic}
    if (
        isinstance(payload, dict)
        and set(payload) != {"payload"}
        and not any(str(k).startswith("_") for k in payload)
    ):
        return {**payload, **envelope}
    return {**envelope, "payload": payload}


def map_topic(name: str) -> str:
    """``maps/{map}``: the retained frame of a shared map (see :data:`MAP_FRAME_SCHEMA`).

    Each node on the map publishes its pose on its component topic
    ``nodes/{node}/components/{component}/map`` (see :data:`MAP_POSE_SCHEMA`).
    """
    return f"maps/{check_name(name, 'map')}"


def task_topic(task: str, leaf: str, who: str | None = None) -> str:
    """``tasks/{task}/request``, ``.../proposal/{agent}``, ``.../assign/{agent}``,
    ``.../output/{step}``."""
    check_id(task, "task id")
    if leaf == "request":
        if who is not None:
            raise ValueError("a task request takes no agent")
        return f"tasks/{task}/request"
    if leaf not in ("proposal", "assign", "output") or who is None:
        raise ValueError(f"bad task topic leaf {leaf!r}")
    return f"tasks/{task}/{leaf}/{check_id(who, leaf)}"


JOB_LEAVES: Final = ("spec", "status", "control")


def job_topic(job: str, leaf: str) -> str:
    """``jobs/{job}/spec|status|control``: a fleet job's retained description
    (see :mod:`devfleet_command.jobs`)."""
    if leaf not in JOB_LEAVES:
        raise ValueError(f"bad job topic leaf {leaf!r}")
    return f"jobs/{check_id(job, 'job id')}/{leaf}"


def job_node_topic(job: str, node: str) -> str:
    """``jobs/{job}/nodes/{node}``: one node's retained progress in a job."""
    return f"jobs/{check_id(job, 'job id')}/nodes/{check_name(node, 'node')}"


def job_filter(job: str | None = None) -> str:
    """The filter for every retained topic of one job (``None``: of every job)."""
    return f"jobs/{check_id(job, 'job id') if job is not None else '+'}/#"


def task_assign_filter(agent: str) -> str:
    """``tasks/+/assign/{agent}``: every assignment for one agent id."""
    return f"tasks/+/assign/{check_id(agent, 'agent id')}"


def pool_topic(pool: str, leaf: str, job: str) -> str:
    """``pools/{pool}/jobs/{job}`` or ``pools/{pool}/done/{job}``."""
    if leaf not in ("jobs", "done"):
        raise ValueError(f"bad pool topic leaf {leaf!r}")
    return f"pools/{check_name(pool, 'pool')}/{leaf}/{check_id(job, 'job id')}"


def pool_share_filter(pool: str) -> str:
    """``$share/{pool}/pools/{pool}/jobs/+``: the shared subscription of a pool's
    members (MQTT 5 shared subscriptions; mosquitto offers them to 3.1.1 clients too)."""
    name = check_name(pool, "pool")
    return f"$share/{name}/pools/{name}/jobs/+"


@dataclass(frozen=True)
class TopicMatch:
    """What an inbound topic addresses.

    ``kind`` is the table's leaf name (``meta``, ``cmd``, ``spawn``, ``telemetry``,
    ``agent_heartbeat``, ``task``, ...); the other fields are set where the topic
    names them.
    """

    kind: str
    node: str | None = None
    verb: str | None = None
    group: str | None = None
    component: str | None = None
    leaf: str | None = None
    ident: str | None = None
    name: str | None = None
    scope: str | None = None  # "node", "fleet" or "group" for commands


_SEG = r"[^/#+$][^/#+]*"
_TOPIC_RE = re.compile(
    rf"""^(?:
      nodes/(?P<node>{_SEG})/(?:
          cmd/(?P<node_verb>{_SEG})
        | telemetry/(?P<metric>{_SEG})
        | components/(?P<component>{_SEG})/(?P<cleaf>{_SEG}(?:/{_SEG})*)
        | reply/(?P<reply>{_SEG})
        | handoff/(?P<handoff>{_SEG})
        | (?P<leaf>cfg/desired|{"|".join(sorted(_NODE_LEAVES - {"cfg/desired"}))})
      )
    | fleet/cmd/(?P<fleet_verb>{_SEG})
    | groups/(?P<group>{_SEG})/cmd/(?P<group_verb>{_SEG})
    | replies/(?P<inbox>{_SEG})
    | maps/(?P<map>{_SEG})
    | agents/by-name/(?P<by_name>{_SEG})/task
    | agents/(?P<actor>{_SEG})/(?P<aleaf>heartbeat|logs|resume)
    | tasks/(?P<task>{_SEG})/(?:(?P<treq>request)|(?P<tleaf>proposal|assign|output)/(?P<twho>{_SEG}))
    | jobs/(?P<fjob>{_SEG})/(?:(?P<jleaf>spec|status|control)|nodes/(?P<jnode>{_SEG}))
    | pools/(?P<pool>{_SEG})/(?P<pleaf>jobs|done)/(?P<job>{_SEG})
    )$""",
    re.VERBOSE,
)


_SIMPLE_LEAVES: Final = frozenset(leaf for leaf in _NODE_LEAVES if "/" not in leaf)


def parse_topic(topic: str) -> TopicMatch | None:
    """Classify an inbound topic; ``None`` when it is not part of the contract."""
    # Fast path for the hot shapes (a console's retained burst, telemetry, an agent's
    # commands): same answers as the regular expression below, without it.
    parts = topic.split("/")
    if len(parts) in (3, 4) and parts[0] == "nodes":
        node = parts[1]
        if node and node[0] != "$" and "+" not in node and "#" not in node:
            if len(parts) == 3 and parts[2] in _SIMPLE_LEAVES:
                return TopicMatch(parts[2], node=node)
            if len(parts) == 4 and parts[2] in ("telemetry", "cmd"):
                last = parts[3]
                if last and last[0] != "$" and "+" not in last and "#" not in last:
                    if parts[2] == "cmd":
                        return TopicMatch("cmd", node=node, verb=last, scope="node")
                    return TopicMatch("telemetry", node=node, leaf=last)
    m = _TOPIC_RE.match(topic)
    if m is None:
        return None
    g = m.groupdict()
    if g["node_verb"] is not None:
        return TopicMatch("cmd", node=g["node"], verb=g["node_verb"], scope="node")
    if g["fleet_verb"] is not None:
        return TopicMatch("cmd", verb=g["fleet_verb"], scope="fleet")
    if g["group_verb"] is not None:
        return TopicMatch("cmd", group=g["group"], verb=g["group_verb"], scope="group")
    if g["metric"] is not None:
        return TopicMatch("telemetry", node=g["node"], leaf=g["metric"])
    if g["component"] is not None:
        return TopicMatch("component", node=g["node"], component=g["component"], leaf=g["cleaf"])
    if g["reply"] is not None:
        return TopicMatch("reply", node=g["node"], ident=g["reply"])
    if g["handoff"] is not None:
        return TopicMatch("handoff", node=g["node"], name=g["handoff"])
    if g["leaf"] is not None:
        return TopicMatch(g["leaf"].replace("/", "_"), node=g["node"])
    if g["inbox"] is not None:
        return TopicMatch("inbox", ident=g["inbox"])
    if g["map"] is not None:
        return TopicMatch("map", name=g["map"])
    if g["by_name"] is not None:
        return TopicMatch("by_name_task", name=g["by_name"])
    if g["actor"] is not None:
        return TopicMatch(f"agent_{g['aleaf']}", ident=g["actor"])
    if g["fjob"] is not None:  # a fleet job; the node of its record is a name, not the topic's node
        return TopicMatch("job", ident=g["fjob"], leaf=g["jleaf"] or "nodes", name=g["jnode"])
    if g["pool"] is not None:
        return TopicMatch(f"pool_{g['pleaf']}", name=g["pool"], ident=g["job"])
    if g["treq"] is not None:
        return TopicMatch("task", ident=g["task"], leaf="request")
    return TopicMatch("task", ident=g["task"], leaf=g["tleaf"], name=g["twho"])


def subscriptions_for_node(node: str, groups: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """The filters an agent subscribes to, with their QoS."""
    check_name(node, "node")
    subs = [
        (f"nodes/{node}/cmd/+", 1),
        (f"nodes/{node}/cfg/desired", 1),
        (f"nodes/{node}/status", 1),  # to repair a stale will that overwrote our birth
        ("fleet/cmd/+", 1),
        (f"nodes/{node}/spawn", 1),
        (f"nodes/{node}/stop", 1),
        (f"nodes/{node}/stop_all", 1),
        (f"nodes/{node}/list", 1),
        (f"nodes/{node}/migrate", 1),
        (f"nodes/{node}/desired_state", 1),
        (f"nodes/{node}/restart", 1),
        (f"nodes/{node}/restart_agent", 1),
        (f"nodes/{node}/reply/+", 1),
        (f"nodes/+/handoff/{node}", 1),  # migrations to this node, from any source
        ("agents/by-name/+/task", 1),
    ]
    subs.extend((f"groups/{check_name(g, 'group')}/cmd/+", 1) for g in groups)
    return subs


def subscriptions_for_console() -> list[tuple[str, int]]:
    """The filters the console's fleet model subscribes to.

    The retained descriptions at QoS 0: mosquitto's default ``max_queued_messages
    1000`` drops QoS 1 messages to a subscriber that is behind, and a fleet of ~250
    nodes already has 1,000 retained descriptions. At QoS 0 they are written
    straight to the connection (a console reconnecting gets them all again), so the
    console's own QoS 1 traffic (its sync marker, receipts) is not queued behind them.
    """
    return [
        ("nodes/+/meta", 0),
        ("nodes/+/status", 0),
        ("nodes/+/state", 0),
        ("nodes/+/cfg", 0),
        ("nodes/+/cfg/desired", 0),
        ("nodes/+/heartbeat", 0),
        ("nodes/+/manifest", 0),  # a Wactorz packaged runner's presence (with its heartbeat)
        ("nodes/+/agents", 0),  # its answer to a list (the console asks one it cannot confirm)
        ("nodes/+/telemetry/+", 0),
        ("agents/+/heartbeat", 0),
    ]


# --------------------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------------------


def new_id() -> str:
    """A fresh command or request id."""
    return uuid.uuid4().hex


def actor_id(name: str) -> str:
    """The Wactorz actor id for an actor name: stable across restarts and nodes."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"wactorz.actor.{name}"))


def node_id(node: str) -> str:
    """The Wactorz node id for a node name."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"wactorz.node.{node}"))


# --------------------------------------------------------------------------------------
# Payload encoding
# --------------------------------------------------------------------------------------


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as every devfleet payload is sent."""
    return _ENCODE(obj).encode()


def decode(payload: bytes | bytearray | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Parse an inbound JSON payload; raise ContractError (``too_large``/``bad_json``)."""
    if len(payload) > max_bytes:
        raise ContractError(
            f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}", code=Code.TOO_LARGE
        )
    try:
        if isinstance(payload, (bytes, bytearray)):
            payload = payload.decode("utf-8")
        if payload[-1:] == "}" and payload[:1] == "{":
            # The usual payload, an object with no surrounding whitespace: scan it directly
            # (what JSONDecoder.decode does after its two whitespace regexes).
            try:
                value, end = _SCAN(payload, 0)
            except StopIteration:
                pass  # malformed: the full decode below raises with the usual message
            else:
                if end == len(payload):
                    return value
        return _DECODER.decode(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContractError(f"payload is not valid JSON: {exc}", code=Code.BAD_JSON) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every payload: ``json.loads`` with any keyword argument builds a new
# JSONDecoder (and scanner) per call, which cost a third of the console's time per message.
_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)
_SCAN: Final = _DECODER.scan_once  # type: ignore[attr-defined]
# And one encoder: ``json.dumps`` with keyword arguments builds a JSONEncoder per call
# too (an agent encodes three payloads a command; issue 20). Same output.
_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


# --------------------------------------------------------------------------------------
# Payload schemas
# --------------------------------------------------------------------------------------

_TS = Field("float", min=0, doc="Unix time in seconds (sender's clock).")
_VERSION = Field("int", required=True, min=0, doc="Description version, increasing within a session.")
_SESSION = Field("int", required=True, min=0, doc="The agent's connection counter, persisted on the device.")

STATUS_SCHEMA: Final = Schema(
    "status",
    {
        "status": Field(
            "str",
            required=True,
            choices=("online", "offline", "lost"),
            doc="online (birth), offline (clean stop) or lost (the will).",
        ),
        "node": Field("str", pattern=NAME_PATTERN, doc="The node's name, as in the topic."),
        "version": _VERSION,
        "session": _SESSION,
        "ts": _TS,
        "instance": Field(
            "str", max=64, doc="Random per agent process: two processes with one node name differ in it."
        ),
        "name_clash": Field(
            "dict", doc="Set while another live process uses this node name: its instance, session, since."
        ),
    },
    extra="allow",
)
"""``nodes/{node}/status``; its envelope fields (node, session, version, ts, instance)
begin every retained description (see :mod:`devfleet_base.payload_schemas`)."""

_SIG = Field(
    "dict",
    schema=Schema(
        "_sig",
        {
            "kid": Field("str", required=True, pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"),
            "seq": Field("int", required=True, min=0),
            "exp": Field("int", nullable=True, min=0),
            "sig": Field("str", required=True, pattern=r"[0-9a-f]{128}"),
            "cert": Field("dict"),
        },
    ),
    doc="Ed25519 signature over kid, seq, exp, topic and payload (see signing).",
)

COMMAND_SCHEMA: Final = Schema(
    "command",
    {
        "id": Field("str", required=True, pattern=ID_PATTERN, doc="Unique per command; dedupes redelivery."),
        "args": Field("dict", default={}, max=64, doc="The command's arguments."),
        "ts": _TS,
        "expires_at": Field("float", nullable=True, min=0, doc="Refused with `expired` after this time."),
        "reply_to": Field("str", nullable=True, pattern=r"replies/" + ID_PATTERN, doc="Where receipts go."),
        "_sig": _SIG,
    },
)

RECEIPT_SCHEMA: Final = Schema(
    "receipt",
    {
        "id": Field("str", required=True, pattern=ID_PATTERN),
        "node": Field("str", required=True, pattern=NAME_PATTERN),
        "cmd": Field("str", required=True, max=64),
        "status": Field("str", required=True, choices=("accepted", "ok", "error")),
        "code": Field("str", nullable=True, max=64),
        "message": Field("str", nullable=True, max=4096),
        "result": Field("any", nullable=True),
        "ts": _TS,
        "_sig": _SIG,
    },
)


# Maps: a shared frame (retained on maps/{map}) and each node's pose on it
# (nodes/{node}/components/{component}/map). Units: metres, radians, colours "#rrggbb".

_COLOR = Field("str", pattern=r"#[0-9a-fA-F]{6}", doc="a colour as #rrggbb")
_XY = Field("list", min=2, max=2, items=Field("float"))

MAP_FRAME_SCHEMA: Final = Schema(
    "map frame",
    {
        "map": Field("str", required=True, pattern=NAME_PATTERN, doc="the map's name"),
        "width": Field("float", required=True, min=0, doc="metres along x"),
        "height": Field("float", required=True, min=0, doc="metres along y"),
        "regions": Field(
            "list",
            default=[],
            max=256,
            items=Field(
                "dict",
                schema=Schema(
                    "region",
                    {
                        "name": Field("str", required=True, max=64),
                        "x0": Field("float", required=True),
                        "y0": Field("float", required=True),
                        "x1": Field("float", required=True),
                        "y1": Field("float", required=True),
                        "color": _COLOR,
                    },
                ),
            ),
            doc="named rectangles (e.g. the nest)",
        ),
        "items": Field("list", default=[], max=10_000, items=_XY, doc="points of interest [x, y]"),
        "ts": Field("float", nullable=True, min=0, doc="when the frame was taken (Unix seconds)"),
    },
)
"""A map's frame: its size, named regions and items, retained on ``maps/{map}``."""

MAP_POSE_SCHEMA: Final = Schema(
    "map pose",
    {
        "map": Field("str", required=True, pattern=NAME_PATTERN, doc="the map this pose is on"),
        "x": Field("float", required=True, doc="metres"),
        "y": Field("float", required=True, doc="metres"),
        "theta": Field("float", default=0.0, doc="heading in radians, counter-clockwise from +x"),
        "color": _COLOR,
        "label": Field("str", default="", max=64, doc="a short state word shown beside the marker"),
        "ts": Field("float", nullable=True, min=0, doc="when the pose was taken (Unix seconds)"),
    },
)
"""A node's pose on a map, published (not retained) on ``nodes/{node}/components/{c}/map``."""


# The Wactorz spawn payload (nodes/{node}/spawn); the agent's SpawnSpec wraps it.

ACTOR_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
"""An actor name: it appears in topics (``agents/by-name/{name}/task``) and file names."""

MAX_CODE_BYTES = 256 * 1024
"""The largest ``code`` accepted, in UTF-8 bytes."""

DEFAULT_POLL_INTERVAL = 5.0
"""Seconds between ``process()`` calls when the spawn does not say (Wactorz's default)."""

SPAWN_SCHEMA = Schema(
    "spawn",
    {
        "name": Field(
            "str",
            required=True,
            min=1,
            max=64,
            pattern=ACTOR_NAME_PATTERN,
            doc="unique actor name on the node",
        ),
        "node": Field("str", nullable=True, default=None, max=128, doc="target node"),
        "type": Field("str", default="dynamic", min=1, max=64, doc="actor type"),
        "description": Field("str", default="", max=4096, doc="one line for listings"),
        "poll_interval": Field(
            "float",
            nullable=True,
            default=DEFAULT_POLL_INTERVAL,
            min=0.01,
            max=86_400.0,
            doc="seconds between process() calls; null = event-driven",
        ),
        "max_restarts": Field("int", default=5, min=0, max=1000, doc="restart budget"),
        "restart_delay": Field("float", default=3.0, min=0.0, max=3600.0, doc="first back-off"),
        "install": Field(
            "list",
            default=[],
            max=64,
            items=Field("str", min=1, max=256),
            doc="pip requirements installed before compiling",
        ),
        "code": Field("str", required=True, min=1, max=MAX_CODE_BYTES, doc="Python source of the actor"),
        "replace": Field("bool", default=False, doc="stop a running actor of that name first"),
    },
    extra="allow",
)
"""The schema of a spawn payload; unknown keys are allowed and kept."""


def expired(expires_at: float | None, now: float | None = None) -> bool:
    """Whether a deadline in Unix seconds has passed (``None`` never expires); the one
    expiry rule of commands, control messages and work-trading assignments."""
    return expires_at is not None and (now if now is not None else time.time()) > expires_at


@dataclass(frozen=True)
class Command:
    """A validated inbound command."""

    verb: str
    id: str
    args: dict[str, Any]
    ts: float | None = None
    expires_at: float | None = None
    reply_to: str | None = None
    scope: str = "node"

    @classmethod
    def from_wire(cls, verb: str, payload: Any, *, scope: str = "node") -> Command:
        """Validate a decoded envelope; raise ContractError."""
        check_name(verb, "command")
        data = COMMAND_SCHEMA.validate(payload)
        return cls(
            verb=verb,
            id=data["id"],
            args=data["args"],
            ts=data.get("ts"),
            expires_at=data.get("expires_at"),
            reply_to=data.get("reply_to"),
            scope=scope,
        )

    def expired(self, now: float | None = None) -> bool:
        return expired(self.expires_at, now)

    @staticmethod
    def envelope(
        args: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        ttl: float | None = 30.0,
        reply_to: str | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Build an outbound command envelope (before signing)."""
        ts = now if now is not None else time.time()
        env: dict[str, Any] = {"id": id or new_id(), "args": args or {}, "ts": ts}
        if ttl is not None:
            env["expires_at"] = ts + ttl
        if reply_to is not None:
            env["reply_to"] = reply_to
        return env


@dataclass(frozen=True)
class Receipt:
    """The answer to a command: ``accepted``, then ``ok`` or ``error``."""

    id: str
    node: str
    cmd: str
    status: str
    code: str | None = None
    message: str | None = None
    result: Any = None
    ts: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "node": self.node,
            "cmd": self.cmd,
            "status": self.status,
            "ts": self.ts or time.time(),
        }
        if self.code is not None:
            out["code"] = self.code
        if self.message is not None:
            out["message"] = self.message
        if self.result is not None:
            out["result"] = self.result
        return out

    @classmethod
    def from_wire(cls, payload: Any) -> Receipt:
        data = RECEIPT_SCHEMA.validate(payload)
        return cls(
            id=data["id"],
            node=data["node"],
            cmd=data["cmd"],
            status=data["status"],
            code=data.get("code"),
            message=data.get("message"),
            result=data.get("result"),
            ts=data.get("ts", 0.0),
        )
