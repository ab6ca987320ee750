"""Actor operations on a Wactorz packaged-runner node (``wactorz-node``).

Such a node sends no receipts, so each operation is confirmed by what the node
does publish (shapes from ``wactorz/node/runner.py`` of wactorz 0.7.2):

- **spawn**: its ``agents/{node}/logs`` record ``{"type": "spawned", "child_name"}``,
  or an ``error`` record naming the actor (refused install, failed start...). A
  name already running there without ``replace`` is refused here first (the node
  would ignore it silently). Published retained, like a Wactorz main does, and
  cleared once answered or timed out: the node never clears it, and a retained
  spawn left behind would bring a stopped actor back at every restart.
- **stop**: the node's list answer (``nodes/{node}/agents``) no longer names it.
- **stop_all**: its last heartbeat says ``status: "offline"``.

What is sent is what Wactorz accepts: no ``null`` values (its spawn reads
``float(config.get("poll_interval", 5.0))``) and none of devfleet's ``_`` keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import Code
from devfleet_base.mqtt import MqttMessage
from devfleet_base.wactorz_signing import WactorzSigner, control_leaf, publication_signed

from .errors import CommandFailed, CommandTimeout, ConsoleTimeout, NodeNotFound, UnverifiedNode

if TYPE_CHECKING:
    from devfleet_base.mqtt import MqttClient

    from .actors import ActorOps
    from .model import FleetModel, NodeView

log = logging.getLogger("devfleet.console")

__all__ = [
    "ask_lists",
    "await_heartbeats",
    "check_commandable",
    "control_properties",
    "listed",
    "presence_signed",
    "refresh_lists",
    "restart",
    "spawn",
    "spawn_payload",
    "stop",
    "stop_all",
    "trusted_answer",
]

#: Seconds between list questions while waiting for a stop to show.
_POLL = 0.3


def control_properties(
    ops: ActorOps, topic: str, payload: dict[str, Any]
) -> Callable[[bytes], list[tuple[str, str]]] | None:
    """For a message to a Wactorz node: what gives its user properties (the Wactorz
    signature of a control leaf when the console has a key, else none). None for
    any other node (devfleet's ``_sig`` applies)."""
    from . import wactorz

    parts = topic.split("/")
    view = ops.model.get(parts[1]) if len(parts) == 3 and parts[0] == "nodes" else None
    if view is None or not wactorz.is_wactorz(view):
        return None
    if ops.wactorz_key is None or control_leaf(topic) is None:
        return lambda _raw: []
    signer = ops.__dict__.get("_wactorz_signer")
    if signer is None:  # one per console: its sequence must only grow
        signer = ops.__dict__["_wactorz_signer"] = WactorzSigner(ops.wactorz_key)
    return lambda raw: signer.properties(topic, raw)


def trusted_answer(ops: ActorOps, msg: MqttMessage) -> bool:
    """Whether an answer may be used: anything from a devfleet node (its own rules),
    and from a Wactorz node (``nodes/{node}/...``, ``agents/{node}/logs``) only when
    signed with the fleet key, if the console has one."""
    from . import wactorz

    if ops.wactorz_key is None:
        return True
    parts = msg.topic.split("/")
    view = ops.model.get(parts[1]) if len(parts) >= 3 and parts[0] in ("nodes", "agents") else None
    if view is None or not wactorz.is_wactorz(view):
        return True
    if publication_signed(ops.wactorz_key, msg.topic, msg.payload, msg.user_properties):
        return True
    log.warning("ignored an answer on %s: not signed with the fleet key", msg.topic)
    return False


_PRESENCE = frozenset({"heartbeat", "manifest", "agents"})


def presence_signed(ops: ActorOps, msg: MqttMessage) -> bool | None:
    """For a console that checks signatures: whether a Wactorz node signed this presence
    message (its heartbeat, manifest or list answer) with the fleet key.

    Returns:
        None when it is not a Wactorz node's presence (a devfleet node's, whose own
        rules apply: a name with a devfleet description never counts as Wactorz);
        True when signed with ``ops.wactorz_key``; False when not (no key, or
        unsigned, or signed with another key).
    """
    from . import wactorz

    parts = msg.topic.split("/")
    if len(parts) != 3 or parts[0] != "nodes" or parts[2] not in _PRESENCE or not msg.payload:
        return None
    view = ops.model.get(parts[1])
    if view is not None and view.meta is not None:
        return None
    known = view is not None and wactorz.is_wactorz(view)
    if parts[2] != "manifest" and not known and b'"runtime"' not in msg.payload:
        return None
    key = ops.wactorz_key
    if key is not None and publication_signed(key, msg.topic, msg.payload, msg.user_properties):
        return True
    if key is not None and parts[1] not in _reported and len(_reported) < 1024:  # said once per node
        _reported.add(parts[1])
        log.warning("ignoring Wactorz node %s: what it publishes is not signed with the fleet key", parts[1])
    return False


_reported: set[str] = set()


def check_commandable(ops: ActorOps, view: NodeView) -> None:
    """Refuse to command a Wactorz node whose presence is unverified from a console that
    signs: what would confirm the operation (its log records, list, heartbeats) is
    unsigned, and a signing console believes nothing unsigned.

    Raises:
        UnverifiedNode: ``ops`` has a signing identity and ``view`` was not verified
            with the fleet key.
    """
    if ops.identity is not None and view.verified is not True:
        raise UnverifiedNode(
            f"{view.name} is a Wactorz node whose presence is not signed with a fleet key"
            " (unverified): nothing sent. Give this console the key it shares with it"
            " (--wactorz-key-file; its WACTORZ_NODE_KEY)",
            node=view.name,
        )


async def ask_lists(session: MqttClient, nodes: list[str]) -> None:
    """Ask each Wactorz node for its actor list (``nodes/{node}/list``, unsigned: not a
    control leaf there); the answers reach the model (:func:`devfleet_command.wactorz.on_list`)."""
    for node in nodes:
        await session.publish(contract.node_topic(node, "list"), b"{}", qos=1)


async def await_heartbeats(
    ops: ActorOps, *, on_wait: Callable[[list[str], float], None] | None = None
) -> list[str]:
    """Wait up to one heartbeat interval (and a second) for the heartbeat of every live
    Wactorz node not heard yet: its figures (cpu, memory, disk, uptime) come only with
    it, and a one-shot console has only the retained manifest.

    Args:
        on_wait: called once with the names and the seconds it will wait, when there
            is anything to wait for (a progress hint).

    Returns:
        The nodes still without a heartbeat (their figures stay unknown).
    """
    from . import wactorz

    def missing(model: FleetModel) -> list[NodeView]:
        return [v for v in model if wactorz.is_wactorz(v) and v.online and v.heartbeat is None]

    views = missing(ops.model)
    if not views:
        return []
    seconds = max(v.heartbeat_interval for v in views) + 1.0
    if on_wait is not None:
        on_wait(sorted(v.name for v in views), seconds)
    with contextlib.suppress(ConsoleTimeout):
        await ops.wait_for(lambda m: not missing(m), seconds)
    return sorted(v.name for v in missing(ops.model))


async def refresh_lists(ops: ActorOps, *, timeout: float = 3.0) -> None:
    """Ask every Wactorz node whose actors this console has not heard for its list,
    and wait up to ``timeout`` for the answers (a one-shot console has only their
    retained manifests; their heartbeats are not retained). A silent node stays unlisted."""
    from . import wactorz

    missing = [v.name for v in ops.model if wactorz.is_wactorz(v) and v.listed is None]
    if not missing:
        return
    await ask_lists(ops.mqtt, missing)
    with contextlib.suppress(ConsoleTimeout):
        await ops.wait_for(
            lambda m: all((v := m.get(n)) is None or v.listed is not None for n in missing), timeout
        )


def spawn_payload(spec: dict[str, Any], node: str) -> dict[str, Any]:
    """``spec`` as a Wactorz runner accepts it: no ``None`` values, no ``_`` keys."""
    out = {k: v for k, v in spec.items() if v is not None and not k.startswith("_")}
    out["node"] = node
    return out


async def listed(ops: ActorOps, node: str, *, timeout: float) -> list[str]:
    """The actor names ``node`` runs now (its answer on ``nodes/{node}/agents``)."""
    answer = await ops.request_answer(
        contract.node_topic(node, "agents"),
        lambda a: isinstance(a, dict) and a.get("node") == node and isinstance(a.get("agents"), list),
        lambda: ops.send_control(contract.node_topic(node, "list"), {}),
        timeout=timeout,
        what=f"list the actors of {node}",
    )
    return sorted(
        str(a["name"]) for a in answer["agents"] if isinstance(a, dict) and isinstance(a.get("name"), str)
    )


async def spawn(ops: ActorOps, node: str, spec: dict[str, Any], *, retain: bool, timeout: float) -> Any:
    """Spawn on a Wactorz node; ``{"name", "actor_id", "state": "running"}`` once it says so.

    Raises:
        CommandFailed: ``conflict`` (already running, no ``replace``) or ``failed``
            (the node's error record, quoted).
        CommandTimeout: neither within ``timeout``.
    """
    name = str(spec["name"])
    deadline = time.monotonic() + timeout
    if not spec.get("replace") and name in await listed(ops, node, timeout=timeout):
        raise CommandFailed(
            f"spawn {name} on {node}: conflict: {name!r} is already running there "
            '(send "replace": true to restart it)',
            code=Code.CONFLICT,
        )
    topic = contract.node_topic(node, "spawn")
    payload = spawn_payload(spec, node)
    quoted = f"'{name}'"

    def settles(record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        if record.get("type") == "spawned":
            return record.get("child_name") == name
        return record.get("type") == "error" and quoted in str(record.get("message", ""))

    try:
        record = await ops.request_answer(
            f"agents/{node}/logs",
            settles,
            lambda: ops.send_control(topic, payload, retain=retain),
            timeout=max(0.1, deadline - time.monotonic()),
            what=f"spawn {name} on {node}",
        )
    finally:
        if retain:  # the node never clears it: a retained spawn must not outlive this wait
            await ops.mqtt.publish(topic, b"", qos=1, retain=True, wait=True)
    if record.get("type") == "error":
        raise CommandFailed(f"spawn {name} on {node}: failed: {record.get('message')}", code=Code.FAILED)
    return {"name": name, "actor_id": contract.actor_id(name), "state": "running"}


async def stop(
    ops: ActorOps, node: str, name: str, *, delete: bool, keep_topics: bool, timeout: float
) -> Any:
    """Stop (``delete``: and erase) ``name`` on a Wactorz node, confirmed by its list.

    Raises:
        CommandFailed: ``not_found`` (the node does not run it).
        CommandTimeout: still listed after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    if name not in await listed(ops, node, timeout=timeout):
        raise CommandFailed(
            f"stop {name} on {node}: not_found: no actor named {name!r} on {node}", code=Code.NOT_FOUND
        )
    request: dict[str, Any] = {"name": name}
    if delete:
        request["delete"] = True
        if keep_topics:
            request["keep_topics"] = True
    await ops.send_control(contract.node_topic(node, "stop"), request)
    while (left := deadline - time.monotonic()) > 0:
        try:
            if name not in await listed(ops, node, timeout=left):
                return {"name": name, "stopped": True, **({"deleted": True} if delete else {})}
        except CommandTimeout:
            break
        await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
    raise CommandTimeout(f"stop {name} on {node}: still running after {timeout:g} s")


async def stop_all(ops: ActorOps, node: str, *, timeout: float) -> Any:
    """Stop every actor and the runner of a Wactorz node, confirmed by its ``offline`` heartbeat."""
    if ops.model.get(node) is None:
        raise NodeNotFound(f"no node {node!r} in the fleet")
    await ops.request_answer(
        contract.node_topic(node, "heartbeat"),
        lambda b: isinstance(b, dict) and b.get("status") == "offline",
        lambda: ops.send_control(contract.node_topic(node, "stop_all"), {}),
        timeout=timeout,
        what=f"stop_all on {node}",
    )
    return {"stopped": "all", "node": node}


async def restart(ops: ActorOps, node: str, *, timeout: float) -> Any:
    """Restart a Wactorz node's runner in place (``nodes/{node}/restart``: it stops its
    actors and re-executes), confirmed by its ``restarting`` heartbeat and then the
    first heartbeat of the new process.

    Returns:
        ``{"restarted": True, "node", "uptime_s"}`` (the new process's uptime).

    Raises:
        UnverifiedNode: an unverified node, from a console that signs (nothing sent).
        CommandTimeout: either heartbeat missing within ``timeout``.
    """
    view = ops.model.get(node)
    if view is None:
        raise NodeNotFound(f"no node {node!r} in the fleet")
    check_commandable(ops, view)
    said: list[str] = []

    def back(beat: Any) -> bool:  # "restarting", then a heartbeat without a status
        if not isinstance(beat, dict):
            return False
        if beat.get("status") == "restarting":
            said.append("restarting")
            return False
        return bool(said) and beat.get("status") is None

    beat = await ops.request_answer(
        contract.node_topic(node, "heartbeat"),
        back,
        lambda: ops.send_control(contract.node_topic(node, "restart"), {}),
        timeout=timeout,
        what=f"restart {node}",
    )
    return {"restarted": True, "node": node, "uptime_s": beat.get("uptime_s")}
