"""The agent's side of work trading: résumés, bids, assignments, pool jobs.

:class:`TradingHost` is an agent subsystem. It watches the node's supervisor:

- a child that declares a résumé (see :mod:`.workers`) gets it published retained on
  ``agents/{id}/resume`` when it starts, cleared (empty retained message) when it
  stops or fails; and its assignments topic ``tasks/+/assign/{id}`` subscribed at QoS 2;
- a child that declares a pool makes the agent join ``$share/{pool}/pools/{pool}/jobs/+``
  (one subscription per pool, however many members run here).

MqttMessage:

- ``tasks/{task}/request``: every local worker whose résumé lists the skill and meets
  the constraints answers on ``tasks/{task}/proposal/{agent}`` before ``bid_by``
  (its ``bid`` may decline or set ``cost``/``eta``/``plan``; without one it bids
  its résumé's ``cost.usd`` and ``cost.p95_ms``).
- ``tasks/{task}/assign/{agent}``: runs ``run(assignment)`` at most once per
  assignment id, also when the broker redelivers it (QoS 1, brokers without QoS 2)
  and across an agent restart: the id is written to ``{data_dir}/assignments.json``
  by :class:`~devfleet_agent.command_ids.CommandMemory` before it runs, with the
  output once it is known. A repeated id gets its output again, not a second run.
  The output goes retained to ``tasks/{task}/output/result`` and is cleared after
  the assignment's ``retention`` seconds.
- ``pools/{pool}/jobs/{job}``: a member runs it and answers ``pools/{pool}/done/{job}``
  (the application-level acknowledgement: the dispatcher redoes a job without one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from devfleet_base import contract, trading
from devfleet_base.contract import TopicMatch
from devfleet_base.errors import Code, ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage

from ..command_ids import CommandMemory
from ..services import NodeServices
from ..storage import atomic_write_json, read_json
from ..supervisor import SupervisorEvent
from .workers import Worker, worker_of

__all__ = ["TradingHost"]

log = logging.getLogger("devfleet.trading")


class TradingHost:
    """Work trading for one node (see the module docstring).

    Args:
        services: the node; routes and the supervisor listener are registered now.
    """

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self.workers: dict[str, Worker] = {}
        self.assignments = CommandMemory(services.data_dir / "assignments.json", limit=4096)
        # Pool jobs are redone by design (a lost done): memory is enough to answer a
        # redelivery with the same result instead of running it twice.
        self.jobs = CommandMemory(None, limit=8192, keep_for=3600.0)
        self._pools: dict[str, int] = {}
        self._running: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Résumé ids this node published, on disk: after a crash (no clean withdraw)
        # the next start clears those no actor claims again, so no ghost stays retained.
        self._published_path = services.data_dir / "resumes.json"
        services.on_supervisor_event(self._on_event)
        services.route("task", self._on_task)
        services.route("pool_jobs", self._on_job)
        services.add_provider("state", "trading", self.state)

    async def start(self) -> None:
        """Load the assignment ids of earlier runs; listen for task requests; clear
        the résumés an earlier run left behind."""
        self.assignments.load()
        await self.services.subscribe([("tasks/+/request", 1)])  # held for the node's life
        try:
            earlier = read_json(self._published_path)
        except (OSError, ValueError):
            earlier = []
        if isinstance(earlier, list):
            stale = [i for i in earlier if isinstance(i, str) and _is_id(i)]
            if stale:
                self.services.spawn(self._clear_stale(stale), "clear stale résumés")

    async def _clear_stale(self, ids: list[str]) -> None:
        await self.services.wait_connected()
        live = {w.agent_id for w in self.workers.values()}
        for agent_id in ids:
            if agent_id not in live:
                log.info("clearing the résumé %s left by an earlier run", agent_id)
                await self.services.publish_raw(
                    contract.agent_topic(agent_id, "resume"), b"", qos=1, retain=True
                )
        self._save_published()

    def _save_published(self) -> None:
        ids = sorted(w.agent_id for w in self.workers.values() if w.resume is not None)
        try:
            atomic_write_json(self._published_path, ids)
        except (OSError, ValueError) as exc:
            log.error("cannot write %s: %s", self._published_path, exc)

    async def stop(self) -> None:
        """Withdraw every résumé this node published (the workers stop with the agent)."""
        for worker in list(self.workers.values()):
            await self._withdraw(worker)

    def state(self) -> dict[str, Any]:
        """The ``trading`` section of the node's state."""
        return {
            "workers": sorted(w.name for w in self.workers.values()),
            "pools": sorted(self._pools),
        }

    # ---- workers come and go -------------------------------------------------------------

    async def _on_event(self, event: SupervisorEvent) -> None:
        if event.kind == "started":
            info = self.services.supervisor.get(event.child)
            worker = worker_of(event.child, info.instance if info else None, self.services.node)
            if worker is not None:
                await self._announce(worker)
        elif event.kind in ("stopped", "fatal", "restarting"):
            old = self.workers.get(event.child)
            if old is not None:
                await self._withdraw(old)

    async def _announce(self, worker: Worker) -> None:
        old = self.workers.get(worker.child)
        self.workers[worker.child] = worker
        if old is None and worker.pool is not None:
            # One reference per member: the session unsubscribes when the last one leaves.
            self._pools[worker.pool] = self._pools.get(worker.pool, 0) + 1
            await self.services.subscribe([(contract.pool_share_filter(worker.pool), 1)])
        if worker.resume is not None:
            await self.services.subscribe([(contract.task_assign_filter(worker.agent_id), 2)])
            self.services.spawn(self._publish_resume(worker), f"resume {worker.name}")
        log.info(
            "%s %s trades work (skills %s, pool %s)", worker.kind, worker.name, _skills(worker), worker.pool
        )
        if worker.resume is not None:
            self._save_published()
        self.services.state_changed()

    async def _withdraw(self, worker: Worker) -> None:
        if self.workers.pop(worker.child, None) is None:
            return
        if worker.pool is not None:
            self._pools[worker.pool] -= 1
            if not self._pools[worker.pool]:
                del self._pools[worker.pool]
            await self.services.unsubscribe([contract.pool_share_filter(worker.pool)])
        if worker.resume is not None:
            await self.services.unsubscribe([contract.task_assign_filter(worker.agent_id)])
            await self.services.publish_raw(
                contract.agent_topic(worker.agent_id, "resume"), b"", qos=1, retain=True
            )
            self._save_published()
        self.services.state_changed()

    async def _publish_resume(self, worker: Worker) -> None:
        # Components start before the first connection: wait for it.
        await self.services.wait_connected()
        if self.workers.get(worker.child) is worker:
            topic = contract.agent_topic(worker.agent_id, "resume")
            await self.services.publish_json(topic, self._resume_payload(worker), qos=1, retain=True)

    def _resume_payload(self, worker: Worker) -> dict[str, Any]:
        now = time.time()
        return {
            **(worker.resume or {}),
            "agent": worker.agent_id,
            "name": worker.name,
            "node": self.services.node,
            "kind": worker.kind,
            "pool": worker.pool,
            "session": self.services.bd_seq,
            "version": int(now * 1000),  # increasing within and across sessions
            "ts": now,
        }

    def _by_agent(self, agent_id: str) -> Worker | None:
        return next((w for w in self.workers.values() if w.agent_id == agent_id), None)

    # ---- auctions ----------------------------------------------------------------------------

    async def _on_task(self, msg: MqttMessage, match: TopicMatch) -> None:
        if match.leaf == "request":
            await self._on_request(msg, match)
        elif match.leaf == "assign" and match.name is not None:
            worker = self._by_agent(match.name)
            if worker is not None:
                await self._on_assign(worker, msg, match)

    async def _on_request(self, msg: MqttMessage, match: TopicMatch) -> None:
        capable = [w for w in self.workers.values() if w.resume is not None]
        if not capable or not msg.payload:
            return
        try:
            request = trading.read(trading.REQUEST_SCHEMA, contract.decode(msg.payload))
        except ContractError as exc:
            log.warning("task request on %s refused: %s", msg.topic, exc.message)
            return
        if request["task"] != match.ident or time.time() > request["bid_by"]:
            return
        for worker in capable:
            if trading.offers_skill(worker.resume, request["skill"]) and trading.meets(
                worker.resume or {}, request["constraints"]
            ):
                self.services.spawn(self._bid(worker, request), f"bid {worker.name}")

    async def _bid(self, worker: Worker, request: dict[str, Any]) -> None:
        resume = worker.resume or {}
        cost = resume.get("cost", {})
        offer: dict[str, Any] = {"cost": cost.get("usd", 0.0), "eta": cost.get("p95_ms", 1000.0) / 1000.0}
        if worker.bid is not None:
            try:
                custom = await worker.bid(request)
            except (Exception, SystemExit) as exc:  # actor code may call exit()
                log.warning("%s %s: bid raised %s: %s", worker.kind, worker.name, type(exc).__name__, exc)
                return
            if custom is None:
                return
            if not isinstance(custom, dict):
                log.warning("%s %s: bid returned %r, not a dict or None", worker.kind, worker.name, custom)
                return
            offer.update({k: custom[k] for k in ("cost", "eta", "plan") if k in custom})
        proposal = {
            "task": request["task"],
            "agent": worker.agent_id,
            "name": worker.name,
            "node": self.services.node,
            **offer,
            "accredit": resume.get("accredit", []),
            "region": resume.get("region"),
            "ts": time.time(),
        }
        try:
            proposal = trading.read(trading.PROPOSAL_SCHEMA, proposal)
        except ContractError as exc:
            log.warning("%s %s: bid not sent: %s", worker.kind, worker.name, exc.message)
            return
        if time.time() <= request["bid_by"]:
            await self.services.publish_json(
                contract.task_topic(request["task"], "proposal", worker.agent_id), proposal, qos=1
            )

    async def _on_assign(self, worker: Worker, msg: MqttMessage, match: TopicMatch) -> None:
        if not msg.payload:
            return
        try:
            assignment = trading.read(trading.ASSIGN_SCHEMA, contract.decode(msg.payload))
        except ContractError as exc:
            log.warning("assignment on %s refused: %s", msg.topic, exc.message)
            return
        if assignment["task"] != match.ident or assignment["agent"] != worker.agent_id:
            log.warning("assignment on %s names another task or agent; ignored", msg.topic)
            return
        aid = assignment["assignment"]
        if assignment["cancel"]:
            await self._cancel(worker, assignment)
            return
        if aid in self.assignments:
            done = self.assignments.final(aid)
            log.info("assignment %s arrived again: %s", aid, "answered again" if done else "still running")
            if done is not None:
                await self._publish_output(done, assignment["retention"])
            return
        expires_at = assignment["expires_at"]
        # Written before it runs: a restart in the middle must not run it a second time.
        self.assignments.remember(aid, None, expires_at=expires_at)
        if contract.expired(expires_at):
            output = self._output(
                worker, assignment, error=("expired", "the assignment expired before it ran")
            )
        elif worker.run is None:
            output = self._output(
                worker, assignment, error=(Code.UNKNOWN_COMMAND, f"{worker.name} has no run()")
            )
        else:
            running = asyncio.ensure_future(self._run(worker, assignment))
            self._running[aid] = running
            try:
                output = await asyncio.shield(running)
            except asyncio.CancelledError:
                if not running.cancelled():
                    running.cancel()
                    raise  # the agent is stopping, not the requester
                await self._record(worker, "info", f"assignment {aid} cancelled by the requester")
                return  # remembered as cancelled by _cancel: no output, never run again
            finally:
                self._running.pop(aid, None)
        self.assignments.remember(aid, output, expires_at=expires_at)
        await self._publish_output(output, assignment["retention"])

    async def _cancel(self, worker: Worker, assignment: dict[str, Any]) -> None:
        """The requester gave the task to another bidder: stop this run if it is going,
        and make sure a late delivery of the assignment never starts it. Its output
        would otherwise replace the chosen one's retained output."""
        aid = assignment["assignment"]
        if self.assignments.final(aid) is not None:
            return  # finished already; the requester ignores that output
        cancelled = self._output(worker, assignment, error=("cancelled", "the requester cancelled it"))
        self.assignments.remember(aid, cancelled, expires_at=assignment["expires_at"])
        running = self._running.get(aid)
        if running is not None:
            running.cancel()

    async def _record(self, worker: Worker, level: str, message: str) -> None:
        """One line on ``agents/{id}/logs`` (the actors' log format)."""
        log.info("%s %s: %s", worker.kind, worker.name, message)
        record = {"type": "log", "actor_id": worker.agent_id, "name": worker.name, "node": self.services.node,
                  "level": level, "message": message, "timestamp": time.time()}  # fmt: skip
        await self.services.publish_json(contract.agent_topic(worker.agent_id, "logs"), record, qos=1)

    async def _run(self, worker: Worker, assignment: dict[str, Any]) -> dict[str, Any]:
        assert worker.run is not None
        try:
            result = await worker.run(assignment)
            contract.encode(result)
        except DevfleetError as exc:
            return self._output(worker, assignment, error=(exc.code, exc.message))
        except (Exception, SystemExit) as exc:  # actor code may call exit()
            return self._output(worker, assignment, error=(Code.FAILED, f"{type(exc).__name__}: {exc}"))
        return self._output(worker, assignment, result=result)

    def _output(
        self,
        worker: Worker,
        assignment: dict[str, Any],
        *,
        result: Any = None,
        error: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        return {
            "task": assignment["task"],
            "assignment": assignment["assignment"],
            "agent": worker.agent_id,
            "node": self.services.node,
            "step": "result",
            "status": "ok" if error is None else "error",
            "final": True,
            "result": result,
            "error": None if error is None else {"code": error[0], "message": error[1]},
            "ts": time.time(),
        }

    async def _publish_output(self, output: dict[str, Any], retention: float) -> None:
        topic = contract.task_topic(output["task"], "output", output["step"])
        await self.services.publish_json(topic, output, qos=1, retain=True)
        loop = asyncio.get_running_loop()
        loop.call_later(retention, lambda: self.services.spawn(self._clear(topic, output), "clear output"))

    async def _clear(self, topic: str, output: dict[str, Any]) -> None:
        await self.services.publish_raw(topic, b"", qos=1, retain=True)

    # ---- pools -------------------------------------------------------------------------------

    async def _on_job(self, msg: MqttMessage, match: TopicMatch) -> None:
        pool, job_id = match.name, match.ident
        worker = next((w for w in self.workers.values() if w.pool == pool and w.run is not None), None)
        if worker is None or job_id is None or pool is None or not msg.payload:
            return  # a share delivered just after the member left: the dispatcher redoes it
        done_topic = contract.pool_topic(pool, "done", job_id)
        if job_id in self.jobs:
            final = self.jobs.final(job_id)
            if final is not None:
                await self.services.publish_json(done_topic, final, qos=1)
            return
        self.jobs.remember(job_id, None, expires_at=None)
        done: dict[str, Any] = {
            "job": job_id,
            "pool": pool,
            "agent": worker.agent_id,
            "node": self.services.node,
        }
        try:
            job = trading.read(trading.JOB_SCHEMA, contract.decode(msg.payload))
            result = await worker.run(job)  # type: ignore[misc]  # checked above
            contract.encode(result)
            done.update(status="ok", result=result)
        except DevfleetError as exc:
            done.update(status="error", error={"code": exc.code, "message": exc.message})
        except (Exception, SystemExit) as exc:  # actor code may call exit()
            done.update(
                status="error", error={"code": Code.FAILED, "message": f"{type(exc).__name__}: {exc}"}
            )
        self.jobs.remember(job_id, done, expires_at=None)
        await self.services.publish_json(done_topic, done, qos=1)


def _skills(worker: Worker) -> str:
    return ", ".join((worker.resume or {}).get("skills", [])) or "none"


def _is_id(value: str) -> bool:
    try:
        contract.check_id(value)
    except ContractError:
        return False
    return True
