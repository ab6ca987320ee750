"""The console's payload decoder: :func:`devfleet_base.contract.decode`, faster where it can be.

With the ``fast`` extra (``pip install 'devfleet-central-command[fast]'``) payloads
are parsed by msgspec's C decoder, about three times faster than the standard
library on a node's descriptions; the console's retained burst (four descriptions
a node) spends most of its own time decoding. The agent never uses this: it runs
on devices without a msgspec wheel.

The result is the standard library's, exactly: msgspec keeps integers of any size
as ``int`` (orjson turns those past 64 bits into floats), and whatever msgspec
refuses (NaN, a lone surrogate, ``1e400``, bad JSON) is decoded again by
``contract.decode``, which returns what ``json`` makes of it or raises the usual
:class:`~devfleet_base.errors.ContractError`.
"""

from __future__ import annotations

from typing import Any, Final

from devfleet_base.contract import MAX_PAYLOAD_BYTES
from devfleet_base.contract import decode as _std_decode

__all__ = ["FAST", "decode", "peek"]


def _load() -> Any:
    try:
        import msgspec
    except ImportError:  # the extra is not installed: the standard library it is
        return None
    return msgspec


msgspec: Final[Any] = _load()

FAST: Final = msgspec is not None
"""Whether the C decoder is in use."""


def _make() -> Any:
    if msgspec is None:
        return _std_decode
    fast = msgspec.json.Decoder().decode
    refused = msgspec.DecodeError

    def decode(payload: bytes | bytearray | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
        """Parse an inbound JSON payload; raise ContractError (``too_large``/``bad_json``)."""
        if len(payload) <= max_bytes:
            try:
                return fast(payload)
            except (refused, RecursionError):
                pass
        return _std_decode(payload, max_bytes=max_bytes)

    return decode


def _make_peek() -> Any:
    if msgspec is None:
        return lambda payload: None

    class _Header(msgspec.Struct):  # type: ignore[misc]
        node: Any = None
        session: Any = None
        version: Any = None

    header = msgspec.json.Decoder(_Header).decode
    refused = msgspec.DecodeError

    def peek(payload: bytes) -> tuple[Any, Any, Any] | None:
        """``(node, session, version)`` of a description, its other keys checked as JSON and
        skipped (nothing built for them); None when only a full decode can tell."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            return None
        try:
            head = header(payload)
        except (refused, RecursionError):
            return None
        return head.node, head.session, head.version

    return peek


decode: Final = _make()
"""``decode(payload, *, max_bytes=MAX_PAYLOAD_BYTES)``: as :func:`devfleet_base.contract.decode`.

Raises:
    ContractError: ``too_large`` past ``max_bytes``, ``bad_json`` when not JSON.
"""

peek: Final = _make_peek()
"""``peek(payload)``: the top-level ``node``, ``session`` and ``version`` of a JSON object
(each None when absent), the whole payload checked as JSON without building the rest;
None without the ``fast`` extra, or when the payload is not an object msgspec takes
(then :func:`decode` decides, and says why)."""
