"""The sans-IO fleet model: feed it topic + payload, it yields events and holds the fleet.

No sockets, no clocks (time comes in through ``now``), no threads. The asyncio
and synchronous clients are thin transports around it; the viz component uses
it too.

Ordering: every retained description (``meta``, ``status``, ``state``, ``cfg``)
carries the agent's ``session`` counter and a ``version`` increasing within the
session. The model keeps, per description, the newest by ``(session, version)``
and ignores anything older or equal (a late will, a duplicate delivery).

Payloads are taken in with the schemas the agent builds them with
(:mod:`devfleet_base.payload_schemas`, :meth:`~devfleet_base.schema.Schema.read`):
a malformed required field makes the message invalid, a malformed optional one is
dropped, unknown keys are kept. So the stored payloads hold only well-typed known
fields, and the views below read them without checking types again.

Hot path: heartbeats and telemetry. The cost per message is one cached topic
lookup, one JSON decode (:mod:`.fastjson`) and a few attribute writes; nothing is
deep-copied (payload dicts are stored as decoded; treat them as read-only). With the
``fast`` extra, ``meta``, ``state`` and ``cfg`` are checked on arrival (JSON object,
``session``, ``version``, ``node``) but kept as received and decoded on first read:
the retained burst of a large fleet builds only the status objects.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from devfleet_base import contract
from devfleet_base.errors import ContractError
from devfleet_base.node_config import NODE_CONFIG_SCHEMA
from devfleet_base.payload_schemas import (
    ACTOR_HEARTBEAT_SCHEMA,
    DESCRIPTION_SCHEMAS,
    HEARTBEAT_SCHEMA,
    TELEMETRY_SCHEMA,
)

from . import wactorz
from .fastjson import decode as _decode
from .fastjson import peek as _peek

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "STALE_FACTOR",
    "Drift",
    "Event",
    "FleetModel",
    "InvalidMessage",
    "NodeAppeared",
    "NodeChanged",
    "NodeLost",
    "NodeOffline",
    "NodeOnline",
    "NodeRemoved",
    "NodeStale",
    "NodeView",
    "Sample",
]

DEFAULT_HEARTBEAT_INTERVAL: Final = 10.0
"""Seconds between heartbeats when the node's cfg does not say."""

STALE_FACTOR: Final = 3.0
"""A node is stale when its last heartbeat is older than this many intervals."""

_DESCRIPTIONS: Final = frozenset(contract.DESCRIPTIONS)
_TOPIC_CACHE_MAX: Final = 50_000
_UNSEEN: Final = object()
_FOREIGN_NAMES_MAX: Final = 1000
_NAME_RE: Final = re.compile(contract.NAME_PATTERN)
_FAST_LEAVES: Final = frozenset({*contract.DESCRIPTIONS, "heartbeat"})
_SEGMENT_RE: Final = re.compile(r"[^/#+$][^/#+]*")  # contract's topic level (no wildcard, no $)
_HEARTBEAT_INTERVAL: Final = NODE_CONFIG_SCHEMA.fields["heartbeat"].schema.fields["interval"]  # type: ignore[union-attr]
# Schema.read, as one generated function per schema, bound once.
_READ_DESCRIPTION: Final = {kind: schema.reader for kind, schema in DESCRIPTION_SCHEMAS.items()}
_read_heartbeat: Final = HEARTBEAT_SCHEMA.reader
_read_telemetry: Final = TELEMETRY_SCHEMA.reader
_read_actor_heartbeat: Final = ACTOR_HEARTBEAT_SCHEMA.reader


# ---- events ---------------------------------------------------------------------------


@dataclass(slots=True)
class Event:
    """Base of every model event; ``node`` is the node it concerns (None if unknown)."""

    node: str | None


@dataclass(slots=True)
class NodeAppeared(Event):
    """A node was seen for the first time (or again after removal)."""


@dataclass(slots=True)
class NodeChanged(Event):
    """Part of a node changed: ``what`` is meta, state, cfg, desired, heartbeat,
    telemetry or actor."""

    what: str = ""


@dataclass(slots=True)
class NodeOnline(Event):
    """The node said ``online`` (or came back from stale with a heartbeat)."""


@dataclass(slots=True)
class NodeOffline(Event):
    """The node stopped cleanly."""


@dataclass(slots=True)
class NodeLost(Event):
    """The broker published the node's will: its connection died."""


@dataclass(slots=True)
class NodeStale(Event):
    """No heartbeat for ``STALE_FACTOR`` intervals, yet no will either."""

    silent_for: float = 0.0


@dataclass(slots=True)
class NodeRemoved(Event):
    """The node's retained ``meta`` or ``status`` was cleared (a purge)."""


@dataclass(slots=True)
class InvalidMessage(Event):
    """A payload that broke the contract; counted, never raised."""

    topic: str = ""
    reason: str = ""


# ---- node view ------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    """One telemetry value."""

    value: float
    ts: float
    unit: str = ""


@dataclass(slots=True)
class NodeView:
    """What the console knows about one node. Payload dicts are the decoded
    messages themselves: read them, do not change them."""

    name: str
    meta: dict[str, Any] | None = None
    status: str | None = None
    status_payload: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    cfg: dict[str, Any] | None = None
    desired: dict[str, Any] | None = None
    heartbeat: dict[str, Any] | None = None
    heartbeat_at: float | None = None
    seen_at: float | None = None
    updated_at: float | None = None
    telemetry: dict[str, Sample] = field(default_factory=dict)
    history: dict[str, deque[Sample]] = field(default_factory=dict)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale: bool = False
    awaiting: bool = False
    invalid: int = 0
    order: dict[str, tuple[int, int]] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None  # a Wactorz packaged runner's (see wactorz.py)
    listed: list[str] | None = None  # its actors, from its latest heartbeat or list answer
    verified: bool | None = None  # a Wactorz node's presence signed with the fleet key (None: not checked)

    @property
    def online(self) -> bool:
        """Online and heartbeating."""
        return self.status == "online" and not self.stale

    @property
    def health(self) -> str:
        """``online``, ``stale``, ``offline``, ``lost`` or ``unknown``."""
        if self.status == "online":
            return "stale" if self.stale else "online"
        return self.status or "unknown"

    def stale_reason(self, now: float | None) -> str | None:
        """Why the node is stale, e.g. ``"no heartbeat for 35 s (every 10 s expected)"``;
        None when it is not. A node whose broker node died is stale, not lost: clustered
        brokers (NATS) do not publish the will of a client whose own node died."""
        if not self.stale:
            return None
        last = self.last_heard
        if last is None:
            return "never heard"
        if now is None:
            return f"no heartbeat in time (every {self.heartbeat_interval:g} s expected)"
        silent = max(0.0, now - last)
        return f"no heartbeat for {silent:.0f} s (every {self.heartbeat_interval:g} s expected)"

    @property
    def last_heard(self) -> float | None:
        """When (wall clock) the node was last heard: heartbeat or description."""
        marks = [t for t in (self.heartbeat_at, self.seen_at) if t is not None]
        return max(marks) if marks else None

    @property
    def broker(self) -> str | None:
        """The broker (``host:port``) the node said it is connected to (heartbeat, else meta)."""
        for source in (self.heartbeat, self.meta):
            value = (source or {}).get("broker")
            if value is not None:
                return value  # type: ignore[no-any-return]
        return None

    @property
    def unconfirmed(self) -> bool:
        """Says ``online`` but nothing shows it lives: no heartbeat with a time and no
        birth seen live (only retained copies, which a broker keeps for a dead node)."""
        return (
            self.status == "online" and not self.stale and self.heartbeat_at is None and self.seen_at is None
        )

    @property
    def name_clash(self) -> dict[str, Any] | None:
        """Set when the node says another live process uses its name (two devices
        called ``raspberrypi``): ``{"instance", "session", "since"}`` of the other."""
        for source in (self.status_payload, self.state):
            clash = source.get("name_clash") if source is not None else None
            if clash is not None:
                return clash  # type: ignore[no-any-return]
        return None

    @property
    def session(self) -> int | None:
        """The newest agent session seen in a description."""
        return max((s for s, _ in self.order.values()), default=None)

    @property
    def config(self) -> dict[str, Any] | None:
        """The reported node config."""
        return self.cfg.get("config") if self.cfg is not None else None

    @property
    def config_version(self) -> int | None:
        """The reported config version."""
        return self.cfg.get("config_version") if self.cfg is not None else None

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats, from the reported config (default 10)."""
        section = (self.config or {}).get("heartbeat")
        value = section.get("interval") if type(section) is dict else None
        # The node config schema's own field: what the agent would accept is what counts.
        if value is not None and _HEARTBEAT_INTERVAL.accepts(value):
            return float(value)
        return DEFAULT_HEARTBEAT_INTERVAL

    @property
    def groups(self) -> list[str]:
        """The node's groups (reported config, else meta)."""
        for source in (self.config, self.meta):
            if source and isinstance(source.get("groups"), list):
                return [g for g in source["groups"] if isinstance(g, str)]
        return []

    @property
    def components(self) -> dict[str, Any]:
        """Components as the node's ``state`` lists them."""
        return self.state.get("components", {}) if self.state is not None else {}

    @property
    def state_actors(self) -> dict[str, Any]:
        """Actors as the node's ``state`` lists them."""
        return self.state.get("actors", {}) if self.state is not None else {}

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-able digest (what ``devfleet ls --json`` prints); ``now`` (wall clock)
        dates the stale reason."""
        meta = self.meta or {}
        hb = self.heartbeat or {}
        return {
            "node": self.name,
            "health": self.health,
            "status": self.status,
            "stale": self.stale,
            "stale_reason": self.stale_reason(now),
            "broker": self.broker,
            "session": self.session,
            "version": meta.get("agent_version") or meta.get("devfleet_version") or wactorz.version(self),
            "groups": self.groups,
            "config_version": self.config_version,
            "uptime": hb.get("uptime", wactorz.uptime(self)),
            "heartbeat_at": self.heartbeat_at,
            "awaiting_birth": self.awaiting,
            "telemetry": {k: s.value for k, s in self.telemetry.items()},
            **{name: self.metric(name) for name in ("cpu", "memory", "disk")},
            "invalid": self.invalid,
            "name_clash": self.name_clash,
            "verified": self.verified,
        }

    def metric(self, name: str) -> float | None:
        """The latest ``cpu``/``memory``/``disk`` percent: the telemetry sample, else the
        (retained) heartbeat's figure; None when neither holds a finite number."""
        sample = self.telemetry.get(name)
        if sample is not None:
            return sample.value
        if wactorz.is_wactorz(self):
            return wactorz.metric(self, name)
        return _seconds((self.heartbeat or {}).get(name))

    def to_dict(self) -> dict[str, Any]:
        """Everything known, JSON-able (what ``devfleet show --json`` prints)."""
        out = self.summary()
        out.update(
            meta=self.meta,
            status_payload=self.status_payload,
            state=self.state,
            cfg=self.cfg,
            desired=self.desired,
            heartbeat=self.heartbeat,
            history={k: [[s.ts, s.value] for s in h] for k, h in self.history.items()},
            actors=self.actors,
            manifest=self.manifest,
        )
        return out


class _Deferred:
    """A description slot of :class:`NodeView` (``meta``, ``state``, ``cfg``) that may hold
    the payload as received (bytes, already checked as a JSON object with a valid
    ``session``/``version``/``node``): decoded on first read, then kept decoded."""

    def __init__(self, slot: Any, read: Any) -> None:
        self._slot = slot
        self._read = read

    def __get__(self, view: Any, owner: Any = None) -> Any:
        if view is None:
            return self
        value = self._slot.__get__(view, owner)
        if type(value) is bytes:
            try:
                value = self._read(_decode(value))
            except ContractError:  # not what its check on arrival said: count it, show nothing
                view.invalid += 1
                value = None
            self._slot.__set__(view, value)
        return value

    def __set__(self, view: Any, value: Any) -> None:
        self._slot.__set__(view, value)


for _kind in ("meta", "state", "cfg"):
    setattr(NodeView, _kind, _Deferred(NodeView.__dict__[_kind], _READ_DESCRIPTION[_kind]))


@dataclass(frozen=True, slots=True)
class Drift:
    """A node whose desired config is not (yet) what it reports."""

    node: str
    desired_id: str | None
    applied_id: str | None
    differences: dict[str, tuple[Any, Any]]
    error: dict[str, Any] | None = None


# ---- the model ------------------------------------------------------------------------


class FleetModel:
    """Every node the console can see, built only from what it is fed.

    Args:
        history: samples kept per telemetry metric per node.
        stale_factor: heartbeats missed before a node is stale.
    """

    def __init__(self, *, history: int = 60, stale_factor: float = STALE_FACTOR) -> None:
        self.nodes: dict[str, NodeView] = {}
        self.history = history
        self.stale_factor = stale_factor
        self.invalid_total = 0
        self.ignored_total = 0
        self.foreign_total = 0
        """Messages on ``nodes/{name}/...`` whose name is outside the grammar (ignored)."""
        self.foreign_names: set[str] = set()
        """Those names (at most 1,000 kept)."""
        self._first_check: dict[str, float] = {}
        self.messages = 0
        self._topics: dict[str, object] = {}

    # ---- queries -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[NodeView]:
        return iter(self.nodes.values())

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def get(self, name: str) -> NodeView | None:
        """The node named ``name``, or None."""
        return self.nodes.get(name)

    def in_group(self, group: str) -> list[NodeView]:
        """Nodes that report membership of ``group``."""
        return [n for n in self.nodes.values() if group in n.groups]

    def drift(self) -> list[Drift]:
        """Nodes whose retained desired config is not applied as asked."""
        out: list[Drift] = []
        for node in self.nodes.values():
            desired = node.desired
            if not desired:
                continue
            args = desired.get("args")
            wanted = args.get("set") if isinstance(args, dict) else None
            reported = node.config or {}
            diffs: dict[str, tuple[Any, Any]] = {}
            if isinstance(wanted, dict):
                for key, value in wanted.items():
                    have = _dotted_get(reported, str(key))
                    if have != value:
                        diffs[str(key)] = (value, have)
            desired_id = desired.get("id") if isinstance(desired.get("id"), str) else None
            applied_id = node.cfg.get("applied_id") if node.cfg else None
            error = node.cfg.get("desired_error") if node.cfg else None
            if not isinstance(error, dict):  # the schema allows a bare message too
                error = {"message": str(error)} if error else None
            if diffs or (error and error.get("id") in (None, desired_id)):
                out.append(Drift(node.name, desired_id, applied_id, diffs, error))
        return out

    # ---- feeding -----------------------------------------------------------------------

    def feed(
        self, topic: str, payload: bytes, retained: bool = False, now: float | None = None
    ) -> list[Event]:
        """Take one message; return what changed. Never raises on bad input.

        Args:
            topic: the MQTT topic.
            payload: the raw payload (empty means a cleared retained topic).
            retained: whether the broker flagged it retained.
            now: the receive time (wall clock seconds); when None, times come from
                the payload's own timestamps.
        """
        self.messages += 1
        match = self._topics.get(topic, _UNSEEN)  # a miss per new topic: no KeyError raised
        if match is _UNSEEN:
            match = _classify(topic)
            if len(self._topics) >= _TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = match
        if match is None:
            self.ignored_total += 1
            return []
        if type(match) is str:  # a node name outside the grammar: no node, only counted
            self.foreign_total += 1
            if len(self.foreign_names) < _FOREIGN_NAMES_MAX:
                self.foreign_names.add(match)
            return []
        assert isinstance(match, _Topic)
        try:
            return self._route(topic, match, payload, retained, now)
        except Exception as exc:  # a payload the handlers did not foresee: counted, never raised
            return self._invalid(topic, match.node, f"unreadable payload ({type(exc).__name__})")

    def _route(
        self, topic: str, match: _Topic, payload: bytes, retained: bool, now: float | None
    ) -> list[Event]:
        kind = match.kind
        node = match.node
        if node is None:
            if kind == "agent_heartbeat":
                return self._actor_heartbeat(topic, match, payload, now)
            self.ignored_total += 1
            return []
        if kind == "heartbeat":
            return self._heartbeat(topic, node, payload, now, retained)
        if kind == "telemetry":
            return self._telemetry(topic, node, match.leaf or "", payload, now, retained)
        if kind in _DESCRIPTIONS:
            return self._description(topic, node, kind, payload, now, not retained)
        if kind == "cfg_desired":
            return self._desired(topic, node, payload, now, retained)
        if kind == "manifest":
            return self._manifest(topic, node, payload, now, retained)
        if kind == "agents" and not retained:
            return self._list_answer(topic, node, payload, now)
        self.ignored_total += 1
        return []

    def check_stale(self, now: float) -> list[Event]:
        """Mark online nodes silent for ``stale_factor`` heartbeat intervals as stale
        (one :class:`NodeStale` each until they are heard again)."""
        events: list[Event] = []
        for node in self.nodes.values():
            if node.stale or node.status != "online":
                continue
            marks = [t for t in (node.heartbeat_at, node.seen_at) if t is not None]
            if not marks:
                # Known only from retained copies: count from the first time we looked.
                marks = [self._first_check.setdefault(node.name, now)]
            last = max(marks)
            silent = now - last
            # silent <= 0 (a node first looked at now) is never stale: skip reading its cfg.
            if silent > 0 and silent > self.stale_factor * node.heartbeat_interval:
                node.stale = True
                events.append(NodeStale(node.name, silent_for=silent))
        return events

    def unconfirmed(self) -> list[NodeView]:
        """Nodes that say ``online`` with nothing to show they live (see
        :attr:`NodeView.unconfirmed`): a one-shot console waits for their heartbeat."""
        return [n for n in self.nodes.values() if n.unconfirmed]

    def mark_stale(self, names: list[str], silent_for: float) -> list[Event]:
        """Mark these online nodes stale now (a one-shot console that waited for a
        heartbeat that did not come)."""
        events: list[Event] = []
        for name in names:
            node = self.nodes.get(name)
            if node is not None and node.status == "online" and not node.stale:
                node.stale = True
                events.append(NodeStale(name, silent_for=silent_for))
        return events

    def expect_rebirth(self) -> None:
        """The console reconnected: every node is ``awaiting`` until a live birth or
        heartbeat shows it is back (a broker restart drops its subscriptions)."""
        for node in self.nodes.values():
            node.awaiting = True

    # ---- handlers ----------------------------------------------------------------------

    def _invalid(self, topic: str, node: str | None, reason: str) -> list[Event]:
        self.invalid_total += 1
        if node is not None:
            view = self.nodes.get(node)
            if view is not None:
                view.invalid += 1
        return [InvalidMessage(node, topic=topic, reason=reason)]

    def _decode_dict(self, payload: bytes) -> dict[str, Any] | str:
        """The payload as a dict, or the reason it is not one."""
        try:
            data = _decode(payload)
        except ContractError as exc:
            return exc.message
        if type(data) is dict:
            return data
        if not isinstance(data, dict):
            return f"payload is a JSON {type(data).__name__}, not an object"
        return data

    def _node(self, name: str, seen: float | None, events: list[Event]) -> NodeView:
        """The node's view, made (with ``seen_at`` = ``seen``) if new."""
        view = self.nodes.get(name)
        if view is None:
            view = NodeView(name, seen_at=seen)
            self.nodes[name] = view
            events.append(NodeAppeared(name))
        return view

    def _heartbeat(
        self, topic: str, node: str, payload: bytes, now: float | None, retained: bool
    ) -> list[Event]:
        data = self._decode_dict(payload)
        if isinstance(data, str):
            return self._invalid(topic, node, data)
        claimed = data.get("node")
        if claimed is not None and claimed != node:
            return self._invalid(topic, node, f"heartbeat names node {claimed!r}")
        data = _read_heartbeat(data)  # no required field: drops the malformed ones only
        events: list[Event] = []
        view = self._node(node, None if retained else now, events)
        view.heartbeat = data
        wactorz.on_heartbeat(view, data)
        if retained or now is None:
            # The retained last heartbeat (or no receive time): its age is the node's own
            # timestamp, not when this console happened to subscribe.
            at = data.get("timestamp")
        else:
            at = now
            view.awaiting = False  # a live heartbeat: the node is back after our reconnect
        if at is not None and (view.heartbeat_at is None or at >= view.heartbeat_at):
            view.heartbeat_at = at
            view.updated_at = at
        if view.stale and not retained:
            view.stale = False
            events.append(NodeOnline(node))
        events.append(NodeChanged(node, what="heartbeat"))
        return events

    def _telemetry(
        self, topic: str, node: str, metric: str, payload: bytes, now: float | None, retained: bool
    ) -> list[Event]:
        data = self._decode_dict(payload)
        if isinstance(data, str):
            return self._invalid(topic, node, data)
        try:
            data = _read_telemetry(data)
        except ContractError as exc:
            return self._invalid(topic, node, exc.message)
        ts = data.get("ts")
        if ts is None:
            ts = now if now is not None else 0.0
        sample = Sample(float(data["value"]), ts, data.get("unit", ""))
        events: list[Event] = []
        view = self._node(node, None if retained else now, events)
        view.telemetry[metric] = sample
        hist = view.history.get(metric)
        if hist is None:
            hist = view.history[metric] = deque(maxlen=self.history)
        hist.append(sample)
        if now is not None:
            view.updated_at = now
        events.append(NodeChanged(node, what="telemetry"))
        return events

    def _description(
        self, topic: str, node: str, kind: str, payload: bytes, now: float | None, live: bool
    ) -> list[Event]:
        if not payload:
            return self._cleared(node, kind)
        data: Any = None
        head = _peek(payload) if kind != "status" and type(payload) is bytes else None
        if head is not None:
            claimed, session, version = head
            # Every check that can refuse it on arrival, done on the header: then it is kept
            # as received and read through its schema when first read (see _Deferred).
            if (
                type(session) is int
                and type(version) is int
                and session >= 0
                and version >= 0
                and (claimed is None or claimed == node)
            ):
                data = payload
                order = (session, version)
        if data is None:
            data = self._decode_dict(payload)
            if type(data) is str:
                return self._invalid(topic, node, data)
            assert isinstance(data, dict)
            claimed = data.get("node")
            try:
                # The schema the agent builds it with: session and version are required integers
                # (status too); a malformed optional field is dropped, unknown keys are kept.
                data = _READ_DESCRIPTION[kind](data)
            except ContractError as exc:
                return self._invalid(topic, node, exc.message)
            if claimed is not None and claimed != node:
                return self._invalid(topic, node, f"{kind} names node {claimed!r}")
            order = (data["session"], data["version"])
        events: list[Event] = []
        view = self.nodes.get(node)
        if view is None:
            # A retained copy says nothing of whether the node lives now: no seen_at.
            view = self.nodes[node] = NodeView(node, seen_at=now if live else None)
            events.append(NodeAppeared(node))
        else:
            previous = view.order.get(kind)
            if previous is not None and order <= previous:
                return []  # a late will, an old retained copy or a duplicate
        view.order[kind] = order
        if now is not None:
            view.updated_at = now
        if kind == "status":
            assert isinstance(data, dict)
            status = data["status"]
            before = view.status
            view.status_payload = data
            view.status = status
            was_stale = view.stale
            view.stale = False
            if status == "online" and live:
                view.awaiting = False  # its birth since our (re)connect
                if now is not None:
                    view.seen_at = now  # staleness counts from the birth, not from before it
            if status != before or (was_stale and status == "online"):
                cls = {"online": NodeOnline, "offline": NodeOffline, "lost": NodeLost}[status]
                events.append(cls(node))
            return events
        setattr(view, kind, data)
        events.append(NodeChanged(node, what=kind))
        return events

    def _cleared(self, node: str, kind: str) -> list[Event]:
        view = self.nodes.get(node)
        if view is None:
            return []
        if kind in ("meta", "status"):
            del self.nodes[node]
            return [NodeRemoved(node)]
        setattr(view, kind, None)
        view.order.pop(kind, None)
        return [NodeChanged(node, what=kind)]

    def _desired(
        self, topic: str, node: str, payload: bytes, now: float | None, retained: bool
    ) -> list[Event]:
        if not payload:
            view = self.nodes.get(node)
            if view is None or view.desired is None:
                return []
            view.desired = None
            return [NodeChanged(node, what="desired")]
        data = self._decode_dict(payload)
        if isinstance(data, str):
            return self._invalid(topic, node, data)
        events: list[Event] = []
        view = self._node(node, None if retained else now, events)
        view.desired = data
        events.append(NodeChanged(node, what="desired"))
        return events

    def _list_answer(self, topic: str, node: str, payload: bytes, now: float | None) -> list[Event]:
        """A Wactorz node's live answer to a list: it lives, and runs these (see wactorz.py)."""
        view = self.nodes.get(node)
        if view is None or not wactorz.is_wactorz(view):
            self.ignored_total += 1
            return []
        data = self._decode_dict(payload)
        if isinstance(data, str):
            return self._invalid(topic, node, data)
        wactorz.on_list(view, data, now)
        return [NodeChanged(node, what="actor")]

    def _manifest(
        self, topic: str, node: str, payload: bytes, now: float | None, retained: bool
    ) -> list[Event]:
        """A Wactorz packaged runner's retained manifest (empty: cleared)."""
        if not payload:
            view = self.nodes.get(node)
            if view is not None:
                view.manifest = None
            return []
        data = self._decode_dict(payload)
        if isinstance(data, str):
            return self._invalid(topic, node, data)
        claimed = data.get("node")
        if claimed is not None and claimed != node:
            return self._invalid(topic, node, f"manifest names node {claimed!r}")
        events: list[Event] = []
        view = self._node(node, None, events)
        wactorz.on_manifest(view, data)
        events.append(NodeChanged(node, what="manifest"))
        return events

    def _actor_heartbeat(self, topic: str, match: _Topic, payload: bytes, now: float | None) -> list[Event]:
        data = self._decode_dict(payload)
        if isinstance(data, str):
            return self._invalid(topic, None, data)
        data = _read_actor_heartbeat(data)
        node = data.get("node")
        view = self.nodes.get(node) if node is not None else None
        if view is None:
            return []  # an actor of a node we do not (yet) know
        view.actors[match.ident or "?"] = data
        return [NodeChanged(view.name, what="actor")]


def _seconds(value: Any) -> float | None:
    """A finite JSON number as float seconds, else None (bools, 400-digit ints, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


class _Topic(NamedTuple):
    """What the model needs of a topic (``contract.TopicMatch``'s fields that it reads)."""

    kind: str
    node: str | None
    leaf: str | None = None
    ident: str | None = None


def _classify(topic: str) -> _Topic | str | None:
    """The topic's match; the node name itself when it is outside the grammar."""
    # The retained burst brings a new topic per message, so the cache never helps it:
    # the usual shapes are answered here as contract.parse_topic would answer them,
    # without its frozen TopicMatch (1.9 µs to build, a third of a description's feed).
    parts = topic.split("/")
    if parts[0] == "nodes" and _NAME_RE.fullmatch(parts[1] if len(parts) > 2 else ""):
        if len(parts) == 3 and parts[2] in _FAST_LEAVES:
            return _Topic(parts[2], parts[1])
        if len(parts) == 4 and parts[2] == "telemetry" and _SEGMENT_RE.fullmatch(parts[3]):
            return _Topic("telemetry", parts[1], parts[3])
    match = contract.parse_topic(topic)
    if match is None:
        return None
    if match.node is not None and not _NAME_RE.fullmatch(match.node):
        return match.node
    return _Topic(match.kind, match.node, match.leaf, match.ident)


def _dotted_get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
