"""The command dispatcher: envelope → checks → receipts → handler.

Every command gets receipts: ``accepted``, then ``ok`` (with a result) or
``error`` (with a machine-readable code and a human message). Junk gets an
error receipt too, on ``nodes/{node}/receipts`` when no reply address can be
read from it. A command id seen before is not run again: the final receipt is
sent again instead (QoS 1 redelivery is at-least-once; this makes it at-most-once).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from devfleet_base import contract
from devfleet_base.contract import Command, Receipt, TopicMatch
from devfleet_base.errors import Code, ContractError, DevfleetError, SignatureError
from devfleet_base.signing import Verifier
from devfleet_base.wactorz_signing import SequenceGuard, verify_control

from .command_ids import CommandMemory

__all__ = ["Dispatcher", "Handler", "ReceiptSender"]

log = logging.getLogger("devfleet.commands")

Handler = Callable[[Command], Awaitable[Any]]
ReceiptSender = Callable[[str, dict[str, Any], "bytes | None"], Awaitable[None]]

_REPLY_RE = re.compile(r"replies/" + contract.ID_PATTERN)


@dataclass(frozen=True)
class _Route:
    handler: Handler
    doc: str
    readonly: bool


class Dispatcher:
    """Runs commands for one node.

    Args:
        node: the node name (receipts carry it).
        send: publishes a receipt: ``await send(topic, receipt, correlation)``.
        verifier: when set, every command that is not read-only must be signed by
            one of the node's operators (and is checked against the node's replay guard).
        remember: how many command ids to remember for at-most-once.
        memory: the ids of state-changing commands, persisted across restarts by
            the agent (default: kept in memory only).
    """

    def __init__(
        self,
        node: str,
        send: ReceiptSender,
        *,
        verifier: Verifier | None = None,
        remember: int = 1024,
        clock: Callable[[], float] = time.time,
        memory: CommandMemory | None = None,
    ) -> None:
        self.node = node
        self._send = send
        self.verifier = verifier
        self._routes: dict[str, _Route] = {}
        self._seen: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._remember = remember
        self.memory = memory if memory is not None else CommandMemory(clock=clock)
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counts = {"received": 0, "ok": 0, "error": 0, "duplicate": 0}

    def register(self, verb: str, handler: Handler, *, doc: str = "", readonly: bool = False) -> None:
        """Route ``verb`` to ``handler``. Read-only commands need no signature."""
        contract.check_name(verb, "command")
        if verb in self._routes:
            raise ValueError(f"command {verb!r} is already registered")
        self._routes[verb] = _Route(handler, doc, readonly)

    def unregister(self, verb: str) -> None:
        self._routes.pop(verb, None)

    def restarted(self) -> None:
        """Forget what a restarted process forgets: the counts and the command ids held
        in memory only (:attr:`memory`, persisted by the agent, stays). For the
        simulator, whose nodes restart inside one process."""
        self._seen.clear()
        for key in self.counts:
            self.counts[key] = 0

    def verbs(self) -> dict[str, str]:
        """Known verbs with their one-line docs (shown in ``meta``)."""
        return {v: r.doc for v, r in sorted(self._routes.items())}

    def check_signature(self, topic: str, payload: Any) -> None:
        """Raise SignatureError unless an operator signed the payload for ``topic``
        (when the node has a signing identity); the signature is spent (replay guard)."""
        if self.verifier is not None:
            self.verifier.check(topic, payload)
        elif self.wactorz_key is not None:  # keyed the Wactorz way only: unsigned is refused
            raise SignatureError("this node requires signed control messages (a Wactorz signature)")

    #: An HMAC key shared with a Wactorz main (the node's ``WACTORZ_NODE_KEY``); set by
    #: the actor host. Control messages signed with it the Wactorz way are accepted.
    wactorz_key: bytes | None = None

    def check_wactorz_signature(
        self, topic: str, raw: bytes, properties: tuple[tuple[str, str], ...]
    ) -> bool:
        """True when the message carries a valid Wactorz signature (MQTT 5 user
        properties, made with :attr:`wactorz_key`); False when it carries none (check
        ``_sig`` then). Raise SignatureError for a bad or replayed one.

        The per-topic sequences are kept in memory: a restarted node accepts a
        sequence again only if it is above what it accepted since the restart."""
        if self.wactorz_key is None:
            return False
        guard = self.__dict__.setdefault("_wactorz_seen", SequenceGuard())
        return verify_control(self.wactorz_key, topic, raw, properties, guard)

    async def handle(
        self,
        topic: str,
        match: TopicMatch,
        raw: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retained: bool = False,
        on_refused: Callable[[str, DevfleetError], Awaitable[None]] | None = None,
    ) -> None:
        """Handle one inbound command message; never raises.

        A message the broker flagged retained is refused (``invalid``), never run:
        commands are not retained, and a retained one would run again on every
        reconnect. The caller clears the topic. ``on_refused(command_id, error)`` is
        awaited when a readable command is refused before it runs (signature,
        expiry, unknown verb), besides the error receipt.

        The handler runs inside this call, so callers run each ``handle`` in a task
        of its own (as the agent does) to keep a slow command from blocking others.
        """
        self.counts["received"] += 1
        default_reply = contract.node_topic(self.node, "receipts")
        if response_topic is not None and not _REPLY_RE.fullmatch(response_topic):
            response_topic = None  # a hostile response topic must not make us publish anywhere
        verb = match.verb or "?"
        cmd_id = "unknown"
        reply = response_topic or default_reply
        try:
            payload = contract.decode(raw)
            if isinstance(payload, dict):
                # Read what we can for the error receipt before full validation.
                maybe_id = payload.get("id")
                if isinstance(maybe_id, str) and re.fullmatch(contract.ID_PATTERN, maybe_id):
                    cmd_id = maybe_id
                maybe_reply = payload.get("reply_to")
                if isinstance(maybe_reply, str) and _REPLY_RE.fullmatch(maybe_reply):
                    reply = maybe_reply
            if retained:
                raise ContractError(
                    f"{topic} was retained; commands are not retained (it would run again on every"
                    " reconnect): not run, and the node cleared it",
                    code=Code.INVALID,
                )
            command = Command.from_wire(verb, payload, scope=match.scope or "node")
        except ContractError as exc:
            await self._error(reply, cmd_id, verb, exc.code, exc.message, correlation)
            return
        if command.id in self._seen or command.id in self.memory:
            route = self._routes.get(verb)
            if self.verifier is not None and route is not None and not route.readonly:
                # A redelivery carries the same valid signature; anything else that
                # reuses a known id (to get its receipt sent elsewhere) is refused.
                try:
                    self.verifier.check(topic, payload, evidence=True)
                except DevfleetError as exc:
                    await self._error(reply, command.id, verb, exc.code, exc.message, correlation)
                    return
            self.counts["duplicate"] += 1
            final = self._seen.get(command.id) or self.memory.final(command.id)
            log.info("command %s (%s) seen before; not run again", command.id, verb)
            if final is not None:
                await self._send(reply, final, correlation)
            return
        route = self._routes.get(verb)
        try:
            if route is None:
                known = ", ".join(sorted(self._routes))
                raise ContractError(f"unknown command {verb!r} (known: {known})", code=Code.UNKNOWN_COMMAND)
            if not route.readonly:
                self.check_signature(topic, payload)
            if command.expired(self._clock()):
                raise ContractError(
                    f"command expired {self._clock() - (command.expires_at or 0):.1f} s ago; not run",
                    code=Code.EXPIRED,
                )
        except DevfleetError as exc:
            log.warning("command %s %s refused: %s", verb, command.id, exc.message)
            await self._error(reply, command.id, verb, exc.code, exc.message, correlation)
            if on_refused is not None:
                await on_refused(command.id, exc)
            return
        self._remember_id(command.id, None)
        if not route.readonly:
            # Written before it runs: a crash mid-run must not make a repeat run it again.
            self.memory.remember(command.id, None, expires_at=command.expires_at)
        await self._send(
            reply,
            Receipt(command.id, self.node, verb, "accepted", ts=self._clock()).to_wire(),
            correlation,
        )
        # handle() already runs in a task of its own (the agent spawns one per inbound
        # message), so the handler runs right here: no second task, no extra loop turn.
        # The task is tracked so that drain() can wait for it on stop.
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        try:
            await self._run(route, command, reply, correlation)
        finally:
            if current is not None:
                self._tasks.discard(current)

    async def _run(self, route: _Route, command: Command, reply: str, correlation: bytes | None) -> None:
        try:
            result = await route.handler(command)
        except DevfleetError as exc:
            log.warning("command %s %s failed: %s", command.verb, command.id, exc.message)
            final = Receipt(
                command.id,
                self.node,
                command.verb,
                "error",
                exc.code,
                exc.message,
                # An error may say what it left behind (e.g. an install that was rolled back).
                result=getattr(exc, "result", None),
                ts=self._clock(),
            )
        except asyncio.CancelledError:
            final = Receipt(
                command.id,
                self.node,
                command.verb,
                "error",
                Code.UNAVAILABLE,
                "agent is stopping",
                ts=self._clock(),
            )
            self._remember_final(route, command, final.to_wire())
            await self._send(reply, final.to_wire(), correlation)
            raise
        except Exception as exc:
            log.exception("command %s %s crashed", command.verb, command.id)
            final = Receipt(
                command.id,
                self.node,
                command.verb,
                "error",
                Code.FAILED,
                f"{type(exc).__name__}: {exc}",
                ts=self._clock(),
            )
        else:
            try:
                contract.encode(result)  # a result JSON cannot carry (NaN, objects) must not lose the receipt
            except (TypeError, ValueError, RecursionError) as exc:
                log.error(
                    "command %s %s returned a result that is not JSON: %s", command.verb, command.id, exc
                )
                final = Receipt(
                    command.id,
                    self.node,
                    command.verb,
                    "error",
                    Code.FAILED,
                    f"the result is not JSON: {exc}",
                    ts=self._clock(),
                )
            else:
                final = Receipt(command.id, self.node, command.verb, "ok", result=result, ts=self._clock())
        self.counts["ok" if final.status == "ok" else "error"] += 1
        wire = final.to_wire()
        self._remember_final(route, command, wire)
        await self._send(reply, wire, correlation)

    async def _error(
        self, reply: str, cmd_id: str, verb: str, code: str, message: str, correlation: bytes | None
    ) -> None:
        self.counts["error"] += 1
        verb = verb if len(verb) <= 64 else verb[:64]
        receipt = Receipt(cmd_id, self.node, verb, "error", code, message[:4096], ts=self._clock())
        await self._send(reply, receipt.to_wire(), correlation)

    def _remember_final(self, route: _Route, command: Command, final: dict[str, Any]) -> None:
        self._remember_id(command.id, final)
        if not route.readonly:
            self.memory.remember(command.id, final, expires_at=command.expires_at)

    def _remember_id(self, cmd_id: str, final: dict[str, Any] | None) -> None:
        self._seen[cmd_id] = final
        self._seen.move_to_end(cmd_id)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for running commands (on stop), cancelling what outlives ``timeout``."""
        running = self._tasks - {asyncio.current_task()}
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
