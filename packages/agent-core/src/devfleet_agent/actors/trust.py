"""Whom a node believes about an actor's code: spawns another node signed (migrations).

An operator signs a spawn; a node never does, except when it hands one of its
actors to another node. Such a spawn (on ``nodes/{src}/handoff/{dst}``, or a
node-signed one on ``nodes/{dst}/spawn``) is believed only with the operator's
word for it, checked here for the dispatcher (``authenticate`` of
:meth:`~devfleet_agent.commands.Dispatcher.register_control`). See
docs/contract.md, "Signed messages".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import ContractError, SignatureError
from devfleet_base.mqtt import MqttMessage

if TYPE_CHECKING:
    from .hosting import Host

__all__ = ["authenticate_handoff", "authenticate_spawn", "check_peer_spawn", "node_signed", "origin"]


def node_signed(payload: dict[str, Any]) -> bool:
    """Whether a node (not an operator) signed ``payload``."""
    sig = payload.get("_sig")
    return isinstance(sig, dict) and isinstance(sig.get("kid"), str) and sig["kid"].startswith("node:")


def origin(topic: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The operator-signed spawn an actor's code comes from (None when unsigned)."""
    if "_sig" not in payload:
        return None
    if node_signed(payload):  # a migration: it brought the original along
        migration = payload.get("_migration")
        found = migration.get("origin") if isinstance(migration, dict) else None
        return found if isinstance(found, dict) else None
    return {"topic": topic, "payload": payload}


def authenticate_spawn(host: Host, msg: MqttMessage, payload: dict[str, Any]) -> bool:
    """A spawn on ``nodes/{here}/spawn``: True when another node signed it and
    :func:`check_peer_spawn` holds; False for anything else (the usual checks apply).

    Raises:
        SignatureError: node-signed without the operator's word for it.
    """
    if host.peers is not None and node_signed(payload):
        check_peer_spawn(host, msg.topic, payload, None)
        return True
    return False


def authenticate_handoff(host: Host, msg: MqttMessage, payload: dict[str, Any]) -> bool:
    """A handoff on ``nodes/{src}/handoff/{here}`` must be a migration from ``src`` (the
    topic names the publisher; the broker's ACL vouches for it) and, in a signed fleet,
    be signed by ``src`` with the operator's word for it. True when that vouches for it.

    Raises:
        ContractError: ``_migration.from_node`` is not ``src``.
        SignatureError: see :func:`check_peer_spawn`.
    """
    match = contract.parse_topic(msg.topic)
    source = match.node if match is not None else None
    migration = payload.get("_migration")
    if not isinstance(migration, dict) or migration.get("from_node") != source:
        raise ContractError(f"a handoff from {source} must carry _migration.from_node {source!r}")
    if host.peers is not None and node_signed(payload):
        check_peer_spawn(host, msg.topic, payload, source)
        return True
    return False


def check_peer_spawn(host: Host, topic: str, payload: dict[str, Any], handoff_from: str | None) -> None:
    """A spawn signed by another node: a migration. Believe it only with the operator's
    word for it: the spawn is signed by the source node (certified by an operator), it
    carries the operator-signed ``migrate`` naming this node as the target (spent once
    here), and the code is the code an operator signed in the original spawn.

    Raises:
        SignatureError: any of these does not hold.
    """
    peers, operators = host.peers, host.services.dispatcher.verifier
    if peers is None or operators is None:
        raise SignatureError("this node checks no node signatures")
    sig = payload["_sig"]
    source, _ = peers.node_key(sig.get("cert"))
    if handoff_from is not None and source != handoff_from:
        raise SignatureError(f"a handoff from {handoff_from!r} was signed by {source!r}")
    peers.check(source, topic, payload)
    migration = payload.get("_migration")
    warrant = migration.get("warrant") if isinstance(migration, dict) else None
    original = migration.get("origin") if isinstance(migration, dict) else None
    if not (isinstance(warrant, dict) and isinstance(original, dict)):
        raise SignatureError(f"a spawn from node {source!r} needs the operator's migrate and spawn")
    w_topic, w_payload = warrant.get("topic"), warrant.get("payload")
    if w_topic != contract.node_topic(source, "migrate") or not isinstance(w_payload, dict):
        raise SignatureError(f"the migrate carried by {source!r} was not addressed to {source!r}")
    if w_payload.get("target_node") != host.node or w_payload.get("name") != payload.get("name"):
        raise SignatureError(f"no operator asked {source!r} to move {payload.get('name')!r} here")
    o_topic, o_payload = original.get("topic"), original.get("payload")
    o_match = contract.parse_topic(o_topic) if isinstance(o_topic, str) else None
    if o_match is None or o_match.kind != "spawn" or not isinstance(o_payload, dict):
        raise SignatureError("the original spawn carried by a migration is malformed")
    operators.check(str(o_topic), o_payload, evidence=True)
    for key, default in (("name", None), ("code", None), ("install", [])):
        if o_payload.get(key, default) != payload.get(key, default):
            raise SignatureError(f"the migrated {key!r} is not what an operator signed")
    operators.check(str(w_topic), w_payload)  # last: spends the warrant
