"""Work trading on the wire: résumés, task requests, proposals, assignments, outputs.

The payloads of the agent-to-agent topics of :mod:`devfleet_base.contract`
(``agents/{id}/resume``, ``tasks/{task}/request|proposal/{agent}|assign/{agent}|output/{step}``,
``pools/{pool}/jobs|done/{job}``), validated with the shared
:class:`~devfleet_base.schema.Schema`, and the pure rules both sides apply: whether an
offer meets a request's constraints, and the default choice policy (the cheapest
proposal that meets them, then the fastest, then the first to arrive).

Idea and topic names: the "Internet of Agents" seed (retained résumés as a registry,
requests answered by proposals, assignments at QoS 2, retained outputs for late
joiners); the auction itself is the contract-net protocol (R. G. Smith, 1980:
announce, bid, award).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from .contract import ID_PATTERN, NAME_PATTERN
from .errors import ContractError
from .schema import Field, Schema

__all__ = [
    "ASSIGN_SCHEMA",
    "DEFAULT_RETENTION",
    "JOB_SCHEMA",
    "OUTPUT_SCHEMA",
    "PROPOSAL_SCHEMA",
    "REQUEST_SCHEMA",
    "RESUME_SCHEMA",
    "TRADING_KEYS",
    "ChoicePolicy",
    "cheapest",
    "check_resume",
    "meets",
    "offers_skill",
    "read",
]

DEFAULT_RETENTION: Final = 300.0
"""Seconds a retained task output stays on the broker before its publisher clears it."""

TRADING_KEYS: Final = ("resume", "pool")
"""Keys of a spawn spec or of component settings that declare trading, not behaviour."""

_TAG = Field("str", min=1, max=64, pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]*")

RESUME_SCHEMA: Final = Schema(
    "resume",
    {
        "skills": Field("list", required=True, min=1, max=64, items=_TAG, doc="What the actor can do."),
        "cost": Field(
            "dict", default={}, values=Field("float", min=0), doc='e.g. {"usd": 0.02, "p95_ms": 350}.'
        ),
        "region": Field("str", nullable=True, default=None, max=64, doc="Where it runs."),
        "accredit": Field("list", default=[], max=64, items=_TAG, doc='Accreditations, e.g. ["gdpr"].'),
    },
)
"""What an actor declares (``{"resume": {...}}`` in a spawn, ``resume`` in component
settings); the agent adds ``agent``, ``name``, ``node``, ``kind``, ``pool``,
``session``, ``version`` and ``ts`` when it publishes it retained."""

_CONSTRAINTS = Schema(
    "constraints",
    {
        "accredit": Field("list", default=[], max=64, items=_TAG),
        "region": Field("str", nullable=True, default=None, max=64),
        "max_usd": Field("float", nullable=True, default=None, min=0),
    },
)

REQUEST_SCHEMA: Final = Schema(
    "request",
    {
        "task": Field("str", required=True, pattern=ID_PATTERN),
        "skill": Field("str", required=True, min=1, max=64, pattern=_TAG.pattern),
        "inputs": Field("any", nullable=True, default=None),
        "bid_by": Field("float", required=True, min=0, doc="Unix time: proposals after it are ignored."),
        "constraints": Field("dict", default={}, schema=_CONSTRAINTS),
        "retention": Field("float", default=DEFAULT_RETENTION, min=0, max=7 * 86400.0),
        "ts": Field("float", min=0),
    },
)

PROPOSAL_SCHEMA: Final = Schema(
    "proposal",
    {
        "task": Field("str", required=True, pattern=ID_PATTERN),
        "agent": Field("str", required=True, pattern=ID_PATTERN),
        "name": Field("str", required=True, pattern=NAME_PATTERN),
        "node": Field("str", required=True, pattern=NAME_PATTERN),
        "cost": Field("float", required=True, min=0, doc="Price in the requester's unit (usd)."),
        "eta": Field("float", required=True, min=0, max=86400.0, doc="Seconds to the final output."),
        "plan": Field("list", default=[], max=64, doc="Optional steps the actor would run."),
        "accredit": Field("list", default=[], max=64, items=_TAG),
        "region": Field("str", nullable=True, default=None, max=64),
        "ts": Field("float", min=0),
    },
)

ASSIGN_SCHEMA: Final = Schema(
    "assign",
    {
        "task": Field("str", required=True, pattern=ID_PATTERN),
        "agent": Field("str", required=True, pattern=ID_PATTERN),
        "assignment": Field("str", required=True, pattern=ID_PATTERN, doc="Runs at most once."),
        "skill": Field("str", required=True, min=1, max=64),
        "inputs": Field("any", nullable=True, default=None),
        "plan": Field("list", default=[], max=64),
        "retention": Field("float", default=DEFAULT_RETENTION, min=0, max=7 * 86400.0),
        "expires_at": Field("float", nullable=True, default=None, min=0),
        "cancel": Field("bool", default=False, doc="The requester gave up on it: stop, publish nothing."),
        "ts": Field("float", min=0),
    },
)

OUTPUT_SCHEMA: Final = Schema(
    "output",
    {
        "task": Field("str", required=True, pattern=ID_PATTERN),
        "assignment": Field("str", required=True, pattern=ID_PATTERN),
        "agent": Field("str", required=True, pattern=ID_PATTERN),
        "node": Field("str", required=True, pattern=NAME_PATTERN),
        "step": Field("str", required=True, pattern=ID_PATTERN),
        "status": Field("str", required=True, choices=("ok", "error")),
        "final": Field("bool", default=True),
        "result": Field("any", nullable=True, default=None),
        "error": Field("dict", nullable=True, default=None),
        "ts": Field("float", min=0),
    },
)

JOB_SCHEMA: Final = Schema(
    "job",
    {
        "job": Field("str", required=True, pattern=ID_PATTERN),
        "pool": Field("str", required=True, pattern=NAME_PATTERN),
        "inputs": Field("any", nullable=True, default=None),
        "attempt": Field("int", default=1, min=1),
        "ts": Field("float", min=0),
    },
)

ChoicePolicy = Callable[[dict[str, Any], Sequence[dict[str, Any]]], list[dict[str, Any]]]
"""``policy(request, proposals) -> ranked proposals``: the first is assigned, the
next ones are the fallbacks when an assignee is lost or silent."""


def read(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate a decoded payload against one of the schemas here.

    Raises:
        ContractError: ``invalid`` with the offending path.
    """
    return schema.validate(data)


def offers_skill(resume: dict[str, Any] | None, skill: str) -> bool:
    """Whether a (validated) résumé lists ``skill``."""
    return resume is not None and skill in resume.get("skills", ())


def meets(offer: dict[str, Any], constraints: dict[str, Any]) -> bool:
    """Whether a résumé or a proposal satisfies a request's ``constraints``:
    every required accreditation, the region if one is named, and ``max_usd``
    (against a proposal's ``cost`` or a résumé's ``cost.usd``)."""
    if not set(constraints.get("accredit") or ()) <= set(offer.get("accredit") or ()):
        return False
    region = constraints.get("region")
    if region is not None and offer.get("region") != region:
        return False
    limit = constraints.get("max_usd")
    if limit is not None:
        cost = offer.get("cost")
        price = cost.get("usd", 0.0) if isinstance(cost, dict) else cost
        if not isinstance(price, (int, float)) or price > limit:
            return False
    return True


def cheapest(request: dict[str, Any], proposals: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The default policy: proposals that meet the constraints and arrived by
    ``bid_by``, cheapest first, then by eta, then by arrival (the stable sort)."""
    constraints = request.get("constraints") or {}
    ok = [p for p in proposals if meets(p, constraints)]
    return sorted(ok, key=lambda p: (p["cost"], p["eta"]))


def check_resume(data: Any) -> dict[str, Any]:
    """Validate a declared résumé (spawn spec or component settings).

    Raises:
        ContractError: not a valid résumé.
    """
    if not isinstance(data, dict):
        raise ContractError(f"resume: expected an object, got {type(data).__name__}")
    return RESUME_SCHEMA.validate(data)
