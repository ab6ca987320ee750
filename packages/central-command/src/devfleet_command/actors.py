"""Dynamic actors from the console: spawn, stop, list, migrate, and tasks (send_to).

These speak the Wactorz remote-node topics (``nodes/{node}/spawn`` ...), not the
command topics, so each operation publishes a control message and waits for the
node's answer on the topic the contract names for it: a receipt on
``nodes/{node}/receipts`` (spawn, stop), ``nodes/{src}/migrate_result``, or a
reply topic for a task. Control messages are signed when the console has a key.

:class:`ActorOps` is mixed into :class:`~devfleet_command.aio.AsyncFleet`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import Code, ContractError
from devfleet_base.mqtt import MqttMessage
from devfleet_base.signing import RETAINED_TTL

from . import wactorz, wactorz_ops
from .errors import AmbiguousActor, CommandFailed, CommandTimeout, ConnectError, InvalidSpec, NodeNotFound
from .wactorz_migration import migrate_via_main

if TYPE_CHECKING:
    from devfleet_base.mqtt import MqttClient
    from devfleet_base.signing import Identity, NodeVerifier

    from .model import FleetModel, NodeView

__all__ = ["ActorOps", "actor_rows"]


def actor_rows(model: FleetModel, node: str | None = None) -> list[dict[str, Any]]:
    """Every actor the model's retained states list, as rows (``node`` and ``name``
    always the strings of the topic and key, whatever the payload says)."""
    out: list[dict[str, Any]] = []
    for view in model:
        if node is not None and view.name != node:
            continue
        actors = (view.state or {}).get("actors")
        if not isinstance(actors, dict):
            out.extend(wactorz.actor_rows(view) if wactorz.is_wactorz(view) else [])
            continue
        for name, info in sorted(actors.items()):
            if isinstance(info, dict):
                out.append({**info, "node": view.name, "name": name})
    return out


class ActorOps:
    """Actor operations over the fleet's session (a mixin of ``AsyncFleet``)."""

    mqtt: MqttClient
    identity: Identity | None
    node_verifier: NodeVerifier | None
    wactorz_key: bytes | None
    model: FleetModel
    inbox: str
    _taps: set[Callable[[MqttMessage], None]]
    _target: Callable[[str, float], Awaitable[NodeView]]
    wait_for: Callable[[Callable[[FleetModel], bool], float], Awaitable[None]]

    async def send_control(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        """Publish a control message (QoS 1) to ``topic``: signed the Wactorz way for a
        Wactorz node, with the operator's ``_sig`` otherwise.

        Raises:
            ConnectError: the broker did not take it.
        """
        props = wactorz_ops.control_properties(self, topic, payload)
        if props is not None:  # a Wactorz node: signed its way (user properties), never _sig
            raw = contract.encode(payload)
            published = await self.mqtt.publish(
                topic, raw, qos=1, retain=retain, wait=True, user_properties=props(raw)
            )
        else:
            if self.identity is not None:
                payload = self.identity.sign(topic, payload)
            raw = contract.encode(payload)
            published = await self.mqtt.publish(topic, raw, qos=1, retain=retain, wait=True)
        if not published:
            raise ConnectError(f"the broker did not take the message on {topic}")

    async def request_answer(
        self,
        listen: str,
        match: Callable[[Any], bool],
        send: Callable[[], Any],
        *,
        timeout: float,
        what: str,
        signed_by: str | None = None,
    ) -> Any:
        """Subscribe to ``listen``, run ``send()``, return the first decoded payload
        for which ``match`` is true; raise CommandTimeout after ``timeout``.

        With a signing identity, an answer counts only when the node ``signed_by``
        signed it."""
        verifier = self.node_verifier if signed_by is not None else None
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()

        def tap(msg: MqttMessage) -> None:
            if msg.topic != listen or answer.done() or not msg.payload:
                return
            if not wactorz_ops.trusted_answer(self, msg):
                return  # a Wactorz node's answer not signed with the fleet key
            try:
                data = contract.decode(msg.payload)
            except ContractError:
                return
            if match(data) and (verifier is None or verifier.valid(str(signed_by), listen, data)):
                answer.set_result(data)

        self._taps.add(tap)
        try:
            async with self.mqtt.subscription([(listen, 1)]):
                await send()
                return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise CommandTimeout(f"{what}: no answer within {timeout:g} s") from None
        finally:
            self._taps.discard(tap)

    @staticmethod
    def _check_receipt(receipt: dict[str, Any], what: str) -> Any:
        if receipt.get("status") != "ok":
            raise CommandFailed(
                f"{what}: {receipt.get('code', Code.FAILED)}: {receipt.get('message', '')}".rstrip(": "),
                code=str(receipt.get("code") or Code.FAILED),
            )
        return receipt.get("result")

    async def spawn(
        self,
        node: str,
        spec: dict[str, Any],
        *,
        replace: bool | None = None,
        retain: bool = True,
        timeout: float = 30.0,
        ttl: float | None = None,
    ) -> Any:
        """Spawn a dynamic actor on ``node`` (its config as in Wactorz: ``name``,
        ``code``, ``poll_interval``, ``install``...), validated here first.

        Published retained like a Wactorz main machine does, so a node that is
        offline runs it when it comes back (the node clears it after reading).

        Raises:
            InvalidSpec: the spec is invalid (nothing sent).
            NodeNotFound: a node this console has never seen (nothing is left retained).
            CommandFailed: the node refused it (``forbidden`` without ``allow_code``...).
            CommandTimeout: no receipt (an offline node still gets the retained spawn).
            UnverifiedNode: a Wactorz node whose presence is not signed with the fleet
                key, from a console that signs (nothing sent; the same for stop,
                stop_all and migrate).
        """
        payload = dict(spec)
        if replace is not None:
            payload["replace"] = replace
        payload.setdefault("node", node)
        try:
            checked = contract.SPAWN_SCHEMA.validate(payload)
        except ContractError as exc:
            raise InvalidSpec(f"spawn: {exc.message}") from None
        view = await self._target(node, timeout)
        if wactorz.is_wactorz(view):  # no receipts there: confirmed by what it publishes
            wactorz_ops.check_commandable(self, view)
            return await wactorz_ops.spawn(self, node, payload, retain=retain, timeout=timeout)
        request = contract.new_id()
        payload["_id"] = request
        # Retained: an offline node runs it when it comes back, within the expiry.
        payload["_expires_at"] = time.time() + (
            ttl if ttl is not None else RETAINED_TTL if retain else timeout
        )
        topic = contract.node_topic(node, "spawn")
        receipt = await self.request_answer(
            contract.node_topic(node, "receipts"),
            lambda r: isinstance(r, dict) and r.get("id") == request,
            lambda: self.send_control(topic, payload, retain=retain),
            timeout=timeout,
            what=f"spawn {checked['name']} on {node}",
            signed_by=node,
        )
        return self._check_receipt(receipt, f"spawn {checked['name']} on {node}")

    async def stop_actor(
        self, node: str, name: str, *, delete: bool = False, keep_topics: bool = False, timeout: float = 30.0
    ) -> Any:
        """Stop the actor ``name`` on ``node`` (deliberately: it is not restarted).

        ``delete`` also removes its state file and clears its retained
        ``agents/{id}/...`` topics, unless ``keep_topics`` (Wactorz ``stop`` forms).
        """
        contract.check_name(name, "actor name")
        view = await self._target(node, timeout)
        if wactorz.is_wactorz(view):
            wactorz_ops.check_commandable(self, view)
            return await wactorz_ops.stop(
                self, node, name, delete=delete, keep_topics=keep_topics, timeout=timeout
            )
        request = contract.new_id()
        body: dict[str, Any] = {"name": name, "_id": request, "_expires_at": time.time() + timeout}
        if delete:
            body.update(delete=True, keep_topics=keep_topics)
        receipt = await self.request_answer(
            contract.node_topic(node, "receipts"),
            lambda r: isinstance(r, dict) and r.get("id") == request,
            lambda: self.send_control(contract.node_topic(node, "stop"), body),
            timeout=timeout,
            what=f"stop {name} on {node}",
            signed_by=node,
        )
        return self._check_receipt(receipt, f"stop {name} on {node}")

    async def stop_all(self, node: str, *, timeout: float = 30.0) -> Any:
        """Stop every actor on ``node`` and shut its agent (or Wactorz runner) down."""
        view = await self._target(node, timeout)
        if wactorz.is_wactorz(view):
            wactorz_ops.check_commandable(self, view)
            return await wactorz_ops.stop_all(self, node, timeout=timeout)
        request = contract.new_id()
        receipt = await self.request_answer(
            contract.node_topic(node, "receipts"),
            lambda r: isinstance(r, dict) and r.get("id") == request,
            lambda: self.send_control(contract.node_topic(node, "stop_all"), {"_id": request}),
            timeout=timeout,
            what=f"stop_all on {node}",
        )
        return self._check_receipt(receipt, f"stop_all on {node}")

    def actors(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every actor the fleet's retained state shows (``node``, ``name``, ``state``,
        ``restarts``, ``actor_id``...), optionally of one node."""
        if node is not None and node not in self.model:
            raise NodeNotFound(f"no node {node!r} in the fleet")
        return actor_rows(self.model, node)

    def locate(self, name: str) -> str:
        """The node running the actor ``name`` (from the retained state).

        Raises:
            NodeNotFound: no node runs it.
            AmbiguousActor: several nodes run it.
        """
        where = [a["node"] for a in self.actors() if a["name"] == name and a.get("state") != "failed"]
        if not where:
            raise NodeNotFound(f"no node runs an actor named {name!r}")
        if len(where) > 1:
            raise AmbiguousActor(
                f"actor {name!r} runs on several nodes ({', '.join(where)}); name the source",
                actor=name,
                nodes=where,
            )
        return str(where[0])

    async def migrate(
        self, name: str, to: str, *, source: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Move the actor ``name`` (with its persisted state) to node ``to``.

        Returns:
            The node's ``migrate_result`` (``success``, ``from_node``, ``to_node``).

        ``timeout`` bounds the whole wait (the source gets it less a margin for its
        answer to travel).

        Raises:
            NodeNotFound: the target (or source) is not a node this console knows.
            CommandFailed: the migration failed, or the target refuses actor code
                (``forbidden``, said at once from its ``meta``); the actor keeps
                running where it was.
            CommandTimeout: no answer within ``timeout``.
            UnverifiedNode: either end is an unverified Wactorz node (see :meth:`spawn`).
        """
        target = await self._target(to, timeout)
        if source is None:
            await wactorz_ops.refresh_lists(self)  # a Wactorz node's actors, if not yet heard
        src = source or self.locate(name)
        source_view = await self._target(src, timeout)
        if wactorz.is_wactorz(target) or wactorz.is_wactorz(source_view):
            for view in (target, source_view):
                if wactorz.is_wactorz(view):
                    wactorz_ops.check_commandable(self, view)
            return await migrate_via_main(self, name, src, to, timeout=timeout)
        host = (target.meta or {}).get("actor_host")
        if isinstance(host, dict) and host.get("allow_code") is False:
            raise CommandFailed(
                f"migrate {name}: {to} does not accept actor code (its agent runs without --allow-code)",
                code=Code.FORBIDDEN,
            )
        margin = min(2.0, timeout / 4)
        result = await self.request_answer(
            contract.node_topic(src, "migrate_result"),
            lambda r: isinstance(r, dict) and r.get("agent") == name,
            lambda: self.send_control(
                contract.node_topic(src, "migrate"),
                {
                    "name": name,
                    "target_node": to,
                    "timeout": timeout - margin,
                    "_expires_at": time.time() + timeout,
                },
            ),
            timeout=timeout,
            what=f"migrate {name} from {src} to {to}",
            signed_by=src,
        )
        if not result.get("success"):
            raise CommandFailed(f"migrate {name}: {result.get('error', 'failed')}", code=Code.FAILED)
        return dict(result)

    async def task(self, name: str, payload: Any, *, timeout: float = 30.0) -> Any:
        """Send a task to the actor ``name`` wherever it runs (Wactorz ``send_to``)
        and return its answer.

        Every node hosting an actor of that name answers; the first successful
        answer wins, so a failed instance on one node does not shadow a healthy one
        elsewhere. When every instance the retained state lists answered with an
        error object (``{"error", "code", "agent", "node"}``), or only errors came
        before the timeout, the first error is raised.

        Raises:
            CommandFailed: only error answers (its ``code`` is the node's).
            CommandTimeout: no answer at all within ``timeout``.
        """
        contract.check_name(name, "actor name")
        reply_id = contract.new_id()
        # The reply comes on a node reply topic; the console poses as node "console-<inbox>".
        me = "console-" + self.inbox.rsplit("/", 1)[-1].replace(":", "-")[-40:]
        reply = contract.node_reply_topic(me, reply_id)
        request = contract.task_envelope(payload, reply)
        instances = sum(1 for row in actor_rows(self.model) if row["name"] == name)
        errors: list[dict[str, Any]] = []

        def settles(answer: Any) -> bool:
            if _is_task_error(answer):
                errors.append(answer)
                return len(errors) >= max(1, instances)  # every instance failed: stop waiting
            return True

        try:
            answer = await self.request_answer(
                reply,
                settles,
                lambda: self.send_control(contract.by_name_task_topic(name), request),
                timeout=timeout,
                what=f"task for {name}",
            )
        except CommandTimeout:
            if not errors:
                raise
            answer = errors[0]
        if _is_task_error(answer):
            where = f" on {answer['node']}" if isinstance(answer.get("node"), str) else ""
            code = answer.get("code") if isinstance(answer.get("code"), str) else Code.FAILED
            raise CommandFailed(f"task for {name}{where}: {answer['error']}", code=code)
        return answer


#: An error answer: devfleet's ``{"error", "code", "agent", "node"}``, Wactorz's
#: ``{"error", "error_phase", "agent"}`` (wactorz/node/agent.py ``_task_failed``).
_TASK_ERROR_KEYS = frozenset({"error", "code", "agent", "node", "error_phase"})


def _is_task_error(answer: Any) -> bool:
    """The agent's error object (not an actor result that happens to hold "error")."""
    return isinstance(answer, dict) and "error" in answer and set(answer) <= _TASK_ERROR_KEYS
