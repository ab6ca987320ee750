"""The console plays main's part in a migration to or from a Wactorz node.

A Wactorz node moves actors only through a main (``target_node: "@main"``), so
when either end is one the console runs that protocol itself (see
``devfleet_agent.actors.wactorz_migration`` for the steps; devfleet nodes speak
it too). Success is reported only on the target's ``spawn_ack`` quoting the token
minted for THIS migration; any other outcome puts the actor back on the source
with the state it handed over, and says so.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from devfleet_base import contract
from devfleet_base.errors import Code

from .errors import CommandFailed, CommandTimeout
from .wactorz_ops import listed, spawn_payload

if TYPE_CHECKING:
    from .actors import ActorOps

__all__ = ["migrate_via_main"]


async def migrate_via_main(ops: ActorOps, name: str, src: str, dst: str, *, timeout: float) -> dict[str, Any]:
    """Move ``name`` from ``src`` to ``dst`` with its state, through this console.

    Returns:
        ``{"success": True, "agent", "from_node", "to_node", "state_keys_transferred"}``.

    Raises:
        CommandFailed: ``conflict`` (``dst`` already runs that name: nothing moved),
            the source refused (the actor stays), or the target refused (the actor
            is put back on the source; the message says whether that worked).
        CommandTimeout: a step had no answer (the actor is put back when it left).
    """
    what = f"migrate {name} from {src} to {dst}"
    if name in await listed(ops, dst, timeout=timeout):
        raise CommandFailed(
            f"{what}: conflict: {dst} already runs an actor named {name!r}", code=Code.CONFLICT
        )
    token = contract.new_id()
    returned = await ops.request_answer(
        contract.node_topic(src, "state_return"),
        lambda r: isinstance(r, dict) and r.get("agent") == name and r.get("return_token") == token,
        lambda: ops.send_control(
            contract.node_topic(src, "migrate"), {"name": name, "target_node": "@main", "return_token": token}
        ),
        timeout=timeout,
        what=what,
    )
    if returned.get("refused"):
        raise CommandFailed(f"{what}: {src} keeps it: {returned['refused']}", code=Code.FAILED)
    config, state = returned.get("config"), returned.get("state")
    if not isinstance(config, dict) or not isinstance(state, dict) or config.get("name") != name:
        raise CommandFailed(f"{what}: {src} handed back no usable config", code=Code.FAILED)
    placement = contract.new_id()
    try:
        await _place(ops, dst, config, state, token=placement, timeout=timeout)
    except (CommandFailed, CommandTimeout) as exc:
        late = ""
        if isinstance(exc, CommandTimeout) and not await _withdraw(ops, dst, name, placement, grace=timeout):
            late = f"; {dst} never answered and may still start it: see devfleet actors {dst}"
        back = "put back on " + src
        try:
            await _place(ops, src, config, state, token=contract.new_id(), timeout=timeout)
        except (CommandFailed, CommandTimeout) as again:
            back = f"NOT put back on {src} ({again}); its state was: {contract.encode(state).decode()[:200]}"
        raise CommandFailed(f"{what}: {exc} ({back}{late})", code=getattr(exc, "code", Code.FAILED)) from None
    # The source kept its state file for a rollback; the actor now lives on dst under the
    # same actor id, so its retained topics stay.
    await ops.send_control(
        contract.node_topic(src, "stop"), {"name": name, "delete": True, "keep_topics": True}
    )
    return {
        "success": True,
        "agent": name,
        "from_node": src,
        "to_node": dst,
        "state_keys_transferred": sorted(state),
    }


async def _withdraw(ops: ActorOps, node: str, name: str, token: str, *, grace: float) -> bool:
    """Withdraw a placement that timed out, before the actor goes back to its source.

    A Wactorz node ignores ``_expires_at`` and cannot stop an actor that is still
    starting (its stop finds nothing running, and the start then completes): a stop
    sent at once could leave a second live copy. So wait up to ``grace`` seconds for
    the late placement to settle (its ``spawn_ack`` of ``token``, or a refusal), then
    stop it (deleting the state file, keeping the retained topics the source shares).

    Returns:
        Whether the placement settled within ``grace`` (False: the node may still
        start the actor after this stop, and nobody will be watching).
    """
    settled = False
    with contextlib.suppress(CommandTimeout):
        await ops.request_answer(
            contract.node_topic(node, "spawn_ack"),
            lambda a: isinstance(a, dict) and a.get("migration_token") == token,
            _nothing,
            timeout=grace,
            what=f"the late start of {name} on {node}",
        )
        settled = True
    await ops.send_control(
        contract.node_topic(node, "stop"), {"name": name, "delete": True, "keep_topics": True}
    )
    return settled


async def _nothing() -> None:
    return None


async def _place(
    ops: ActorOps, node: str, config: dict[str, Any], state: dict[str, Any], *, token: str, timeout: float
) -> None:
    """Spawn ``config`` with ``state`` on ``node`` and wait for its ``spawn_ack`` of ``token``."""
    name = config["name"]
    spawn = {
        **spawn_payload({k: v for k, v in config.items() if k != "replace"}, node),
        "_initial_state": state,
        "_migration_token": token,
    }
    ack = await ops.request_answer(
        contract.node_topic(node, "spawn_ack"),
        lambda a: isinstance(a, dict) and a.get("migration_token") == token,
        lambda: ops.send_control(contract.node_topic(node, "spawn"), spawn),
        timeout=timeout,
        what=f"start {name} on {node}",
    )
    if ack.get("refused"):
        raise CommandFailed(f"{node} refused it: {ack['refused']}", code=Code.FAILED)
