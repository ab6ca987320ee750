"""The sans-IO half of a job: per-node progress, deterministic command ids, revert
steps and the job's tallies. No sockets and no clocks (times come in as arguments).

A node's progress moves ``pending`` → ``sent`` → ``soaking`` → ``done``; or to
``failed`` (its command failed, or it failed the health gate); ``waiting`` while
it is offline (retried when it is back, until the job expires, then
``offline``); ``skipped`` when the job aborted before its turn; ``reverted`` or
``revert_failed`` after an abort undid its change.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from devfleet_base.errors import ContractError
from devfleet_base.schema import Field, Schema

from .spec import JobSpec, requirement_parts

__all__ = [
    "FINAL_NODE_STATES",
    "NODE_STATES",
    "JobState",
    "NodeProgress",
    "command_id",
    "component_problem",
    "revert_command",
]

NODE_STATES = (
    "pending",
    "waiting",
    "sent",
    "soaking",
    "done",
    "failed",
    "skipped",
    "offline",
    "reverted",
    "revert_failed",
)
FINAL_NODE_STATES = frozenset({"done", "failed", "skipped", "offline", "reverted", "revert_failed"})

_PROGRESS_SCHEMA = Schema(
    "job node progress",
    {
        "node": Field("str", required=True),
        "stage": Field("int", required=True, min=0),
        "state": Field("str", required=True, choices=NODE_STATES),
        "changed": Field("bool", default=False),
        "cmd": Field("str", nullable=True, default=None),
        "previous": Field("any", nullable=True, default=None),
        "error": Field("str", nullable=True, default=None),
        "revert_cmd": Field("str", nullable=True, default=None),
        "updated_at": Field("float", default=0.0, min=0),
    },
)


def command_id(job: str, node: str, step: str) -> str:
    """The id of ``step`` (``do``, ``undo``) of ``job`` on ``node``: the same in every
    console, so a console resuming a job sends the very id the crashed one sent
    and the node (at-most-once per id, remembered across its restarts) answers
    with the first run's receipt instead of running it again."""
    digest = hashlib.sha256(node.encode()).hexdigest()[:16]
    return f"{job}-{step}-{digest}"


@dataclass
class NodeProgress:
    """One node's part of a job, as retained on ``jobs/{job}/nodes/{node}``."""

    node: str
    stage: int
    state: str = "pending"
    changed: bool = False
    cmd: str | None = None
    previous: Any = None
    error: str | None = None
    revert_cmd: str | None = None
    updated_at: float = 0.0

    @property
    def final(self) -> bool:
        """Whether nothing more will happen to it."""
        return self.state in FINAL_NODE_STATES

    def to_dict(self) -> dict[str, Any]:
        """The wire form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> NodeProgress:
        """Validate a decoded record.

        Raises:
            ContractError: a field is missing or wrong.
        """
        return cls(**_PROGRESS_SCHEMA.validate(data))


def component_problem(components: dict[str, Any], *, settled: bool) -> str | None:
    """Why a node's ``state.components`` is unhealthy, or None.

    Args:
        components: the node's reported components.
        settled: the soak is over: an enabled component that is not ``running``
            by then fails (before that only ``failed`` ones or a health report
            saying unhealthy do).
    """
    for name, info in sorted(components.items()):
        if not isinstance(info, dict) or info.get("enabled") is False:
            continue
        state = info.get("state")
        health = info.get("health")
        if state == "failed":
            return f"component {name} failed: {info.get('last_error') or 'no reason given'}"
        if isinstance(health, dict) and health.get("ok") is False:
            return (
                f"component {name} unhealthy: {health.get('message') or health.get('detail') or ''}".rstrip(
                    ": "
                )
            )
        if settled and state != "running":
            return f"component {name} is {state}, not running"
    return None


def revert_command(spec: JobSpec, progress: NodeProgress) -> tuple[str, dict[str, Any]] | None:
    """The command that undoes ``spec``'s operation on a node (see the table in
    :mod:`.spec`), or None when the operation has no revert.

    Raises:
        ContractError: the operation's arguments do not say what to undo.
    """
    op = spec.operation
    if op.verb in ("install", "upgrade"):
        dist, _ = requirement_parts(op.args.get("spec"))
        if progress.previous is None:
            return "uninstall", {"spec": dist}
        return "install", {"spec": f"{dist}=={progress.previous}"}
    if op.verb == "uninstall":
        dist, _ = requirement_parts(op.args.get("spec"))
        if progress.previous is None:
            return None
        return "install", {"spec": f"{dist}=={progress.previous}"}
    if op.verb == "configure":
        prev = progress.previous if isinstance(progress.previous, dict) else {}
        if isinstance(prev.get("config"), dict):  # the version before is not kept on the node
            return "configure", {"replace": prev["config"]}
        if not isinstance(prev.get("version"), int):
            raise ContractError(f"{progress.node}: no config version to roll back to")
        return "configure", {"rollback_to": prev["version"]}
    if op.verb == "spawn":
        name = op.args.get("name")
        return ("stop", {"name": name}) if isinstance(name, str) else None
    if op.revert is not None:
        return op.revert["verb"], dict(op.revert.get("args") or {})
    return None


def config_before(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a configure revert needs, taken from the node's reported ``cfg`` before
    the change: ``{"version": v}`` when the node keeps version ``v`` (a
    ``rollback_to``), else ``{"version": v, "config": {...}}`` (a ``replace``: a node
    never configured keeps no version 0)."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config_version"), int):
        return None
    version = cfg["config_version"]
    kept = cfg.get("kept_versions")
    if isinstance(kept, list) and version in kept:
        return {"version": version}
    config = cfg.get("config")
    return {"version": version, "config": config} if isinstance(config, dict) else None


def previous_from(verb: str, result: Any, before: Any) -> Any:
    """What a revert needs from a successful step: the version an install replaced,
    the version an uninstall removed, the config version before a configure."""
    if verb == "configure":
        return before
    if not isinstance(result, dict):
        return None
    key = "version" if verb == "uninstall" else "previous"
    value = result.get(key)
    return value if isinstance(value, str) else None


@dataclass
class JobState:
    """A job's spec and every node's progress, with the tallies shown to operators."""

    spec: JobSpec
    nodes: dict[str, NodeProgress] = field(default_factory=dict)
    state: str = "running"
    stage: int = 0
    reason: str | None = None

    @classmethod
    def fresh(cls, spec: JobSpec) -> JobState:
        """Every node pending."""
        return cls(spec, {n: NodeProgress(n, i) for n, i in spec.stage_of().items()})

    def merge(self, records: dict[str, Any]) -> int:
        """Take retained progress records (decoded); ignore those of nodes outside the
        spec or malformed. Returns how many were taken."""
        taken = 0
        stage_of = self.spec.stage_of()
        for name, data in records.items():
            try:
                record = NodeProgress.from_dict(data)
            except (ContractError, TypeError):
                continue
            if record.node == name and stage_of.get(name) == record.stage:
                self.nodes[name] = record
                taken += 1
        return taken

    @property
    def failures(self) -> int:
        """Nodes that failed (an abort's reverts count still as failed ones)."""
        return sum(
            1
            for p in self.nodes.values()
            if p.state == "failed" or (p.error and p.state in ("reverted", "revert_failed"))
        )

    @property
    def tried(self) -> int:
        """Nodes that got the operation and have an outcome."""
        return sum(
            1 for p in self.nodes.values() if p.state in ("done", "failed", "reverted", "revert_failed")
        )

    def exceeded(self) -> bool:
        """Whether the failures pass the gate's threshold."""
        return self.spec.gate.exceeded(self.failures, self.tried)

    def tally(self, stage: int | None = None) -> dict[str, int]:
        """How many nodes (of ``stage``, or of the job) are in each state."""
        out = dict.fromkeys(NODE_STATES, 0)
        for p in self.nodes.values():
            if stage is None or p.stage == stage:
                out[p.state] += 1
        return out

    def status(self, *, now: float, runner: str | None) -> dict[str, Any]:
        """The retained ``jobs/{job}/status`` document."""
        return {
            "job": self.spec.job,
            "state": self.state,
            "stage": self.stage,
            "stages": [
                {"index": i, "nodes": len(s), **{k: v for k, v in self.tally(i).items() if v}}
                for i, s in enumerate(self.spec.stages)
            ],
            "counts": {k: v for k, v in self.tally().items() if v},
            "failures": self.failures,
            "reason": self.reason,
            "runner": runner,
            "heartbeat_at": now,
        }
