"""The verbs a Wactorz main sends a node that devfleet's own console does not.

``nodes/{node}/desired_state`` (retained: the actors this node should run; any
missing one is started, on every reconnect), ``nodes/{node}/restart`` (re-execute
the agent), ``nodes/{node}/restart_agent`` (stop and start one actor with its kept
config; its state file is read back) and the ``delete`` / ``keep_topics`` forms of
``stop`` (see :func:`delete_leftovers`). Shapes from ``wactorz/node/runner.py``
(wactorz 0.7.2); every payload is validated, and a refusal is a receipt with a code.

Kept out of :mod:`.host`, which routes to these.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import CommandError, ContractError, DevfleetError
from devfleet_base.mqtt import Inbound

from .spec import SpawnSpec

if TYPE_CHECKING:
    from devfleet_base.contract import TopicMatch

    from .host import ActorHost

__all__ = ["WactorzVerbs", "delete_leftovers", "read_control"]

log = logging.getLogger("devfleet.actors")

#: Retained actor topics a delete clears (devfleet's own and the packaged runner's).
_RETAINED_ACTOR_LEAVES = ("heartbeat", "logs", "resume", "status", "metrics", "manifest")

#: Most actors one desired state may list (a bound on what one message can start).
MAX_DESIRED = 256


async def delete_leftovers(host: ActorHost, name: str, *, keep_topics: bool) -> None:
    """What ``stop`` with ``delete`` removes: the actor's state file and, unless
    ``keep_topics`` (it lives on elsewhere under the same actor id), its retained
    ``agents/{id}/...`` topics (an empty retained message clears one)."""
    with contextlib.suppress(FileNotFoundError):
        host.state_path(name).unlink()
    if keep_topics:
        return
    actor = contract.actor_id(name)
    for leaf in _RETAINED_ACTOR_LEAVES:
        await host.agent.mqtt.publish(f"agents/{actor}/{leaf}", b"", qos=1, retain=True)


class WactorzVerbs:
    """Routes ``desired_state``, ``restart`` and ``restart_agent`` for one :class:`ActorHost`."""

    def __init__(self, host: ActorHost) -> None:
        self.host = host
        host.agent.route("desired_state", self._on_desired_state)
        host.agent.route("restart", self._on_restart)
        host.agent.route("restart_agent", self._on_restart_agent)

    async def _on_desired_state(self, msg: Inbound, match: TopicMatch) -> None:
        """Start every listed actor that is not running here (nothing is stopped:
        devfleet's console, not this list, decides what stops)."""
        host = self.host
        if match.node != host.node or not msg.payload:
            return  # an empty payload clears the retained list
        try:
            payload, request_id = read_control(host, msg, "desired_state")
            listed = payload.get("agents")
            if not isinstance(listed, list) or len(listed) > MAX_DESIRED:
                raise ContractError(
                    f'desired_state: "agents" must be a list of at most {MAX_DESIRED} configs'
                )
            specs = [SpawnSpec.from_payload(_spawnable(c)) for c in listed]
        except DevfleetError as exc:
            await host._answer("desired_state", None, error=exc)
            return
        started: list[str] = []
        async with host._lock:
            for spec in specs:
                if host.supervisor.get(spec.name) is not None:
                    continue
                try:
                    await host._spawn(spec, state=None, migration=None)
                except DevfleetError as exc:
                    await host._answer("desired_state", request_id, name=spec.name, error=exc)
                    continue
                started.append(spec.name)
        if started:
            log.info("desired_state: started %s", ", ".join(started))
        await host._answer("desired_state", request_id, result={"started": started})

    async def _on_restart(self, msg: Inbound, match: TopicMatch) -> None:
        """Re-execute the agent (a retained restart never gets here: the agent clears
        and refuses it, as every never-retained control topic)."""
        host = self.host
        if match.node != host.node or not msg.payload:
            return
        try:
            _, request_id = read_control(host, msg, "restart")
        except DevfleetError as exc:
            await host._answer("restart", None, error=exc)
            return
        await host._answer("restart", request_id, result={"restarting": True})
        host.agent.request_stop("restart (nodes/{node}/restart)", restart=True)

    async def _on_restart_agent(self, msg: Inbound, match: TopicMatch) -> None:
        """Stop and start one actor from its kept config; its state file is read back."""
        host = self.host
        if match.node != host.node or not msg.payload:
            return
        try:
            payload, request_id = read_control(host, msg, "restart_agent")
            name = contract.check_name(payload.get("name"), "actor name")
            hosted = host._hosted.get(name)
            if hosted is None:
                raise CommandError(f"no actor named {name!r} on {host.node}", code="not_found")
        except DevfleetError as exc:
            await host._answer("restart_agent", None, error=exc)
            return
        spec = SpawnSpec.from_payload({**hosted.spec.to_payload(), "replace": True})
        async with host._lock:
            try:
                info = await host._spawn(spec, state=None, migration=None)
            except DevfleetError as exc:
                await host._answer("restart_agent", request_id, name=name, error=exc)
                return
        await host._answer("restart_agent", request_id, name=name, result={"name": name, "state": info.state})


def read_control(host: ActorHost, msg: Inbound, cmd: str) -> tuple[dict[str, Any], str | None]:
    """``host._read_control`` for either form: a JSON object (signed the devfleet way on a
    keyed node), or a bare actor name ``{"name": ...}`` is made of, which a keyed node
    refuses (it cannot carry a signature).

    Raises:
        DevfleetError: unreadable, unsigned, tampered with or replayed.
    """
    name = _name_request(msg.payload)
    if name is not None:  # no room for _sig: only a Wactorz signature can vouch for it
        dispatcher = host.agent.dispatcher
        if not dispatcher.check_wactorz_signature(msg.topic, msg.payload, msg.user_properties):
            dispatcher.check_signature(msg.topic, {})
        return {"name": name}, None
    try:
        return host._read_control(msg, cmd)
    except Exception as exc:
        error = getattr(exc, "error", None)
        if isinstance(error, DevfleetError):
            raise error from None
        raise


def _spawnable(config: Any) -> dict[str, Any]:
    """A desired-state entry as a spawn payload (the Wactorz bookkeeping keys dropped)."""
    if not isinstance(config, dict):
        raise ContractError("desired_state: every entry of agents must be a spawn config object")
    return {k: v for k, v in config.items() if not k.startswith("_") and v is not None}


def _name_request(raw: bytes) -> str | None:
    """The actor name of the bare-string form (``"foo"`` or ``foo``), else None."""
    try:
        value = contract.decode(raw)
    except ContractError:
        value = raw.decode("utf-8", "replace").strip()
    return value if isinstance(value, str) else None
