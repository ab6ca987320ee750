"""What the broker retains about jobs, as any console sees it: a sans-IO store fed
with ``jobs/...`` messages, and the async helpers that load or follow it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import ContractError
from devfleet_base.mqtt import MqttMessage

from .plan import JobState
from .spec import JobSpec

if TYPE_CHECKING:
    from ..aio import AsyncFleet

__all__ = ["JobStore", "JobView", "follow_jobs", "load_jobs"]

FINAL_JOB_STATES = frozenset({"completed", "incomplete", "aborted"})


@dataclass
class JobView:
    """One job as retained: its spec, status and per-node records (decoded dicts)."""

    job: str
    spec: JobSpec | None = None
    status: dict[str, Any] | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    control: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        """The job's state (``unknown`` until its status arrives)."""
        value = (self.status or {}).get("state")
        return value if isinstance(value, str) else "unknown"

    @property
    def final(self) -> bool:
        """Whether the job ended."""
        return self.state in FINAL_JOB_STATES

    def job_state(self) -> JobState:
        """The progress as a :class:`JobState` (for a runner resuming it).

        Raises:
            ContractError: no spec retained.
        """
        if self.spec is None:
            raise ContractError(f"job {self.job} has no retained spec")
        state = JobState.fresh(self.spec)
        state.merge(self.nodes)
        status = self.status or {}
        if status.get("state") in ("running", "aborting"):
            state.state = status["state"]
        if isinstance(status.get("reason"), str):
            state.reason = status["reason"]
        return state

    def summary(self) -> dict[str, Any]:
        """JSON-able digest (``devfleet job ls --json``)."""
        spec = self.spec
        status = self.status or {}
        return {
            "job": self.job,
            "state": self.state,
            "operation": spec.to_dict()["operation"] if spec else None,
            "nodes": len(spec.nodes) if spec else None,
            "stages": len(spec.stages) if spec else None,
            "stage": status.get("stage"),
            "counts": status.get("counts", {}),
            "reason": status.get("reason"),
            "created_at": spec.created_at if spec else None,
            "expires_at": spec.expires_at if spec else None,
            "heartbeat_at": status.get("heartbeat_at"),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything retained (``devfleet job show --json``)."""
        out = self.summary()
        out.update(
            spec=self.spec.to_dict() if self.spec else None,
            status=self.status,
            progress=dict(sorted(self.nodes.items())),
            control=self.control,
        )
        return out


class JobStore:
    """Every job seen on ``jobs/#``. Malformed payloads are counted, never raised."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobView] = {}
        self.invalid = 0

    def feed(self, topic: str, payload: bytes) -> str | None:
        """Take one message; return the job it concerns (None if not a job topic)."""
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != "jobs":
            return None
        job = parts[1]
        try:
            contract.check_id(job, "job id")
            data = contract.decode(payload) if payload else None
            view = self.jobs.get(job) or JobView(job)
            if len(parts) == 3 and parts[2] == "spec":
                view.spec = JobSpec.from_dict(data) if data is not None else None
            elif len(parts) == 3 and parts[2] in ("status", "control"):
                if data is not None and not isinstance(data, dict):
                    raise ContractError(f"{topic}: not an object")
                setattr(view, parts[2], data)
            elif len(parts) == 4 and parts[2] == "nodes":
                if data is None:
                    view.nodes.pop(parts[3], None)
                elif isinstance(data, dict):
                    view.nodes[parts[3]] = data
                else:
                    raise ContractError(f"{topic}: not an object")
            else:
                return None
        except ContractError:
            self.invalid += 1
            return None
        if view.spec is None and view.status is None and not view.nodes and view.control is None:
            self.jobs.pop(job, None)  # every retained topic cleared
        else:
            self.jobs[job] = view
        return job


async def load_jobs(fleet: AsyncFleet, job: str | None = None, *, timeout: float = 10.0) -> JobStore:
    """The retained state of ``job`` (or every job), read once.

    Raises:
        ConsoleTimeout: the broker did not echo the sync marker in time.
    """
    store = JobStore()

    def tap(msg: MqttMessage) -> None:
        store.feed(msg.topic, msg.payload)

    await fleet.scan_retained(contract.job_filter(job), tap, timeout=timeout)
    return store


async def follow_jobs(
    fleet: AsyncFleet, job: str | None = None
) -> AsyncGenerator[tuple[JobStore, str], None]:
    """Yield ``(store, job)`` after every change to ``job`` (or any job), the retained
    state first. Stop by breaking out of the loop."""
    store = JobStore()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def tap(msg: MqttMessage) -> None:
        changed = store.feed(msg.topic, msg.payload)
        if changed is not None:
            queue.put_nowait(changed)

    filt = contract.job_filter(job)
    remove = fleet.add_tap(tap)
    try:
        async with fleet.mqtt.subscription([(filt, 1)]):
            while True:
                yield store, await queue.get()
    finally:
        remove()
