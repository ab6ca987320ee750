"""What a devfleet node accepts from the Wactorz packaged node runner (``wactorz-node``).

The packaged runner (PyPI ``wactorz``) calls another actor by merging its
envelope into the task payload (``{..., "_reply_topic":
"agents/by-name/{caller}/reply/{id}", "_remote_task": true}``). This module
reads both envelopes into devfleet's terms; ``docs/contract.md`` ("Remote
nodes (Wactorz)") lists what devfleet does with each generation of runner.

Source of the shapes: ``wactorz/agents/dynamic/messaging.py`` (``send_to``) and
``wactorz/node/runner.py`` (``_on_task``) of wactorz 0.7.2.
"""

from __future__ import annotations

from typing import Any

from devfleet_base import contract
from devfleet_base.errors import ContractError

__all__ = ["reply_topic", "task_body"]

#: Keys of the task envelope; everything else in a merged payload is the task.
_ENVELOPE = ("_reply_topic", "_remote_task")


def reply_topic(value: Any) -> str | None:
    """``value`` if it is a topic a task may be answered on, else None.

    Accepted: ``nodes/{node}/reply/{id}`` (devfleet and the single-file runner)
    and ``agents/by-name/{caller}/reply/{id}`` (the packaged runner's callers).
    Never a command or control topic of any node: anything else is refused.
    """
    if not isinstance(value, str):
        return None
    match = contract.parse_topic(value)
    if match is not None and match.kind == "reply":
        return value
    parts = value.split("/")
    if len(parts) != 5 or parts[:2] != ["agents", "by-name"] or parts[3] != "reply":
        return None
    try:
        contract.check_name(parts[2], "caller")
        contract.check_id(parts[4], "reply id")
    except ContractError:
        return None
    return value


def task_body(payload: Any) -> Any:
    """The task a by-name message carries, whichever envelope it came in.

    ``{"_remote_task": true, "payload": X}`` (devfleet, the single-file runner)
    gives ``X``; a merged Wactorz envelope gives the dict without its envelope
    keys; anything without ``_remote_task`` is the task itself.
    """
    if not isinstance(payload, dict) or payload.get("_remote_task") is not True:
        return payload
    rest = {k: v for k, v in payload.items() if k not in _ENVELOPE}
    if set(rest) == {"payload"}:
        return rest["payload"]
    return rest
