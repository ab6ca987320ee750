"""Work trading from the console: the résumé registry, auctions and pool dispatch.

:class:`ResumeRegistry` is sans-IO: fed ``agents/{id}/resume`` messages, it holds the
latest résumé of every actor (an empty retained message removes it), and joins them
with the fleet model's node liveness (a résumé whose node is lost or offline is
``available: false``).

:class:`TradingOps` is mixed into :class:`~devfleet_command.aio.AsyncFleet`:
``resumes()``, ``auction()`` (request → proposals → choice → assign at QoS 2 →
output, with the next bidder when the assignee's node is lost or it is silent past
its eta) and ``pool_run()`` (jobs through a shared subscription, each redone after
``ack_timeout`` without a done). See docs/trading.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devfleet_base import contract, trading
from devfleet_base.errors import ContractError
from devfleet_base.mqtt import MqttMessage

from .errors import ConnectError, InvalidName, InvalidRequest

if TYPE_CHECKING:
    from devfleet_base.mqtt import MqttClient

    from .model import FleetModel

__all__ = ["ResumeRegistry", "TradingOps", "build_request"]

_UNAVAILABLE = ("lost", "offline")


class ResumeRegistry:
    """The latest résumé per agent id (see the module docstring)."""

    def __init__(self) -> None:
        self.resumes: dict[str, dict[str, Any]] = {}
        self.invalid = 0

    def feed(self, topic: str, payload: bytes) -> None:
        """Take one ``agents/{id}/resume`` message (junk is counted, not raised)."""
        agent = topic.split("/")[1]
        if not payload:
            self.resumes.pop(agent, None)
            return
        try:
            data = contract.decode(payload)
            if not isinstance(data, dict):
                raise ContractError("not an object")
            trading.check_resume(
                {k: data.get(k) for k in ("skills", "cost", "region", "accredit") if k in data}
            )
            if not isinstance(data.get("node"), str):
                raise ContractError("no node")
        except ContractError:
            self.invalid += 1
            return
        old = self.resumes.get(agent)
        if old is None or _order(data) >= _order(old):
            self.resumes[agent] = {**data, "agent": agent}

    def query(
        self, model: FleetModel, *, skill: str | None = None, region: str | None = None
    ) -> list[dict[str, Any]]:
        """Résumés offering ``skill`` in ``region`` (None: any), each with ``available``
        and ``node_status`` from ``model``; sorted by node and name."""
        out = []
        for resume in self.resumes.values():
            if skill is not None and skill not in resume.get("skills", ()):
                continue
            if region is not None and resume.get("region") != region:
                continue
            view = model.get(resume["node"])
            status = view.health if view is not None else "unknown"
            out.append(
                {**resume, "node_status": status, "available": status not in (*_UNAVAILABLE, "unknown")}
            )
        return sorted(out, key=lambda r: (r["node"], str(r.get("name"))))


def _order(resume: dict[str, Any]) -> tuple[int, int]:
    session, version = resume.get("session"), resume.get("version")
    return (session if isinstance(session, int) else 0, version if isinstance(version, int) else 0)


def build_request(
    skill: str,
    inputs: Any = None,
    *,
    deadline: float = 2.0,
    constraints: dict[str, Any] | None = None,
    retention: float = trading.DEFAULT_RETENTION,
    grace: float = 5.0,
) -> dict[str, Any]:
    """A validated ``tasks/{task}/request`` payload with a fresh task id.

    Raises:
        InvalidRequest: a bad skill, inputs that are not JSON, constraints, or a deadline
            outside (0, 3600] s / grace outside [0, 86400] s.
    """
    if not 0 < deadline <= 3600 or not 0 <= grace <= 86400:
        raise InvalidRequest("auction: deadline must be in (0, 3600] s and grace in [0, 86400] s")
    now = time.time()
    try:
        request = trading.read(
            trading.REQUEST_SCHEMA,
            {
                "task": contract.new_id(),
                "skill": skill,
                "inputs": inputs,
                "bid_by": now + deadline,
                "constraints": constraints or {},
                "retention": retention,
                "ts": now,
            },
        )
        contract.encode(request)
    except (ContractError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"auction: {getattr(exc, 'message', exc)}") from None
    return request


class TradingOps:
    """Work trading over the fleet's session (a mixin of ``AsyncFleet``)."""

    mqtt: MqttClient
    model: FleetModel
    registry: ResumeRegistry
    _taps: set[Callable[[MqttMessage], None]]

    def resumes(self, skill: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        """Known résumés joined with node liveness (see :meth:`ResumeRegistry.query`)."""
        return self.registry.query(self.model, skill=skill, region=region)

    async def auction(
        self,
        skill: str,
        inputs: Any = None,
        *,
        deadline: float = 2.0,
        constraints: dict[str, Any] | None = None,
        policy: trading.ChoicePolicy = trading.cheapest,
        expect: int | None = None,
        grace: float = 5.0,
        retention: float = trading.DEFAULT_RETENTION,
        assign_qos: int = 2,
    ) -> dict[str, Any]:
        """Auction one task and return its one final outcome.

        Args:
            skill: the skill asked for.
            inputs: JSON inputs for the assignee.
            deadline: seconds bids are taken.
            constraints: ``accredit`` (list), ``region``, ``max_usd``.
            policy: ranks the proposals (default: the cheapest that meets the constraints).
            expect: close bidding early once this many proposals are in (default: the
                number of available résumés that offer the skill and meet the constraints).
            grace: seconds past a proposal's eta before the assignee counts as silent.
            retention: seconds the assignee keeps the output retained.
            assign_qos: 2, or 1 for brokers without QoS 2 (the assignment id keeps it at most once).

        Returns:
            ``{"task", "status", "agent", "name", "node", "result", "error", "proposals",
            "attempts", "seconds"}``; status is ``ok``, ``error`` (the assignee's run
            failed), ``no_bids`` or ``failed`` (every bidder was lost or silent).

        Raises:
            InvalidRequest: invalid arguments.
            ConnectError: the broker did not take the request.
        """
        request = build_request(
            skill, inputs, deadline=deadline, constraints=constraints, retention=retention, grace=grace
        )
        if expect is not None and expect < 0:
            raise InvalidRequest("auction: expect must be >= 0")
        if assign_qos not in (1, 2):
            raise InvalidRequest("auction: assign_qos must be 1 or 2")
        t0 = time.monotonic()
        task = request["task"]
        if expect is None:
            expect = sum(
                1 for r in self.resumes(skill) if r["available"] and trading.meets(r, request["constraints"])
            )
        loop = asyncio.get_running_loop()
        proposals: dict[str, dict[str, Any]] = {}
        enough = asyncio.Event()
        outputs: dict[str, asyncio.Future[dict[str, Any]]] = {}
        prefix = f"tasks/{task}/"

        def tap(msg: MqttMessage) -> None:
            if not msg.topic.startswith(prefix) or not msg.payload:
                return
            try:
                data = contract.decode(msg.payload)
                if "/proposal/" in msg.topic:
                    offer = trading.read(trading.PROPOSAL_SCHEMA, data)
                    if time.time() <= request["bid_by"] and offer["task"] == task:
                        proposals.setdefault(offer["agent"], offer)
                        if expect and len(proposals) >= expect:
                            enough.set()
                elif "/output/" in msg.topic:
                    out = trading.read(trading.OUTPUT_SCHEMA, data)
                    fut = outputs.get(out["assignment"])
                    if fut is not None and not fut.done() and out["final"]:
                        fut.set_result(out)
            except ContractError:
                return

        filters = [(f"{prefix}proposal/+", 1), (f"{prefix}output/+", 1)]
        self._taps.add(tap)
        try:
            async with self.mqtt.subscription(filters):
                await self._publish(contract.task_topic(task, "request"), request, qos=1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(enough.wait(), max(0.0, request["bid_by"] - time.time()))
                ranked = policy(request, list(proposals.values()))
                attempts: list[dict[str, Any]] = []
                for offer in ranked:
                    assignment_id = contract.new_id()
                    outputs[assignment_id] = fut = loop.create_future()
                    assignment = {
                        "task": task,
                        "agent": offer["agent"],
                        "assignment": assignment_id,
                        "skill": skill,
                        "inputs": inputs,
                        "plan": offer.get("plan", []),
                        "retention": retention,
                        "ts": time.time(),
                    }
                    await self._publish(
                        contract.task_topic(task, "assign", offer["agent"]), assignment, qos=assign_qos
                    )
                    out, why = await self._await_output(fut, offer, offer["eta"] + grace)
                    if out is not None:
                        return self._outcome(task, out["status"], offer, out, len(proposals), attempts, t0)
                    attempts.append({"agent": offer["agent"], "node": offer["node"], "reason": why})
                    # Tell it to stop (if it is alive): its late output would replace the next one's.
                    cancel = {**assignment, "cancel": True, "ts": time.time()}
                    with contextlib.suppress(ConnectError):
                        await self._publish(
                            contract.task_topic(task, "assign", offer["agent"]), cancel, qos=assign_qos
                        )
                status = "failed" if ranked else "no_bids"
                return self._outcome(task, status, None, None, len(proposals), attempts, t0)
        finally:
            self._taps.discard(tap)

    async def _await_output(
        self, fut: asyncio.Future[dict[str, Any]], offer: dict[str, Any], patience: float
    ) -> tuple[dict[str, Any] | None, str]:
        """The final output, or ``(None, why)`` once the assignee's node is lost or
        offline (its will) or ``patience`` seconds pass."""
        end = time.monotonic() + patience
        while True:
            view = self.model.get(offer["node"])
            if view is not None and view.status in _UNAVAILABLE and not fut.done():
                return None, f"node {view.status}"
            left = end - time.monotonic()
            if left <= 0:
                return None, "silent past its eta"
            with contextlib.suppress(TimeoutError):
                # Short slices: the node's status arrives through the model, not this future.
                return await asyncio.wait_for(asyncio.shield(fut), min(left, 0.05)), ""

    @staticmethod
    def _outcome(
        task: str,
        status: str,
        offer: dict[str, Any] | None,
        out: dict[str, Any] | None,
        proposals: int,
        attempts: list[dict[str, Any]],
        t0: float,
    ) -> dict[str, Any]:
        return {
            "task": task,
            "status": status,
            "agent": offer["agent"] if offer else None,
            "name": offer["name"] if offer else None,
            "node": offer["node"] if offer else None,
            "cost": offer["cost"] if offer else None,
            "result": out.get("result") if out else None,
            "error": out.get("error") if out else None,
            "proposals": proposals,
            "attempts": attempts,
            "seconds": round(time.monotonic() - t0, 4),
        }

    async def _publish(self, topic: str, payload: Any, *, qos: int) -> None:
        if not await self.mqtt.publish(topic, contract.encode(payload), qos=qos, wait=True):
            raise ConnectError(f"the broker did not take the message on {topic}")

    async def pool_run(
        self,
        pool: str,
        jobs: list[Any],
        *,
        ack_timeout: float = 10.0,
        window: int = 100,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run ``jobs`` (their JSON inputs) on the members of ``pool``, each exactly once
        as far as results go: a job without a done within ``ack_timeout`` seconds of
        its (re)sending is sent again (and taken by any member still there).

        Args:
            pool: the pool name.
            jobs: the inputs, one per job.
            ack_timeout: seconds before a job without a done is redone.
            window: most jobs in flight at once.
            timeout: seconds for the whole run (None: no limit).

        Returns:
            ``{"results": [result per job, in order], "done", "redone", "duplicates",
            "errors", "spread": {node: jobs}, "seconds"}``.

        Raises:
            InvalidName: a bad pool name.
            InvalidRequest: a window below 1.
            TimeoutError: ``timeout`` passed before every job was done.
        """
        try:
            contract.check_name(pool, "pool")
        except ContractError as exc:
            raise InvalidName(exc.message) from None
        if window < 1:
            raise InvalidRequest("window must be at least 1")
        t0 = time.monotonic()
        batch = contract.new_id()[:12]
        ids = [f"{batch}-{i}" for i in range(len(jobs))]
        index = {job: i for i, job in enumerate(ids)}
        results: list[Any] = [None] * len(jobs)
        finished: set[str] = set()
        spread: Counter[str] = Counter()
        counts = {"redone": 0, "duplicates": 0, "errors": 0}
        inflight: dict[str, tuple[float, int]] = {}
        wake = asyncio.Event()
        done_filter = f"pools/{pool}/done/+"

        def tap(msg: MqttMessage) -> None:
            match = contract.parse_topic(msg.topic)
            if match is None or match.kind != "pool_done" or match.name != pool or match.ident not in index:
                return
            job = match.ident
            if job in finished:
                counts["duplicates"] += 1
                return
            try:
                done = contract.decode(msg.payload)
            except ContractError:
                return
            if not isinstance(done, dict):
                return
            finished.add(job)
            inflight.pop(job, None)
            results[index[job]] = done.get("result")
            counts["errors"] += done.get("status") != "ok"
            spread[str(done.get("node"))] += 1
            wake.set()

        async def send(job: str, attempt: int) -> None:
            payload = {
                "job": job,
                "pool": pool,
                "inputs": jobs[index[job]],
                "attempt": attempt,
                "ts": time.time(),
            }
            inflight[job] = (time.monotonic() + ack_timeout, attempt)
            await self._publish(contract.pool_topic(pool, "jobs", job), payload, qos=1)

        self._taps.add(tap)
        try:
            async with self.mqtt.subscription([(done_filter, 1)]):
                queue = list(reversed(ids))
                while len(finished) < len(ids):
                    if timeout is not None and time.monotonic() - t0 > timeout:
                        raise TimeoutError(
                            f"pool {pool}: {len(ids) - len(finished)} job(s) not done in {timeout:g} s"
                        )
                    now = time.monotonic()
                    for job, (until, attempt) in list(inflight.items()):
                        if until < now and job not in finished:
                            counts["redone"] += 1
                            await send(job, attempt + 1)
                    while queue and len(inflight) < window:
                        await send(queue.pop(), 1)
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), min(ack_timeout, 0.1))
        finally:
            self._taps.discard(tap)
        return {
            "results": results,
            "done": len(finished),
            **counts,
            "spread": dict(spread),
            "seconds": round(time.monotonic() - t0, 4),
        }
