"""The verbs a Wactorz main sends a node that devfleet's own console does not.

``nodes/{node}/desired_state`` (retained: the actors this node should run; any
missing one is started, on every reconnect), ``nodes/{node}/restart`` (re-execute
the agent), ``nodes/{node}/restart_agent`` (stop and start one actor with its kept
config; its state file is read back) and the ``delete`` / ``keep_topics`` forms of
``stop`` (see :func:`delete_leftovers`). Shapes from ``wactorz/node/runner.py``
(wactorz 0.7.2); every payload is validated, and a refusal is a receipt with a code.

Each runs behind the node's dispatcher (:meth:`.host.ActorHost.serve`), which
checks, remembers and answers it like every control message.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.errors import CommandError, ContractError, DevfleetError
from devfleet_base.mqtt import MqttMessage

from .spec import SpawnSpec

if TYPE_CHECKING:
    from .hosting import Host

__all__ = ["MAX_DESIRED", "WactorzVerbs", "delete_leftovers"]

log = logging.getLogger("devfleet.actors")

#: Retained actor topics a delete clears (devfleet's own and the packaged runner's).
_RETAINED_ACTOR_LEAVES = ("heartbeat", "logs", "resume", "status", "metrics", "manifest")

#: Most actors one desired state may list (a bound on what one message can start).
MAX_DESIRED = 256


async def delete_leftovers(host: Host, name: str, *, keep_topics: bool) -> None:
    """What ``stop`` with ``delete`` removes: the actor's state file and, unless
    ``keep_topics`` (it lives on elsewhere under the same actor id), its retained
    ``agents/{id}/...`` topics (an empty retained message clears one)."""
    with contextlib.suppress(FileNotFoundError):
        host.state_path(name).unlink()
    if keep_topics:
        return
    actor = contract.actor_id(name)
    for leaf in _RETAINED_ACTOR_LEAVES:
        await host.services.publish_raw(f"agents/{actor}/{leaf}", b"", qos=1, retain=True)


class WactorzVerbs:
    """Serves ``desired_state``, ``restart`` and ``restart_agent`` for one :class:`ActorHost`."""

    def __init__(self, host: Host) -> None:
        self.host = host
        # A standing order, read again on every reconnect: never "seen before".
        host.serve("desired_state", self._on_desired_state, skip_empty=True, form="name", once=False)
        host.serve("restart", self._on_restart, skip_empty=True, form="name")
        host.serve("restart_agent", self._on_restart_agent, skip_empty=True, form="name")

    async def _on_desired_state(self, command: Command, msg: MqttMessage) -> dict[str, Any]:
        """Start every listed actor that is not running here (nothing is stopped:
        devfleet's console, not this list, decides what stops). An actor that cannot
        start is listed under ``refused`` (and on its own logs); the others start."""
        host = self.host
        listed = command.args.get("agents")
        if not isinstance(listed, list) or len(listed) > MAX_DESIRED:
            raise ContractError(f'desired_state: "agents" must be a list of at most {MAX_DESIRED} configs')
        specs = [SpawnSpec.from_payload(_spawnable(c)) for c in listed]
        started: list[str] = []
        refused: list[dict[str, Any]] = []
        async with host.lock:
            for spec in specs:
                if host.supervisor.get(spec.name) is not None:
                    continue
                try:
                    await host.control.start(spec, state=None, migration=None)
                except DevfleetError as exc:
                    await host.refused(Command(command.verb, command.id, {"name": spec.name}), exc)
                    refused.append({"name": spec.name, **exc.to_wire()})
                    continue
                started.append(spec.name)
        if started:
            log.info("desired_state: started %s", ", ".join(started))
        return {"started": started, **({"refused": refused} if refused else {})}

    async def _on_restart(self, command: Command, msg: MqttMessage) -> dict[str, Any]:
        """Re-execute the agent (a retained restart never gets here: the agent clears
        and refuses it, as every never-retained control topic). The agent stops after
        the receipt went out (its shutdown drains the dispatcher)."""
        self.host.services.request_stop("restart (nodes/{node}/restart)", restart=True)
        return {"restarting": True}

    async def _on_restart_agent(self, command: Command, msg: MqttMessage) -> dict[str, Any]:
        """Stop and start one actor from its kept config; its state file is read back."""
        host = self.host
        name = contract.check_name(command.args.get("name"), "actor name")
        hosted = host.hosted.get(name)
        if hosted is None:
            raise CommandError(f"no actor named {name!r} on {host.node}", code="not_found")
        spec = SpawnSpec.from_payload({**hosted.spec.to_payload(), "replace": True})
        async with host.lock:
            info = await host.control.start(spec, state=None, migration=None)
        return {"name": name, "state": info.state}


def _spawnable(config: Any) -> dict[str, Any]:
    """A desired-state entry as a spawn payload (the Wactorz bookkeeping keys dropped)."""
    if not isinstance(config, dict):
        raise ContractError("desired_state: every entry of agents must be a spawn config object")
    return {k: v for k, v in config.items() if not k.startswith("_") and v is not None}
