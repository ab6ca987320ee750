"""What a fleet job is: an operation, the nodes it reaches, in which stages, gated how.

A :class:`JobSpec` is plain data: the console that creates a job resolves its
target to node names and cuts them into stages once, and retains the result on
``jobs/{job}/spec``; any console that resumes or watches the job reads that
document back (validated by :data:`JOB_SPEC_SCHEMA`: it comes from the network).

Revert rules (what an abort sends to every node the job changed):

====================  ================================================
operation             revert
====================  ================================================
install / upgrade     ``install name==previous`` (``uninstall name`` after a first install)
uninstall             ``install name==version`` (the version it removed)
configure             ``configure {"rollback_to": previous config_version}``
spawn                 ``stop`` the actor
any other verb        the ``revert`` command given with the job, else none
====================  ================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from devfleet_base import contract
from devfleet_base.errors import ContractError
from devfleet_base.schema import Field, Schema

from ..errors import InvalidRequest

__all__ = [
    "JOB_SPEC_SCHEMA",
    "REVERTIBLE_VERBS",
    "Gate",
    "JobSpec",
    "Operation",
    "amount",
    "cut_stages",
    "requirement_parts",
]

REVERTIBLE_VERBS = frozenset({"install", "upgrade", "uninstall", "configure", "spawn"})

_NAME = Field("str", pattern=contract.NAME_PATTERN)
_AMOUNT = Field("str", pattern=r"[0-9]+(\.[0-9]+)?%?", doc="a count, or a percentage with %")
_COMMAND = Schema(
    "command",
    {"verb": Field("str", required=True, pattern=contract.NAME_PATTERN), "args": Field("dict", default={})},
)

JOB_SPEC_SCHEMA = Schema(
    "job spec",
    {
        "job": Field("str", required=True, pattern=contract.ID_PATTERN),
        "created_at": Field("float", required=True, min=0),
        "expires_at": Field("float", required=True, min=0),
        "created_by": Field("str", default=""),
        "operation": Field(
            "dict",
            required=True,
            schema=Schema(
                "operation",
                {
                    "verb": Field("str", required=True, pattern=contract.NAME_PATTERN),
                    "args": Field("dict", default={}),
                    "revert": Field("dict", nullable=True, default=None, schema=_COMMAND),
                    "timeout": Field("float", default=60.0, min=0.1, max=86400),
                },
            ),
        ),
        "target": Field("dict", default={}, doc="how the nodes were chosen (shown, not re-evaluated)"),
        "stages": Field("list", required=True, min=1, max=10_000, items=Field("list", min=1, items=_NAME)),
        "gate": Field(
            "dict",
            default={},
            schema=Schema(
                "gate",
                {
                    "soak": Field("float", default=60.0, min=0, max=86400),
                    "components": Field("bool", default=True),
                    "health": Field("dict", nullable=True, default=None, schema=_COMMAND),
                    "max_failures": Field("int", nullable=True, default=0, min=0),
                    "max_failure_percent": Field("float", nullable=True, default=None, min=0, max=100),
                },
            ),
        ),
    },
)


@dataclass(frozen=True)
class Operation:
    """What each node gets: ``verb`` with ``args`` (``install {"spec": "ledstrip==1.2"}``).

    ``revert`` is the command that undoes it for verbs without a built-in revert;
    ``timeout`` the seconds one node gets to answer.
    """

    verb: str
    args: dict[str, Any] = field(default_factory=dict)
    revert: dict[str, Any] | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class Gate:
    """When a stage passes and when the job aborts.

    Attributes:
        soak: seconds each changed node must stay healthy (online; with
            ``components`` every enabled component ``running``; the ``health``
            command answering ``ok`` at the end).
        components: judge the node's component states.
        health: an optional read-only command ``{"verb", "args"}`` run at the end
            of the soak.
        max_failures: abort when more nodes than this failed (None: no count limit).
        max_failure_percent: abort when more than this percentage of the nodes
            tried so far failed (None: no percentage limit).
    """

    soak: float = 60.0
    components: bool = True
    health: dict[str, Any] | None = None
    max_failures: int | None = 0
    max_failure_percent: float | None = None

    def exceeded(self, failed: int, tried: int) -> bool:
        """Whether ``failed`` failures out of ``tried`` nodes pass a threshold."""
        if self.max_failures is not None and failed > self.max_failures:
            return True
        return bool(
            self.max_failure_percent is not None
            and tried
            and failed * 100.0 / tried > self.max_failure_percent
        )


@dataclass(frozen=True)
class JobSpec:
    """A job as retained on ``jobs/{job}/spec``."""

    job: str
    operation: Operation
    stages: tuple[tuple[str, ...], ...]
    gate: Gate
    created_at: float
    expires_at: float
    target: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""

    @property
    def nodes(self) -> list[str]:
        """Every node of the job, stage by stage."""
        return [n for stage in self.stages for n in stage]

    def stage_of(self) -> dict[str, int]:
        """Node name → stage index."""
        return {n: i for i, stage in enumerate(self.stages) for n in stage}

    def to_dict(self) -> dict[str, Any]:
        """The wire form."""
        op, gate = self.operation, self.gate
        return {
            "job": self.job,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "created_by": self.created_by,
            "operation": {"verb": op.verb, "args": op.args, "revert": op.revert, "timeout": op.timeout},
            "target": self.target,
            "stages": [list(s) for s in self.stages],
            "gate": {
                "soak": gate.soak,
                "components": gate.components,
                "health": gate.health,
                "max_failures": gate.max_failures,
                "max_failure_percent": gate.max_failure_percent,
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        """Validate a decoded spec.

        Raises:
            ContractError: a field is missing, mistyped or out of range, or a node
                appears twice.
        """
        d = JOB_SPEC_SCHEMA.validate(data)
        stages = tuple(tuple(s) for s in d["stages"])
        names = [n for s in stages for n in s]
        if len(set(names)) != len(names):
            raise ContractError("job spec: a node appears in more than one place")
        op, gate = d["operation"], d["gate"]
        return cls(
            job=d["job"],
            operation=Operation(op["verb"], op["args"], op["revert"], op["timeout"]),
            stages=stages,
            gate=Gate(
                gate["soak"],
                gate["components"],
                gate["health"],
                gate["max_failures"],
                gate["max_failure_percent"],
            ),
            created_at=d["created_at"],
            expires_at=d["expires_at"],
            target=d["target"],
            created_by=d["created_by"],
        )


def amount(text: str | int, total: int) -> int:
    """``"5"`` → 5 nodes, ``"5%"`` → 5 % of ``total`` rounded up (at least 1 when
    ``total`` > 0).

    Raises:
        InvalidRequest: not a non-negative count or a percentage up to 100.
    """
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            pct = float(raw[:-1])
            if not 0 < pct <= 100 or math.isnan(pct):
                raise ValueError
            return max(1, math.ceil(total * pct / 100.0)) if total else 0
        count = int(raw)
        if count < 0:
            raise ValueError
        return count
    except ValueError:
        raise InvalidRequest(f"{text!r} is neither a node count nor a percentage such as 5%") from None


def cut_stages(nodes: list[str], canary: str | int, batch: str | int) -> list[list[str]]:
    """Cut ``nodes`` (in order) into a canary, then batches (the last one smaller).

    ``canary`` 0 means no canary; ``batch`` 0 means everything after the canary in
    one stage.

    Raises:
        InvalidRequest: a bad amount.
    """
    total = len(nodes)
    first = min(amount(canary, total), total)
    size = amount(batch, total) or total
    stages = [nodes[:first]] if first else []
    stages.extend(nodes[i : i + size] for i in range(first, total, size))
    return stages


def requirement_parts(spec: Any) -> tuple[str, str | None]:
    """``ledstrip==1.2`` → ``("ledstrip", "1.2")``; ``ledstrip>=1`` → ``("ledstrip", None)``.

    Raises:
        ContractError: not a requirement string.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(spec, str):
        raise ContractError("the operation's spec must be a requirement string")
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ContractError(f"bad requirement {spec!r}: {exc}") from None
    pins = [s.version for s in req.specifier if s.operator == "=="]
    return req.name, pins[0] if len(pins) == 1 else None
