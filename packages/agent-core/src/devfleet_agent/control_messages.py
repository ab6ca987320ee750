"""Wactorz control messages read into commands (the dispatcher runs both alike).

A Wactorz control message (``nodes/{node}/spawn|stop|stop_all|list|migrate|...``)
is not a devfleet command envelope: its payload is the request itself (a JSON
object, or for some leaves a bare actor name), with devfleet's transport keys
``_id`` (the receipt id), ``_expires_at`` (Unix time) and ``_sig`` inside it, or a
Wactorz signature in MQTT 5 user properties. :func:`control_command` reads one
into a :class:`~devfleet_base.contract.Command` whose ``args`` are the payload,
so :class:`~devfleet_agent.commands.Dispatcher` checks, remembers and answers it
on the one path every command takes. The wire field names stay as they are:
``expires_at`` in a command envelope, ``_expires_at`` in a control payload.

:class:`PersistedSequences` keeps the per-topic Wactorz sequences across
restarts (in the node's data directory), as the node's
:class:`~devfleet_base.replay.ReplayGuard` keeps devfleet signatures.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from devfleet_base import contract
from devfleet_base.contract import Command
from devfleet_base.errors import Code, ContractError
from devfleet_base.wactorz_signing import SequenceGuard

from .storage import atomic_write_json, read_json

__all__ = ["PersistedSequences", "check_expiry", "control_command", "read_payload", "request_id"]

log = logging.getLogger("devfleet.commands")


def read_payload(raw: bytes, cmd: str, *, form: str) -> tuple[dict[str, Any], bool]:
    """The control payload as an object, and whether it came as a bare actor name.

    ``form`` ``"object"``: a JSON object. ``"name"``: that, or the Wactorz legacy
    bare name, a JSON string (``"foo"``) or text that is not JSON (``foo``), read as
    ``{"name": ...}``. ``"any"``: the content is ignored (``{}``).

    Raises:
        ContractError: not JSON (``bad_json``), too large, or not an object.
    """
    if form == "any":
        return {}, False
    try:
        value = contract.decode(raw)
    except ContractError:
        if form != "name":
            raise
        value = raw.decode("utf-8", "replace").strip()
    if form == "name" and isinstance(value, str):
        return {"name": value}, True
    if not isinstance(value, dict):
        raise ContractError(f"{cmd}: expected a JSON object, got {type(value).__name__}")
    return value, False


def control_command(cmd: str, payload: dict[str, Any], *, fallback_id: str) -> Command:
    """The command a control payload asks for: id ``_id`` (``fallback_id`` when it has
    no valid one), args the whole payload, expiry ``_expires_at``.

    Raises:
        ContractError: ``_expires_at`` is not Unix time in seconds.
    """
    expires = payload.get("_expires_at")
    if expires is not None and (
        not isinstance(expires, (int, float)) or isinstance(expires, bool) or not math.isfinite(expires)
    ):
        raise ContractError(f"{cmd}._expires_at must be Unix time in seconds")
    return Command(cmd, request_id(payload) or fallback_id, payload, expires_at=expires)


def request_id(payload: dict[str, Any]) -> str | None:
    """The payload's ``_id`` when it is a valid id (it is echoed in the receipt)."""
    value = payload.get("_id")
    return value if isinstance(value, str) and re.fullmatch(contract.ID_PATTERN, value) else None


def check_expiry(command: Command, now: float) -> None:
    """Refuse a command or control message that arrived after its expiry.

    Raises:
        ContractError: ``expired``.
    """
    if command.expired(now):
        late = now - (command.expires_at or 0.0)
        raise ContractError(f"{command.verb} expired {late:.1f} s ago; not run", code=Code.EXPIRED)


class PersistedSequences(SequenceGuard):
    """A :class:`~devfleet_base.wactorz_signing.SequenceGuard` kept in a JSON file.

    Every accepted sequence is written (atomically) before the message runs, so a
    restarted node refuses a captured Wactorz-signed message as ``replay``. An
    unreadable file refuses every sequence up to now (the floor rises to the
    present, in the microseconds Wactorz uses), as the replay guard does.

    Args:
        path: the file, e.g. ``{data_dir}/wactorz_sequences.json``.
        now_us: the present in microseconds (used only for an unreadable file).
    """

    def __init__(self, path: Path, *, now_us: int, max_topics: int = 1024) -> None:
        super().__init__(max_topics)
        self.path = path
        try:
            self.restore(read_json(path))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.error("Wactorz sequence memory %s unreadable (%s): refusing older messages", path, exc)
            self.floor = now_us

    def check_and_record(self, topic: str, seq: int) -> None:
        super().check_and_record(topic, seq)
        try:
            atomic_write_json(self.path, self.snapshot())
        except (OSError, ValueError) as exc:
            log.error("cannot persist Wactorz sequences to %s: %s", self.path, exc)
