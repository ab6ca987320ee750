"""One replay guard per node: every accepted signature is remembered until it expires.

Signed control messages carry ``(kid, seq, exp)`` inside the signature (see
:mod:`devfleet_base.signing`). A node accepts each ``(kid, seq)`` once; it keeps
it until ``exp`` (after which the signature itself is refused as expired), so
the memory is bounded in time by the longest expiry a node accepts
(``signing.MAX_TTL``) and in size by ``max_entries``. When more unexpired
signatures arrive than fit, the one that expires first is forgotten and the
guard's *floor* rises to its expiry: anything expiring at or before the floor
is refused from then on. That may refuse an honest old message under a flood
of valid ones, never accept a replay.

The memory survives restarts: with a ``path`` every accepted entry is appended
(and fsynced) to a small journal, which is compacted on load and when it grows
past twice the live entries. The idea is JWT's ``jti`` cache (RFC 7519 §4.1.7)
with the expiry as the eviction rule.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from .errors import Code, SignatureError

__all__ = ["ReplayGuard"]

log = logging.getLogger("devfleet.replay")


class ReplayGuard:
    """Remembers accepted ``(kid, seq)`` pairs until their expiry.

    Args:
        path: the journal file (``None``: memory only).
        max_entries: unexpired signatures kept at most.
        clock: Unix time now.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self._clock = clock
        self._seen: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self.floor = 0
        self._lines = 0
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_record(self, kid: str, seq: int, exp: int) -> None:
        """Accept ``(kid, seq)`` once.

        Raises:
            SignatureError: ``replay`` when seen before (or at/below the floor).
        """
        self._prune()
        key = f"{kid} {seq}"
        if key in self._seen or exp <= self.floor:
            raise SignatureError(f"replayed message from {kid!r} (seq {seq}); not run", code=Code.REPLAY)
        self._seen[key] = exp
        heapq.heappush(self._heap, (exp, key))
        while len(self._seen) > self.max_entries:
            old_exp, old = heapq.heappop(self._heap)
            if self._seen.pop(old, None) is not None:
                self.floor = max(self.floor, old_exp)
        self._append([exp, kid, seq])

    def _prune(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] < now:
            _, key = heapq.heappop(self._heap)
            self._seen.pop(key, None)

    # ---- persistence ---------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            log.error("replay journal %s unreadable (%s): refusing everything signed before now", path, exc)
            self.floor = int(self._clock()) + 1
            lines = []
        for line in lines:
            try:
                item = json.loads(line)
                if item[0] == "floor":
                    self.floor = max(self.floor, int(item[1]))
                else:
                    exp, kid, seq = int(item[0]), str(item[1]), int(item[2])
                    key = f"{kid} {seq}"
                    if key not in self._seen:
                        self._seen[key] = exp
                        self._heap.append((exp, key))
            except (ValueError, TypeError, IndexError, KeyError):
                continue  # a line torn by a power cut: the floor below still holds
        heapq.heapify(self._heap)
        self._prune()
        while len(self._seen) > self.max_entries:
            old_exp, old = heapq.heappop(self._heap)
            if self._seen.pop(old, None) is not None:
                self.floor = max(self.floor, old_exp)
        self._compact()

    def _append(self, item: list[object]) -> None:
        if self.path is None:
            return
        self._lines += 1
        if self._lines > 2 * self.max_entries + 16:
            self._compact()
            return
        try:
            with self.path.open("a") as fh:
                fh.write(json.dumps(item) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.error("cannot append to the replay journal %s: %s", self.path, exc)

    def _compact(self) -> None:
        if self.path is None:
            return
        items: list[list[object]] = [["floor", self.floor]]
        for key, exp in self._seen.items():
            kid, seq = key.rsplit(" ", 1)
            items.append([exp, kid, int(seq)])
        data = "".join(json.dumps(item) + "\n" for item in items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with tmp.open("w") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("cannot write the replay journal %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._lines = len(items)
