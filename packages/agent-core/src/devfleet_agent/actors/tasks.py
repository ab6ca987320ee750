"""Tasks between actors: ``send_to``, by-name tasks and their replies.

A caller publishes on ``agents/by-name/{name}/task`` with a reply topic in the
payload; every node hears it, and the one running an actor called ``name``
answers with that actor's ``handle_task``. Both envelopes are read
(:mod:`.wactorz_compat`): devfleet's and the single-file runner's
``{"_remote_task": true, "_reply_topic", "payload"}`` and the packaged runner's
merged one. A reply topic is never another node's command topic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.contract import TopicMatch
from devfleet_base.errors import Code, CommandError, ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage

from .dynamic import DynamicActor
from .wactorz_compat import reply_topic, task_body

if TYPE_CHECKING:
    from .hosting import Host

__all__ = ["ActorTasks", "SendTimeoutError"]

log = logging.getLogger("devfleet.actors")


class SendTimeoutError(CommandError, TimeoutError):
    """``send_to`` got no reply in time."""

    code = Code.TIMEOUT


class ActorTasks:
    """Sends tasks for the host's actors and runs the tasks addressed to them."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._replies: dict[str, asyncio.Future[Any]] = {}
        host.services.route("reply", self._on_reply)
        host.services.route("by_name_task", self._on_task)

    def cancel_pending(self) -> None:
        """Give up every ``send_to`` still waiting (the host is stopping)."""
        for fut in self._replies.values():
            if not fut.done():
                fut.cancel()

    async def send_to(self, name: str, payload: Any, timeout: float = 30.0) -> Any:
        """Send a task to the actor ``name`` on any node and return its reply.

        The request goes to ``agents/by-name/{name}/task`` as
        ``{"_remote_task": true, "_reply_topic": "nodes/{node}/reply/{id}", "payload": ...}``,
        a JSON object merged with the envelope instead (``contract.task_envelope``: what
        Wactorz handlers expect).

        Args:
            name: the target actor's name.
            payload: any JSON value.
            timeout: seconds to wait for the reply.

        Returns:
            The reply object (an error object if the target failed or has no handler).

        Raises:
            SendTimeoutError: no reply within ``timeout`` (also a ``TimeoutError``).
            CommandError: not connected to the broker (``unavailable``).
            ContractError: ``name`` is not a valid actor name.
        """
        topic = contract.by_name_task_topic(name)
        reply_id = contract.new_id()
        reply_to = contract.node_reply_topic(self.host.node, reply_id)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[reply_id] = fut
        try:
            request = contract.task_envelope(payload, reply_to)
            if not await self.host.services.publish_json(topic, request, qos=1):
                raise CommandError(f"send_to {name!r}: not connected to the broker", code=Code.UNAVAILABLE)
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise SendTimeoutError(
                    f"send_to {name!r}: no reply within {timeout:g} s (is an actor of that name running?)"
                ) from None
        finally:
            self._replies.pop(reply_id, None)

    async def _on_reply(self, msg: MqttMessage, match: TopicMatch) -> None:
        if match.node != self.host.node or match.ident is None:
            return
        fut = self._replies.get(match.ident)
        if fut is None or fut.done():
            log.debug("reply %s matches no pending send_to", match.ident)
            return
        try:
            fut.set_result(contract.decode(msg.payload))
        except ContractError as exc:
            fut.set_result({"error": f"the reply was not valid JSON: {exc.message}", "code": exc.code})

    async def _on_task(self, msg: MqttMessage, match: TopicMatch) -> None:
        name = match.name
        host = self.host
        if name is None or name not in host.hosted:
            return  # another node's actor (every node hears every by-name task)
        try:
            payload = contract.decode(msg.payload)
        except ContractError as exc:
            log.warning("task for %s refused: %s", name, exc.message)
            await host.record(name, "error", "error", f"task refused: {exc.message}", code=exc.code)
            return
        answer_on: str | None = None
        task = payload
        if isinstance(payload, dict):
            candidate = payload.get("_reply_topic")
            if candidate is not None:
                answer_on = reply_topic(candidate)
                if answer_on is None:
                    log.warning("task for %s names a bad _reply_topic %r; not answering", name, candidate)
            task = task_body(payload)  # devfleet's {"payload": X} or Wactorz's merged envelope
        reply = await self.handle_task(name, task)
        if answer_on is not None:
            await host.services.publish_json(answer_on, reply, qos=1)

    async def handle_task(self, name: str, payload: Any) -> dict[str, Any]:
        """Run the local actor ``name``'s ``handle_task(agent, payload)``.

        Returns:
            The actor's result if it is a JSON object, ``{"result": value}`` for any
            other JSON value, or an error object ``{"error", "code", "agent", "node"}``.
        """
        info = self.host.supervisor.get(name)
        instance = info.instance if info is not None else None
        node = self.host.node
        try:
            if not isinstance(instance, DynamicActor):
                state = info.state if info is not None else "not running"
                raise CommandError(f"actor {name!r} is {state}; try again", code=Code.UNAVAILABLE)
            result = await instance.handle_task(payload)
            wrapped = result if isinstance(result, dict) else {"result": result}
            contract.encode(wrapped)
        except DevfleetError as exc:
            return {"error": exc.message, "code": exc.code, "agent": name, "node": node}
        except (TypeError, ValueError) as exc:
            message = f"handle_task returned a value that is not JSON: {exc}"
            return {"error": message, "code": Code.FAILED, "agent": name, "node": node}
        return wrapped
