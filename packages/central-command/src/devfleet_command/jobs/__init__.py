"""Fleet jobs: one operation over many nodes in stages, gated by health, aborted and
reverted past a failure threshold, retained on ``jobs/...`` so any console can
watch, abort or resume it. See docs/jobs.md.

Usage::

    async with AsyncFleet.connect(url) as fleet:
        spec = new_job(fleet, Operation("upgrade", {"spec": "ledstrip==1.2"}),
                       resolve_target(fleet.model, selectors=["arch=armv7l"]),
                       canary="5%", batch="25%", gate=Gate(soak=120))
        state = await JobRunner(fleet, JobState.fresh(spec)).run()

Modules: :mod:`.spec` (what a job is), :mod:`.selector` (choosing nodes),
:mod:`.plan` (sans-IO progress, command ids, reverts), :mod:`.store` (what is
retained), :mod:`.runner` (the async engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from devfleet_base import contract

from ..errors import InvalidRequest
from .plan import JobState, NodeProgress, command_id
from .runner import JobRunner
from .selector import Selector, node_fields
from .spec import Gate, JobSpec, Operation, cut_stages
from .store import JobStore, JobView, follow_jobs, load_jobs

if TYPE_CHECKING:
    from ..aio import AsyncFleet
    from ..model import FleetModel

__all__ = [
    "Gate",
    "JobBusy",
    "JobRunner",
    "JobSpec",
    "JobState",
    "JobStore",
    "JobView",
    "NodeProgress",
    "Operation",
    "Selector",
    "abort_job",
    "command_id",
    "follow_jobs",
    "load_jobs",
    "new_job",
    "resolve_target",
    "resume_job",
]

TAKEOVER_AFTER = 3.0
"""Status heartbeats a runner may miss before another console takes its job over."""


class JobBusy(InvalidRequest):
    """Another console is running the job (its status heartbeat is fresh)."""


def resolve_target(
    model: FleetModel,
    *,
    everything: bool = False,
    groups: list[str] | tuple[str, ...] = (),
    nodes: list[str] | tuple[str, ...] = (),
    selectors: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The node names a job reaches, sorted: ``nodes``, members of ``groups``, or
    every node (``everything``, or selectors alone), kept where every selector holds.

    Raises:
        InvalidRequest: nothing chosen, a node never seen, a bad selector, or no node matches.
    """
    parsed = [Selector.parse(s) for s in selectors]
    if not (everything or groups or nodes or parsed):
        raise InvalidRequest("choose the nodes: --all, --group G, --nodes a,b or --select FIELD=VALUE")
    unknown = [n for n in nodes if n not in model]
    if unknown:
        raise InvalidRequest(f"no node named {', '.join(sorted(unknown))} is known (nothing started)")
    chosen: set[str] = set(nodes)
    for group in groups:
        chosen.update(v.name for v in model.in_group(group))
    if everything or not (groups or nodes):
        chosen.update(v.name for v in model)
    views = [model.get(n) for n in sorted(chosen)]
    names = [v.name for v in views if v is not None and all(s.matches(node_fields(v)) for s in parsed)]
    if not names:
        raise InvalidRequest("no node matches the target (nothing started)")
    return names


def new_job(
    fleet: AsyncFleet,
    operation: Operation,
    nodes: list[str],
    *,
    canary: str | int = 1,
    batch: str | int = "100%",
    gate: Gate | None = None,
    expires_in: float = 3600.0,
    target: dict[str, Any] | None = None,
) -> JobSpec:
    """A new job over ``nodes`` (in order) cut into a canary and batches.

    Raises:
        InvalidRequest: bad amounts, or no nodes.
    """
    if not nodes:
        raise InvalidRequest("a job needs at least one node")
    now = time.time()
    return JobSpec(
        job="j" + contract.new_id()[:11],
        operation=operation,
        stages=tuple(tuple(s) for s in cut_stages(nodes, canary, batch)),
        gate=gate or Gate(),
        created_at=now,
        expires_at=now + expires_in,
        target=target or {},
        created_by=fleet.mqtt.options.client_id,
    )


async def resume_job(
    fleet: AsyncFleet, job: str, *, takeover_after: float = TAKEOVER_AFTER, **runner_options: Any
) -> JobRunner:
    """A runner for a retained job whose console is gone (no status heartbeat for
    ``takeover_after`` seconds; waited for here when needed).

    Raises:
        InvalidRequest: no such job, or it already ended.
        JobBusy: another console's runner is alive.
    """
    view = await _view(fleet, job)
    if view.final:
        raise InvalidRequest(f"job {job} already ended ({view.state})")
    heard = (view.status or {}).get("heartbeat_at")
    if isinstance(heard, (int, float)) and time.time() - heard < takeover_after:
        beat = heard
        with contextlib.suppress(asyncio.TimeoutError):
            async for store, _ in _follow_with_timeout(fleet, job, takeover_after - (time.time() - heard)):
                fresh = (store.jobs.get(job) or JobView(job)).status or {}
                if isinstance(fresh.get("heartbeat_at"), (int, float)) and fresh["heartbeat_at"] > beat:
                    raise JobBusy(
                        f"job {job} is being run by {fresh.get('runner')} (heard from it just now): nothing done"
                    )
        view = await _view(fleet, job)
    return JobRunner(fleet, view.job_state(), **runner_options)


async def abort_job(
    fleet: AsyncFleet, job: str, *, takeover_after: float = TAKEOVER_AFTER, **runner_options: Any
) -> JobRunner | None:
    """Ask ``job`` to abort (retained, so its runner sees it even after a reconnect).

    Returns:
        None when a live runner will revert it; otherwise a runner (already in
        ``aborting``) that reverts it here: ``await runner.run()``.

    Raises:
        InvalidRequest: no such job, or it already ended.
    """
    view = await _view(fleet, job)
    if view.final:
        raise InvalidRequest(f"job {job} already ended ({view.state})")
    doc = {"action": "abort", "by": fleet.mqtt.options.client_id, "ts": time.time()}
    await fleet.mqtt.publish(
        contract.job_topic(job, "control"), contract.encode(doc), qos=1, retain=True, wait=True
    )
    try:
        runner = await resume_job(fleet, job, takeover_after=takeover_after, **runner_options)
    except JobBusy:
        return None
    runner.state.state = "aborting"
    runner.state.reason = f"aborted by {doc['by']}"
    return runner


async def _view(fleet: AsyncFleet, job: str) -> JobView:
    contract.check_id(job, "job id")
    store = await load_jobs(fleet, job)
    view = store.jobs.get(job)
    if view is None or view.spec is None:
        raise InvalidRequest(f"no job {job} is retained on the broker")
    return view


async def _follow_with_timeout(fleet: AsyncFleet, job: str, seconds: float) -> Any:
    deadline = time.monotonic() + max(0.0, seconds)
    stream = follow_jobs(fleet, job)
    try:
        while True:
            yield await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - time.monotonic()))
    finally:
        await stream.aclose()
