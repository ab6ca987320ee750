"""The async half of a job: run a :class:`~.plan.JobState` over an :class:`AsyncFleet`.

Each stage: send the operation to its nodes (deterministic command ids, at most
``concurrency`` in flight), then soak: every changed node must stay online with
healthy components for ``gate.soak`` seconds and answer the optional health
command. Any failure that passes the gate's threshold aborts the job: nodes not
reached are skipped and every node the job changed is reverted. Offline nodes
wait (retried whenever they are back) until the job's expiry.

Everything a resuming console needs is retained before it acts: a node's record
says ``sent`` (with the command id) before the command goes out, so a console
that dies mid-step leaves a record the next one completes with the same id.
Idea: AWS IoT Jobs' rollout and abort configs, hawkBit's rollout groups with
success and error thresholds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import Code, DevfleetError
from devfleet_base.mqtt import MqttMessage

from ..actors import actor_rows
from ..errors import ConnectError, ConsoleTimeout
from .plan import (
    JobState,
    NodeProgress,
    command_id,
    component_problem,
    config_before,
    previous_from,
    revert_command,
)
from .spec import JobSpec

if TYPE_CHECKING:
    from ..aio import AsyncFleet
    from ..model import FleetModel

__all__ = ["JobRunner"]

log = logging.getLogger("devfleet.jobs")

_now = time.time


class JobRunner:
    """Runs (or resumes) one job; ``await runner.run()`` returns the final state.

    Args:
        fleet: a started :class:`AsyncFleet`.
        state: the job (``JobState.fresh(spec)``, or a retained one to resume).
        concurrency: commands in flight at once.
        poll: seconds between health checks during a soak.
        status_interval: seconds between status heartbeats (other consoles judge
            the runner gone after three missed ones).
        on_change: called (with the state) after every change, for progress displays.
    """

    def __init__(
        self,
        fleet: AsyncFleet,
        state: JobState,
        *,
        concurrency: int = 200,
        poll: float = 0.1,
        status_interval: float = 1.0,
        on_change: Callable[[JobState], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self.state = state
        self.spec: JobSpec = state.spec
        self.concurrency = concurrency
        self.poll = poll
        self.status_interval = status_interval
        self.on_change = on_change
        self.runner_id = fleet.mqtt.options.client_id
        self._abort = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._dirty = asyncio.Event()
        self._stopping = False

    # ---- retained records ----------------------------------------------------------------

    async def _retain(self, topic: str, doc: dict[str, Any]) -> None:
        if not await self.fleet.mqtt.publish(topic, contract.encode(doc), qos=1, retain=True, wait=True):
            raise ConnectError(f"the broker did not take {topic}")

    async def publish_detached(self) -> None:
        """Retain the job's spec and status without running it (``devfleet job start
        --detach``): a runner that resumes the job later finds both."""
        await self._retain(contract.job_topic(self.spec.job, "spec"), self.spec.to_dict())
        await self._put_status()

    async def _put(self, p: NodeProgress, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(p, key, value)
        p.updated_at = _now()
        await self._retain(contract.job_node_topic(self.spec.job, p.node), p.to_dict())
        self._changed()

    def _changed(self) -> None:
        self._dirty.set()
        if self.on_change is not None:
            try:
                self.on_change(self.state)
            except Exception:
                log.exception("job progress callback failed")

    async def _put_status(self) -> None:
        await self._retain(
            contract.job_topic(self.spec.job, "status"), self.state.status(now=_now(), runner=self.runner_id)
        )

    async def _status_loop(self) -> None:
        # Stopped by a flag, not cancel(): Python 3.11's wait_for can swallow a cancel
        # that lands as its inner wait completes, and the loop would run forever.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.status_interval)
            self._dirty.clear()
            if self._stopping:
                return
            await self._put_status()
            await asyncio.sleep(min(0.2, self.status_interval))  # at most ~5 status writes a second

    def _on_control(self, msg: MqttMessage) -> None:
        if msg.topic != contract.job_topic(self.spec.job, "control") or not msg.payload:
            return
        with contextlib.suppress(DevfleetError):
            data = contract.decode(msg.payload)
            if isinstance(data, dict) and data.get("action") == "abort":
                self.abort(f"aborted by {data.get('by') or 'an operator'}")

    def abort(self, reason: str) -> None:
        """Ask the job to stop and revert (it does so at its next step)."""
        if not self._abort.is_set():
            self.state.reason = reason
            self._abort.set()

    # ---- the job -------------------------------------------------------------------------

    async def run(self) -> JobState:
        """Run the job to its end: ``completed``, ``incomplete`` (nodes offline at
        its expiry) or ``aborted``.

        Raises:
            ConnectError: the broker stopped taking the job's records.
        """
        control = contract.job_topic(self.spec.job, "control")
        remove_tap = self.fleet.add_tap(self._on_control)
        async with self.fleet.mqtt.subscription([(control, 1)]):
            await self._retain(contract.job_topic(self.spec.job, "spec"), self.spec.to_dict())
            if self.state.state == "aborting":
                self._abort.set()
            status_task = asyncio.create_task(self._status_loop(), name=f"job-{self.spec.job}-status")
            try:
                if not self._abort.is_set():
                    for index in range(len(self.spec.stages)):
                        self.state.stage = index
                        await self._stage(index)
                        if self._abort.is_set():
                            break
                if not self._abort.is_set():
                    await self._stragglers()
                if self._abort.is_set():
                    await self._revert_all()
                else:
                    left = [p for p in self.state.nodes.values() if not p.final]
                    for p in left:
                        await self._put(p, state="offline", error="not reached before the job expired")
                    self.state.state = "incomplete" if self.state.tally()["offline"] else "completed"
            finally:
                self._stopping = True
                self._dirty.set()
                with contextlib.suppress(Exception):
                    await status_task
                remove_tap()
        await self._put_status()
        self._changed()
        return self.state

    def _expired(self) -> bool:
        return _now() >= self.spec.expires_at

    def _online(self, node: str) -> bool:
        view = self.fleet.model.get(node)
        return view is not None and view.online and not view.awaiting

    def _any_online(self, names: list[str]) -> Callable[[FleetModel], bool]:
        """A predicate for ``wait_for``: one of ``names`` is online, or an abort came."""

        def check(m: FleetModel) -> bool:
            return self._abort.is_set() or any((v := m.get(n)) is not None and v.online for n in names)

        return check

    def _fail(self, p: NodeProgress, error: str) -> None:
        p.state, p.error = "failed", error
        if self.state.exceeded():
            self.abort(f"{self.state.failures} of {self.state.tried} nodes failed (last: {p.node}: {error})")

    async def _stage(self, index: int) -> None:
        stage = [self.state.nodes[n] for n in self.spec.stages[index]]
        earlier = [p for p in self.state.nodes.values() if p.stage < index and p.state == "waiting"]
        todo = [p for p in stage if not p.final] + [p for p in earlier if self._online(p.node)]
        await self._advance(todo)

    async def _advance(self, todo: list[NodeProgress]) -> None:
        """Apply the operation to ``todo`` (those not yet changed) and soak them."""
        await asyncio.gather(
            *(self._apply(p) for p in todo if not (p.changed and p.state in ("soaking", "waiting")))
        )
        soaking = [
            p for p in todo if p.changed and p.state in ("soaking", "waiting") and self._online(p.node)
        ]
        for p in soaking:
            p.state = "soaking"
        await self._soak(soaking)

    async def _apply(self, p: NodeProgress) -> None:
        op = self.spec.operation
        async with self._sem:
            if self._abort.is_set() or self._expired():
                return
            if not self._online(p.node):
                if p.state != "waiting":
                    await self._put(p, state="waiting", error="offline")
                return
            cmd_id = command_id(self.spec.job, p.node, "do")
            resumed = p.state == "sent"
            if op.verb == "spawn" and await self._spawn_settled(p, resumed=resumed):
                return
            if not resumed:  # recorded before it goes out: a resuming console resends this id
                before = self.fleet.model.get(p.node)
                previous = p.previous  # taken once: a node back after applying it reports the new config
                if p.cmd is None and op.verb == "configure" and before is not None:
                    previous = config_before(before.cfg)
                await self._put(p, state="sent", cmd=cmd_id, error=None, previous=previous)
            try:
                result = await self._send(p.node, op.verb, op.args, cmd_id)
            except _Offline:
                await self._put(p, state="waiting", error="went offline before answering")
                return
            except DevfleetError as exc:
                if resumed and op.verb == "spawn" and exc.code == Code.CONFLICT:
                    # The crashed console's retained spawn reached the node first.
                    await self._put(p, state="soaking", changed=True, error=None)
                    return
                if op.verb == "spawn" and exc.code == Code.FAILED:
                    p.changed = True  # a failed start stays listed on the node: a revert stops it
                self._fail(p, exc.message)
                await self._put(p)
                return
            await self._put(
                p, state="soaking", changed=True, previous=previous_from(op.verb, result, p.previous)
            )

    def _actor(self, node: str) -> dict[str, Any] | None:
        """The spawned actor's row in ``node``'s retained state, or None."""
        name = self.spec.operation.args.get("name")
        return next((row for row in actor_rows(self.fleet.model, node) if row["name"] == name), None)

    async def _spawn_settled(self, p: NodeProgress, *, resumed: bool) -> bool:
        """Whether a spawn needs no sending: a spawn carries no command id the node
        could deduplicate on, so its actor's presence decides. Resumed (recorded
        ``sent``: the crashed console may have spawned it) and running: done, not
        spawned twice. Not yet sent and already running: not the job's actor to
        change (and never to stop on revert), so the node fails, unless the
        operation says ``replace`` (then it is sent, and a revert stops it)."""
        row = self._actor(p.node)
        if row is None or row.get("state") == "failed":
            return False
        if not resumed and self.spec.operation.args.get("replace") is True:
            return False
        if resumed:
            await self._put(p, state="soaking", changed=True, error=None)
        else:
            self._fail(p, f"actor {row['name']} already runs on {p.node} (not started by this job)")
            await self._put(p)
        return True

    async def _send(self, node: str, verb: str, args: dict[str, Any], cmd_id: str) -> Any:
        """Send one step and wait for its final receipt (or the node going offline)."""
        timeout = max(0.5, min(self.spec.operation.timeout, self.spec.expires_at - _now()))
        if verb == "spawn":
            # Not retained: the job itself waits for offline nodes, and an aborted job
            # must not leave a spawn on the broker for a node that comes back later.
            return await self.fleet.spawn(node, args, retain=False, timeout=timeout)
        if verb == "stop" and self.spec.operation.verb == "spawn":
            return await self.fleet.stop_actor(node, str(args.get("name")), timeout=timeout)
        handle = await self.fleet.send(node, verb, args, timeout=timeout, cmd_id=cmd_id)
        while not handle.done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.wait(), 0.25)
            if not handle.done and not self._online(node):
                raise _Offline
        return handle.raise_for_state()

    async def _soak(self, nodes: list[NodeProgress]) -> None:
        gate = self.spec.gate
        until = {p.node: _now() + gate.soak for p in nodes}
        active = list(nodes)
        passed: list[NodeProgress] = []
        while active and not self._abort.is_set():
            now = _now()
            for p in list(active):
                view = self.fleet.model.get(p.node)
                if view is None or not view.online:
                    active.remove(p)
                    await self._put(p, state="waiting", error="went offline during the soak")
                    continue
                settled = now >= until[p.node]
                problem = component_problem(view.components, settled=settled) if gate.components else None
                if problem is None and self.spec.operation.verb == "spawn":
                    problem = self._actor_problem(p.node)
                if problem is not None:
                    active.remove(p)
                    self._fail(p, problem)
                    await self._put(p)
                elif settled:
                    active.remove(p)
                    passed.append(p)
            if active:
                await asyncio.sleep(self.poll)
        if self._abort.is_set():
            return
        await asyncio.gather(*(self._health(p) for p in passed))

    def _actor_problem(self, node: str) -> str | None:
        """Why the spawned actor is unhealthy on ``node`` (its state says failed), or None."""
        row = self._actor(node)
        if row is None:
            return None  # the node's state may not list it yet; its receipt said it started
        if row.get("state") == "failed":
            return f"actor {row['name']} failed: {row.get('last_error') or 'no reason given'}"
        return None

    async def _health(self, p: NodeProgress) -> None:
        check = self.spec.gate.health
        if check is not None:
            async with self._sem:
                try:
                    handle = await self.fleet.send(
                        p.node, check["verb"], check.get("args") or {}, timeout=self.spec.operation.timeout
                    )
                    await handle.wait()
                    handle.raise_for_state()
                except DevfleetError as exc:
                    self._fail(p, f"health check {check['verb']}: {exc.message}")
                    await self._put(p)
                    return
        await self._put(p, state="done", error=None)

    async def _stragglers(self) -> None:
        """Nodes offline when their turn came: do them whenever they are back, until
        the job expires."""
        while not self._abort.is_set() and not self._expired():
            waiting = [p for p in self.state.nodes.values() if p.state in ("waiting", "sent", "soaking")]
            if not waiting:
                return
            back = [p for p in waiting if self._online(p.node)]
            if back:
                await self._advance(back)
                continue
            names = [p.node for p in waiting]
            with contextlib.suppress(ConsoleTimeout):
                await self.fleet.wait_for(
                    self._any_online(names),
                    max(0.1, min(self.status_interval, self.spec.expires_at - _now())),
                )

    async def _revert_all(self) -> None:
        """Skip the nodes not reached; revert every node changed (offline ones when
        they are back, until the job expires)."""
        self.state.state = "aborting"
        await self._put_status()
        for p in self.state.nodes.values():
            if not p.changed and p.state in ("pending", "waiting", "sent"):
                await self._put(p, state="skipped")
        while True:
            todo = [
                p
                for p in self.state.nodes.values()
                if p.changed and p.state not in ("reverted", "revert_failed")
            ]
            if not todo:
                break
            back = [p for p in todo if self._online(p.node)]
            await asyncio.gather(*(self._revert(p) for p in back))
            rest = [p.node for p in todo if p not in back]
            if rest and not back:
                if self._expired():
                    for p in todo:
                        await self._put(
                            p, state="revert_failed", error=f"{p.error or 'changed'}; offline, not reverted"
                        )
                    break
                with contextlib.suppress(ConsoleTimeout):
                    await self.fleet.wait_for(
                        self._any_online(rest),
                        max(0.1, min(self.status_interval, self.spec.expires_at - _now())),
                    )
        self.state.state = "aborted"

    async def _revert(self, p: NodeProgress) -> None:
        try:
            step = revert_command(self.spec, p)
        except DevfleetError as exc:
            await self._put(p, state="revert_failed", error=exc.message)
            return
        if step is None:
            await self._put(p, state="revert_failed", error=f"{self.spec.operation.verb} has no revert")
            return
        cmd_id = command_id(self.spec.job, p.node, "undo")
        async with self._sem:
            try:
                await self._send(p.node, step[0], step[1], cmd_id)
            except _Offline:
                return  # tried again when it is back
            except DevfleetError as exc:
                if not (
                    step[0] == "stop" and self.spec.operation.verb == "spawn" and exc.code == Code.NOT_FOUND
                ):
                    await self._put(
                        p, state="revert_failed", revert_cmd=cmd_id, error=f"revert: {exc.message}"
                    )
                    return  # else: no such actor (gone, or never started): nothing to stop
        await self._put(p, state="reverted", revert_cmd=cmd_id)


class _Offline(Exception):
    """The node went offline before its step answered."""
