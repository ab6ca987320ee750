"""The raw inspector's judgement of one retained payload: ok, malformed or truncated.

Payloads are shown as text, cut to :data:`SHOW_BYTES`; the verdict says what is
wrong with them in one line. The checks are the contract's own
(:func:`devfleet_base.contract.decode` and the description schemas), so the
inspector and the fleet model agree on what "malformed" means.
"""

from __future__ import annotations

from typing import Any

from devfleet_base import contract
from devfleet_base.contract import MAP_FRAME_SCHEMA, MAP_POSE_SCHEMA
from devfleet_base.errors import ContractError
from devfleet_base.payload_schemas import DESCRIPTION_SCHEMAS

__all__ = ["SHOW_BYTES", "inspect_payload"]

SHOW_BYTES = 4096
"""At most this many bytes of a payload are kept for display."""


def inspect_payload(topic: str, payload: bytes) -> dict[str, Any]:
    """What the inspector shows for ``payload`` on ``topic``.

    Returns:
        ``{"topic", "bytes", "text", "cut", "verdict", "reason"}`` where ``verdict``
        is ``ok``, ``malformed``, ``truncated`` (the JSON ends mid-document) or
        ``cleared`` (an empty retained payload); ``cut`` says the text shown is only
        the first :data:`SHOW_BYTES` bytes.
    """
    text = payload[:SHOW_BYTES].decode("utf-8", errors="replace")
    out: dict[str, Any] = {
        "topic": topic,
        "bytes": len(payload),
        "text": text,
        "cut": len(payload) > SHOW_BYTES,
        "verdict": "ok",
        "reason": "",
    }
    if not payload:
        out["verdict"] = "cleared"
        return out
    try:
        data = contract.decode(payload)
    except ContractError as exc:
        out["verdict"], out["reason"] = _decode_verdict(payload, exc.message)
        return out
    problem = _shape_problem(topic, data)
    if problem:
        out["verdict"], out["reason"] = "malformed", problem
    return out


def _decode_verdict(payload: bytes, message: str) -> tuple[str, str]:
    if len(payload) <= contract.MAX_PAYLOAD_BYTES and _ends_open(payload):
        return "truncated", f"the JSON ends at byte {len(payload)} mid-document ({message})"
    return "malformed", message


def _ends_open(payload: bytes) -> bool:
    """Whether ``payload`` reads as the start of a JSON object or array that was cut off:
    brackets still open (or a string unterminated) at the end, none closed wrongly."""
    stack: list[int] = []
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            stack.append(byte + 2)  # the matching } ]
        elif byte in (0x7D, 0x5D) and (not stack or stack.pop() != byte):
            return False
    return bool(stack)


def _shape_problem(topic: str, data: Any) -> str:
    """What breaks the contract in a decoded payload ('' when nothing does)."""
    match = contract.parse_topic(topic)
    if match is None:
        return ""
    try:
        if match.kind in DESCRIPTION_SCHEMAS:
            # What the console's model refuses: the schema's required fields, the topic's node.
            DESCRIPTION_SCHEMAS[match.kind].read(data)
            if data.get("node") not in (None, match.node):
                return f"{match.kind} names node {data.get('node')!r}"
        elif match.kind == "map":
            MAP_FRAME_SCHEMA.validate(data)
        elif match.kind == "component" and match.leaf == "map":
            MAP_POSE_SCHEMA.validate(data)
    except ContractError as exc:
        return exc.message
    return ""
