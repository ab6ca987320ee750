"""The node's trading workers: running actors and components that declared a résumé or a pool.

A :class:`Worker` is the same view of either kind: its agent id (the ``{agent}`` of
``agents/{id}/resume`` and ``tasks/{task}/assign/{agent}``), its validated résumé,
its pool, and its ``bid``/``run`` callables. A dynamic actor declares them in its
spawn (``{"resume": {...}, "pool": "gpu"}``, code ``async def bid(agent, request)`` /
``async def run(agent, assignment)``); a component in its settings (``resume``,
``pool``) with :meth:`~devfleet_base.Component.bid_task` / ``run_task``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from devfleet_base import contract

from ..actors.dynamic import DynamicActor
from ..components.context import ComponentRunnable

__all__ = ["Worker", "component_agent_id", "worker_of"]

Bid = Callable[[dict[str, Any]], Awaitable[Any]]  # a dict or None; actor code may return anything
Run = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Worker:
    """One actor or component that trades work.

    Attributes:
        child: its supervisor child name.
        name: the actor or component name.
        kind: ``actor`` or ``component``.
        agent_id: the id on the wire.
        resume: the validated résumé, or ``None`` (pool only).
        pool: the worker pool it joins, or ``None``.
        bid: the custom bid, or ``None`` (bid the résumé's prices).
        run: what runs an assignment or a job, or ``None`` (it cannot).
    """

    child: str
    name: str
    kind: str
    agent_id: str
    resume: dict[str, Any] | None
    pool: str | None
    bid: Bid | None
    run: Run | None


def component_agent_id(node: str, component: str) -> str:
    """The agent id of a component on a node (actor ids are per name, fleet-wide)."""
    return contract.actor_id(f"component.{node}.{component}")


def worker_of(child: str, instance: object, node: str) -> Worker | None:
    """The worker view of a running supervisor child, or ``None`` when it does not trade."""
    if isinstance(instance, DynamicActor):
        extra = instance.spec.extra
        resume, pool = extra.get("resume"), extra.get("pool")
        if resume is None and pool is None:
            return None
        actor = instance
        bid_fn, run_fn = actor.bid_fn, actor.run_fn

        async def bid(request: dict[str, Any]) -> Any:
            assert bid_fn is not None
            return await bid_fn(actor.agent, request)

        async def run(assignment: dict[str, Any]) -> Any:
            assert run_fn is not None
            return await run_fn(actor.agent, assignment)

        return Worker(
            child,
            actor.name,
            "actor",
            actor.actor_id,
            resume,
            pool,
            bid if bid_fn is not None else None,
            run if run_fn is not None else None,
        )
    if isinstance(instance, ComponentRunnable):
        component = instance.component
        resume, pool = component.config.get("resume"), component.config.get("pool")
        if resume is None and pool is None:
            return None
        name = component.name or child.split(":", 1)[-1]
        return Worker(
            child,
            name,
            "component",
            component_agent_id(node, name),
            resume,
            pool,
            component.bid_task,
            component.run_task,
        )
    return None
