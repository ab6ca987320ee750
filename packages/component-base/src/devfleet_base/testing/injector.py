"""A message injector: deliver a raw command payload to a component as the agent would.

The agent routes ``nodes/{node}/cmd/component`` envelopes
(``{"id", "args": {"component", "command", "args"}}``) to a component's
:meth:`~devfleet_base.Component.handle_command` and answers with a receipt.
:func:`inject` runs the same checks on the same bytes and returns that
receipt, so a component author can throw junk at a component (with hypothesis,
say) without an agent or a broker::

    receipt = await inject(counter, b'{"id": "1", "args": {"command": "bump", "args": {"by": 0}}}')
    assert receipt["status"] == "error" and receipt["code"] == "invalid"
"""

from __future__ import annotations

from typing import Any

from .. import contract
from ..component import Component
from ..errors import Code, ContractError, DevfleetError

__all__ = ["inject"]


async def inject(component: Component, payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Deliver ``payload`` (the wire payload of a ``component`` command) to ``component``.

    ``args.component`` may be omitted (it defaults to the component's name).

    Returns:
        The final receipt: ``{"id", "node", "cmd", "status": "ok"|"error", ...}``.
    """
    node = getattr(getattr(component, "ctx", None), "node", "test-node")
    raw = contract.encode(payload) if isinstance(payload, dict) else payload
    if isinstance(raw, str):
        raw = raw.encode()
    cmd_id = "unknown"
    try:
        data = contract.decode(raw)
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            cmd_id = data["id"]
        command = contract.Command.from_wire("component", data)
        args = command.args
        target = args.get("component", component.name)
        if target != component.name:
            raise ContractError(f"no component {target!r} here", code=Code.NOT_FOUND)
        verb = args.get("command")
        if not isinstance(verb, str):
            raise ContractError("component: args.command must be a string")
        result = await component.handle_command(verb, args.get("args"))
    except DevfleetError as exc:
        return contract.Receipt(cmd_id, node, "component", "error", exc.code, exc.message).to_wire()
    return contract.Receipt(command.id, node, "component", "ok", result=result).to_wire()
