"""What a sent command turns into: a :class:`CommandHandle` for one node, a
:class:`Broadcast` for the fleet or a group, and the :class:`LogRecord` of logs.

The transport (:mod:`devfleet_command.aio`) feeds them receipts; they hold no I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from devfleet_base.contract import Receipt
from devfleet_base.errors import Code

from .errors import CommandFailed, CommandTimeout, ConfigConflict

__all__ = ["FINAL_STATES", "Broadcast", "CommandHandle", "LogRecord", "Outcome"]

log = logging.getLogger("devfleet.console")

FINAL_STATES = frozenset({"ok", "error", "expired", "timed_out"})
_FINAL = FINAL_STATES


# ---- commands ---------------------------------------------------------------------------


class CommandHandle:
    """One command sent to one node: ``pending`` → ``accepted`` → ``ok`` | ``error``
    | ``expired`` | ``timed_out``.

    Attributes:
        id: the command id.
        node: the node addressed.
        verb: the command.
        state: the current state.
        receipt: the last receipt (wire form), if any came.
    """

    def __init__(self, cmd_id: str, node: str, verb: str, loop: asyncio.AbstractEventLoop) -> None:
        self.id = cmd_id
        self.node = node
        self.verb = verb
        self.state = "pending"
        self.receipt: dict[str, Any] | None = None
        self.sent_at = time.time()
        self.finished_at: float | None = None
        self._done: asyncio.Future[None] = loop.create_future()
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._listeners: list[Callable[[CommandHandle], None]] = []

    def on_state(self, callback: Callable[[CommandHandle], None]) -> None:
        """Call ``callback(handle)`` at every state it reaches from now on: ``accepted``
        (if that receipt comes), then the final one. Nothing is missed however briefly
        a state lasts (a poll of :attr:`state` can miss a short ``accepted``).

        Called synchronously on the event loop as the receipt is handled; an exception
        in ``callback`` is logged, never raised to the transport. The current state
        is not replayed: read :attr:`state` when registering.
        """
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                log.exception("command state callback failed")

    @property
    def done(self) -> bool:
        """Whether the state is final."""
        return self.state in _FINAL

    @property
    def code(self) -> str | None:
        """The error code of an unsuccessful command."""
        if self.state == "timed_out":
            return Code.TIMEOUT
        return self.receipt.get("code") if self.receipt and self.state != "ok" else None

    @property
    def message(self) -> str | None:
        """The human message of an unsuccessful command."""
        if self.state == "timed_out":
            return f"no answer from {self.node} to {self.verb}"
        return self.receipt.get("message") if self.receipt else None

    @property
    def value(self) -> Any:
        """The ``result`` of an ``ok`` receipt."""
        return self.receipt.get("result") if self.receipt and self.state == "ok" else None

    def _on_receipt(self, receipt: Receipt, wire: dict[str, Any]) -> None:
        if self.done:
            return
        self.receipt = wire
        if receipt.status == "accepted":
            if self.state != "accepted":
                self.state = "accepted"
                self._changed()
            return
        state = receipt.status
        if state == "error" and receipt.code == Code.EXPIRED:
            state = "expired"
        self._finish(state)

    def _finish(self, state: str) -> None:
        if self.done:
            return
        self.state = state
        self.finished_at = time.time()
        if self._timer is not None:
            self._timer.cancel()
        if not self._done.done():
            self._done.set_result(None)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self._changed()
        self._listeners.clear()  # final: no more calls, let the callbacks go

    async def wait(self) -> CommandHandle:
        """Wait for a final state (never raises for a failed command); return self."""
        if not self._done.done():
            # A future of this waiter's own, resolved by _finish itself: cancelling one
            # waiter leaves the others alone (what shield() gave) without shield's extra
            # loop turn per command (issue 20).
            waiter = self._done.get_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # this waiter was cancelled before the end
                    self._waiters.remove(waiter)
        return self

    async def result(self) -> Any:
        """Wait and return the node's result.

        Raises:
            CommandFailed: the node answered ``error`` (``ConfigConflict`` for ``conflict``).
            CommandTimeout: no final receipt in time.
        """
        await self.wait()
        return self.raise_for_state()

    def raise_for_state(self) -> Any:
        """Return the result of an ``ok`` command, raise for any other final state."""
        if self.state == "ok":
            return self.value
        if self.state == "timed_out":
            raise CommandTimeout(f"{self.node}: no answer to {self.verb} (state {self._seen_state()})")
        code = self.code or Code.FAILED
        cls = ConfigConflict if code == Code.CONFLICT else CommandFailed
        raise cls(
            f"{self.node}: {self.verb} failed: {self.message or code} ({code})",
            code=code,
            node=self.node,
            verb=self.verb,
            receipt=self.receipt,
        )

    def _seen_state(self) -> str:
        return "accepted" if self.receipt and self.receipt.get("status") == "accepted" else "pending"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able outcome."""
        return {
            "id": self.id,
            "node": self.node,
            "verb": self.verb,
            "state": self.state,
            "code": self.code,
            "message": self.message,
            "result": self.value,
        }


@dataclass
class Outcome:
    """One node's part of a broadcast."""

    state: str = "pending"
    receipt: dict[str, Any] | None = None
    finished_at: float | None = None  # Unix time the final receipt came (round trip: minus sent_at)


class Broadcast:
    """A command to every node (or a group): per-node outcomes as receipts arrive.

    Nodes the model knows are offline, lost or stale are not waited on: they are
    listed in :attr:`offline` at once.
    """

    def __init__(
        self,
        cmd_id: str,
        verb: str,
        group: str | None,
        targets: Iterable[str],
        offline: Iterable[str],
        loop: asyncio.AbstractEventLoop,
        on_progress: Callable[[Broadcast], None] | None = None,
    ) -> None:
        self.id = cmd_id
        self.verb = verb
        self.group = group
        self.outcomes: dict[str, Outcome] = {name: Outcome() for name in targets}
        #: How many outcomes are in each state, kept as receipts arrive, so progress and
        #: :attr:`done` cost O(1) per receipt (a fleet-wide command gets thousands).
        self.tally: dict[str, int] = {"pending": len(self.outcomes)}
        self.sent_at = time.time()
        self.offline: list[str] = sorted(offline)
        self.timed_out_after: float | None = None
        self._on_progress = on_progress
        self._done: asyncio.Future[None] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None

    def _set(self, outcome: Outcome, state: str) -> None:
        self.tally[outcome.state] -= 1
        self.tally[state] = self.tally.get(state, 0) + 1
        outcome.state = state
        if state in _FINAL:
            outcome.finished_at = time.time()

    def _names(self, *states: str) -> list[str]:
        return sorted(n for n, o in self.outcomes.items() if o.state in states)

    @property
    def succeeded(self) -> list[str]:
        """Nodes that answered ``ok``."""
        return self._names("ok")

    @property
    def failed(self) -> list[str]:
        """Nodes that answered ``error`` (or refused it as expired)."""
        return self._names("error", "expired")

    @property
    def timed_out(self) -> list[str]:
        """Nodes that were online but did not finish in time."""
        return self._names("timed_out")

    @property
    def pending(self) -> list[str]:
        """Nodes still being waited on."""
        return self._names("pending", "accepted")

    @property
    def done(self) -> bool:
        """No node is pending any more."""
        return not (self.tally.get("pending", 0) or self.tally.get("accepted", 0))

    @property
    def ok(self) -> bool:
        """Every node waited on succeeded."""
        t = self.tally
        return self.done and not (t.get("error", 0) or t.get("expired", 0) or t.get("timed_out", 0))

    def _progress(self) -> None:
        if self._on_progress is not None:
            try:
                self._on_progress(self)
            except Exception:
                log.exception("broadcast progress callback failed")
        if self.done:
            self._finish()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._done.done():
            self._done.set_result(None)

    def _on_receipt(self, receipt: Receipt, wire: dict[str, Any]) -> None:
        outcome = self.outcomes.get(receipt.node)
        if outcome is None:
            if receipt.node in self.offline:
                self.offline.remove(receipt.node)  # it answered after all
            outcome = self.outcomes[receipt.node] = Outcome()
            self.tally["pending"] = self.tally.get("pending", 0) + 1
        if outcome.state in _FINAL:
            return
        outcome.receipt = wire
        if receipt.status == "error" and receipt.code == Code.EXPIRED:
            self._set(outcome, "expired")
        else:
            self._set(outcome, receipt.status)
        self._progress()

    def _node_down(self, node: str) -> None:
        outcome = self.outcomes.get(node)
        if outcome is not None and outcome.state not in _FINAL:
            self.tally[outcome.state] -= 1
            del self.outcomes[node]
            self.offline = sorted({*self.offline, node})
            self._progress()

    def _time_out(self) -> None:
        for outcome in self.outcomes.values():
            if outcome.state not in _FINAL:
                self._set(outcome, "timed_out")
        self._progress()
        self._finish()

    async def wait(self) -> Broadcast:
        """Wait until every online target answered or the timeout passed; return self."""
        await asyncio.shield(self._done)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary with each node's outcome."""
        return {
            "id": self.id,
            "verb": self.verb,
            "group": self.group,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "pending": self.pending,
            "offline": self.offline,
            "nodes": {
                name: {
                    "state": o.state,
                    "code": (o.receipt or {}).get("code") if o.state != "ok" else None,
                    "message": (o.receipt or {}).get("message") if o.state != "ok" else None,
                    "result": (o.receipt or {}).get("result") if o.state == "ok" else None,
                }
                for name, o in sorted(self.outcomes.items())
            },
        }


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log record shipped by a node."""

    node: str
    seq: int | None
    ts: float | None
    level: str
    logger: str
    msg: str
