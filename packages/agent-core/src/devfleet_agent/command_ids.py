"""The ids of commands that changed state, kept across restarts (at-most-once for real).

QoS 1 delivers a command at least once; the dispatcher runs an id at most once.
An id kept only in memory is forgotten by a restart, and a command that arrives
again afterwards (a console retrying, a broker redelivering from a persistent
session) would run again. So the ids of commands that may change state are
written to a small JSON file before they run, with the final receipt once they
finish: after a restart a repeated id still gets its final receipt, not a
second run.

Bounded and pruned by expiry: an id is kept until its command's ``expires_at``
(after that the command is refused as expired anyway) plus a margin for clock
skew, or for ``keep_for`` seconds when it has no expiry, and never more than
``limit`` ids (oldest first out). Idea: AWS IoT Jobs and Azure IoT direct
methods dedupe by job/request id within a retention window in the same way.

The file is separate from the replay guard of signed messages
(:mod:`devfleet_base.replay`): that one must never accept a signature again once
it forgets it (its floor rises instead), while this one may forget an old id
(oldest first) and keeps final receipts to answer repeats with.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devfleet_base import contract

from .storage import atomic_write_json, read_json

__all__ = ["CommandMemory"]

log = logging.getLogger("devfleet.commands")

_FORMAT = 1
_MAX_RECEIPT_BYTES = 4096  # a bigger final receipt is kept without its result


class CommandMemory:
    """Command ids with their final receipts, optionally persisted to ``path``.

    Args:
        path: the JSON file (None: memory only, as in the fleet simulator).
        limit: the most ids kept.
        keep_for: seconds an id without ``expires_at`` is kept.
        skew: seconds kept beyond a command's ``expires_at`` (clocks differ).
        clock: wall-clock seconds (Unix time).
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        limit: int = 1024,
        keep_for: float = 7 * 86400.0,
        skew: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.limit = limit
        self.keep_for = keep_for
        self.skew = skew
        self._clock = clock
        self._ids: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()

    def __contains__(self, cmd_id: object) -> bool:
        entry = self._ids.get(cmd_id) if isinstance(cmd_id, str) else None
        return entry is not None and entry[0] >= self._clock()

    def __len__(self) -> int:
        return len(self._ids)

    def final(self, cmd_id: str) -> dict[str, Any] | None:
        """The final receipt of a known id (None while it runs, or if not known)."""
        entry = self._ids.get(cmd_id)
        return entry[1] if entry is not None else None

    def load(self) -> None:
        """Read the file; a missing or damaged file starts an empty memory (logged)."""
        if self.path is None:
            return
        try:
            doc = read_json(self.path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("command id memory unreadable (%s); starting empty", exc)
            return
        entries = doc.get("ids") if isinstance(doc, dict) and doc.get("format") == _FORMAT else None
        if not isinstance(entries, list):
            log.error("command id memory %s has an unknown format; starting empty", self.path)
            return
        for entry in entries:
            if (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[0], str)
                and isinstance(entry[1], (int, float))
                and (entry[2] is None or isinstance(entry[2], dict))
            ):
                self._ids[entry[0]] = (float(entry[1]), entry[2])
        self._prune()

    def remember(self, cmd_id: str, final: dict[str, Any] | None, *, expires_at: float | None) -> None:
        """Keep ``cmd_id`` (with its final receipt once known) and write the file.

        A write that fails is logged; the id is still kept in memory.
        """
        until = (expires_at + self.skew) if expires_at is not None else self._clock() + self.keep_for
        if final is not None and len(contract.encode(final)) > _MAX_RECEIPT_BYTES:
            final = {k: v for k, v in final.items() if k != "result"}
        self._ids[cmd_id] = (until, final)
        self._ids.move_to_end(cmd_id)
        self._prune()
        self._save()

    def _prune(self) -> None:
        now = self._clock()
        for cmd_id in [i for i, (until, _) in self._ids.items() if until < now]:
            del self._ids[cmd_id]
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"format": _FORMAT, "ids": [[i, until, final] for i, (until, final) in self._ids.items()]}
        try:
            atomic_write_json(self.path, doc)
        except (OSError, ValueError) as exc:
            log.error("cannot persist command ids to %s: %s", self.path, exc)
