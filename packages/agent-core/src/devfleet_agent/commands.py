"""The command dispatcher: envelope → checks → receipts → handler.

Every command gets receipts: ``accepted``, then ``ok`` (with a result) or
``error`` (with a machine-readable code and a human message). Junk gets an
error receipt too, on ``nodes/{node}/receipts`` when no reply address can be
read from it. A command id seen before is not run again: the final receipt is
sent again instead (QoS 1 redelivery is at-least-once; this makes it at-most-once).

Wactorz control messages (``nodes/{node}/spawn|stop|...``, registered with
:meth:`Dispatcher.register_control`) take the same path: read into a command
(:mod:`devfleet_agent.control_messages`), signature (devfleet ``_sig`` or a
Wactorz signature), expiry, at-most-once by ``_id``, then the handler and its
final receipt, all here. What differs is only what their wire protocol asks: no
``accepted`` receipt (a control message is answered once), receipts always on
``nodes/{node}/receipts``, and some leaves answer on topics of their own
(``list``, ``migrate``) instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from devfleet_base import contract
from devfleet_base.contract import Command, Receipt, TopicMatch
from devfleet_base.errors import Code, CommandError, ContractError, DevfleetError, SignatureError
from devfleet_base.mqtt import MqttMessage
from devfleet_base.signing import Verifier
from devfleet_base.wactorz_signing import SequenceGuard, verify_control

from .command_ids import CommandMemory
from .control_messages import check_expiry, control_command, read_payload, request_id

__all__ = ["Authenticate", "ControlHandler", "ControlHook", "Dispatcher", "Handler", "ReceiptSender"]

log = logging.getLogger("devfleet.commands")

Handler = Callable[[Command], Awaitable[Any]]
ReceiptSender = Callable[[str, dict[str, Any], "bytes | None"], Awaitable[None]]
ControlHandler = Callable[[Command, MqttMessage], Awaitable[Any]]
"""Runs one control message (``command.args`` is its payload); raise DevfleetError to refuse."""
ControlHook = Callable[[Command, DevfleetError], Awaitable[None]]
"""Told of every control message that ends in an error (refused, or failed while running)."""
Authenticate = Callable[[MqttMessage, dict[str, Any]], bool]
"""Vouches for a control message itself (True), leaves it to the usual signature checks
(False), or raises DevfleetError to refuse it."""

_T = TypeVar("_T")
_REPLY_RE = re.compile(r"replies/" + contract.ID_PATTERN)
_ID_RE = re.compile(contract.ID_PATTERN)
_SCALARS = (str, int, bool, type(None))


def _plain_json(result: Any) -> bool:
    """True for what JSON surely carries without encoding it to find out: None, or a
    flat object with string keys and string, integer, boolean, null or finite float
    values (a ping's result). Anything else is encoded once to check it."""
    if result is None:
        return True
    if type(result) is not dict:
        return False
    for key, value in result.items():
        if type(key) is not str:
            return False
        kind = type(value)
        if kind is float:
            if value != value or value in (_INF, -_INF):  # NaN and infinities: allow_nan=False
                return False
        elif kind not in _SCALARS:
            return False
    return True


_INF = float("inf")


@dataclass(frozen=True)
class _Route:
    handler: Handler
    doc: str
    readonly: bool


@dataclass(frozen=True)
class _Control:
    handler: ControlHandler
    cmd: str
    receipts: bool
    signed: bool
    form: str
    once: bool
    authenticate: Authenticate | None
    on_error: ControlHook | None


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
        wactorz_key: an HMAC key shared with a Wactorz main (the node's fleet key):
            control messages signed with it the Wactorz way are accepted.
        sequences: the per-topic Wactorz sequences accepted (the agent persists
            them; default: kept in memory only).
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
        wactorz_key: bytes | None = None,
        sequences: SequenceGuard | None = None,
    ) -> None:
        self.node = node
        self._send = send
        self.verifier = verifier
        self._routes: dict[str, _Route] = {}
        self._controls: dict[str, _Control] = {}
        self.wactorz_key = wactorz_key
        self.sequences = sequences if sequences is not None else SequenceGuard()
        self._seen: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._remember = remember
        self.memory = memory if memory is not None else CommandMemory(clock=clock)
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counts = {"received": 0, "ok": 0, "error": 0, "duplicate": 0}
        self._default_reply = contract.node_topic(node, "receipts")

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

    def check_wactorz_signature(
        self, topic: str, raw: bytes, properties: tuple[tuple[str, str], ...]
    ) -> bool:
        """True when the message carries a valid Wactorz signature (MQTT 5 user
        properties, made with :attr:`wactorz_key`); False when it carries none (check
        ``_sig`` then). Raise SignatureError for a bad or replayed one.

        The per-topic sequences are kept in :attr:`sequences` (persisted by the agent,
        so a restarted node still refuses a sequence it accepted before)."""
        if self.wactorz_key is None:
            return False
        return verify_control(self.wactorz_key, topic, raw, properties, self.sequences)

    def register_control(
        self,
        kind: str,
        handler: ControlHandler,
        *,
        cmd: str | None = None,
        receipts: bool = True,
        signed: bool = True,
        form: str = "object",
        once: bool = True,
        authenticate: Authenticate | None = None,
        on_error: ControlHook | None = None,
    ) -> None:
        """Run the Wactorz control messages of topic kind ``kind`` (``spawn``, ``stop``...)
        through this dispatcher; the caller's route hands them to :meth:`handle_control`.

        Args:
            kind: the :func:`~devfleet_base.contract.parse_topic` kind.
            handler: ``await handler(command, msg)``; its result is the ``ok`` receipt's.
            cmd: the receipt's ``cmd`` (default ``kind``; a migration's handoff is a ``spawn``).
            receipts: answer on ``nodes/{node}/receipts`` (False: the handler and
                ``on_error`` answer on the topic the protocol names).
            signed: needs a signature on a node that checks them (``list`` does not).
            form: ``"object"`` (a JSON object), ``"name"`` (or a bare actor name, Wactorz's
                legacy ``stop``) or ``"any"`` (the content is ignored, as ``list``'s).
            once: a repeated ``_id`` is not run again; its final receipt is sent again
                (False for a standing order such as the retained ``desired_state``).
            authenticate: vouches for the message before the usual signature checks.
            on_error: awaited for every error outcome, refusals included.
        """
        if kind in self._controls:
            raise ValueError(f"control {kind!r} is already registered")
        if form not in ("object", "name", "any"):
            raise ValueError(f"unknown control payload form {form!r}")
        self._controls[kind] = _Control(
            handler, cmd or kind, receipts, signed, form, once, authenticate, on_error
        )

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
        default_reply = self._default_reply
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
                if isinstance(maybe_id, str) and _ID_RE.fullmatch(maybe_id):
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
            check_expiry(command, self._clock())
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
        # The task is tracked so that drain() can wait for it on stop (as _tracked does,
        # inline: one coroutine fewer per command).
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        try:
            await self._run(route, command, reply, correlation)
        finally:
            if current is not None:
                self._tasks.discard(current)

    async def handle_control(self, msg: MqttMessage, match: TopicMatch) -> None:
        """Handle one Wactorz control message of a kind given to :meth:`register_control`;
        never raises. Like :meth:`handle`, the handler runs inside this call.

        Order: read (object, or bare name) → signature → expiry → ``_id`` seen before?
        → handler → final receipt. The signature is checked before the id, so a
        captured signed control message is refused as ``replay`` by the replay guard,
        where a repeated command gets its receipt again.
        """
        control = self._controls.get(match.kind)
        if control is None:
            log.debug("no control registered for %s", msg.topic)
            return
        self.counts["received"] += 1
        reply = contract.node_topic(self.node, "receipts")
        command = Command(control.cmd, contract.new_id(), {})
        try:
            payload, bare = read_payload(msg.payload, control.cmd, form=control.form)
            # The id first: a refusal of what follows is answered under it.
            command = Command(control.cmd, request_id(payload) or command.id, payload)
            command = control_command(control.cmd, payload, fallback_id=command.id)
            if control.signed:
                self._authenticate(control, msg, payload, bare)
            check_expiry(command, self._clock())
        except DevfleetError as exc:
            log.warning("%s %s refused: %s", control.cmd, command.id, exc.message)
            await self._control_final(
                control,
                command,
                reply,
                self._refusal(command.id, command.verb, exc.code, exc.message),
                exc,
                remember=False,
            )
            return
        # Only an id the sender chose can come again (a fresh one never does).
        once = control.once and request_id(payload) is not None
        if once and self._known(command.id):
            self.counts["duplicate"] += 1
            final = self._seen.get(command.id) or self.memory.final(command.id)
            log.info("%s %s seen before; not run again", control.cmd, command.id)
            if final is not None and control.receipts:
                await self._send(reply, final, None)
            return
        if once:
            # Written before it runs: a crash mid-run must not make a repeat run it again.
            self._remember_id(command.id, None)
            self.memory.remember(command.id, None, expires_at=command.expires_at)
        await self._tracked(self._run_control(control, command, msg, reply, once=once))

    async def _run_control(
        self, control: _Control, command: Command, msg: MqttMessage, reply: str, *, once: bool
    ) -> None:
        try:
            final = await self._execute(command, lambda: control.handler(command, msg))
        except asyncio.CancelledError:
            await self._control_final(control, command, reply, self._stopping(command), None, remember=once)
            raise
        error = None if final.status == "ok" else CommandError(final.message or "", code=final.code)
        await self._control_final(control, command, reply, final, error, remember=once)

    def _authenticate(self, control: _Control, msg: MqttMessage, payload: dict[str, Any], bare: bool) -> None:
        if control.authenticate is not None and control.authenticate(msg, payload):
            return
        if not self.check_wactorz_signature(msg.topic, msg.payload, msg.user_properties):
            # A bare name has no room for _sig: only a Wactorz signature can vouch for it.
            self.check_signature(msg.topic, {} if bare else payload)

    async def _control_final(
        self,
        control: _Control,
        command: Command,
        reply: str,
        final: Receipt,
        error: DevfleetError | None,
        *,
        remember: bool,
    ) -> None:
        wire = final.to_wire()
        self.counts["ok" if final.status == "ok" else "error"] += 1
        if remember:
            self._remember_id(command.id, wire)
            self.memory.remember(command.id, wire, expires_at=command.expires_at)
        if control.receipts:
            await self._send(reply, wire, None)
        if error is not None and control.on_error is not None:
            try:
                await control.on_error(command, error)
            except Exception:
                log.exception("error hook of %s failed", control.cmd)

    def _known(self, cmd_id: str) -> bool:
        return cmd_id in self._seen or cmd_id in self.memory

    async def _tracked(self, work: Awaitable[_T]) -> _T:
        """Await ``work`` with the current task tracked, so :meth:`drain` waits for it."""
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        try:
            return await work
        finally:
            if current is not None:
                self._tasks.discard(current)

    def _refusal(self, cmd_id: str, verb: str, code: str, message: str) -> Receipt:
        return Receipt(cmd_id, self.node, verb[:64], "error", code, message[:4096], ts=self._clock())

    def _stopping(self, command: Command) -> Receipt:
        return self._refusal(command.id, command.verb, Code.UNAVAILABLE, "agent is stopping")

    async def _run(self, route: _Route, command: Command, reply: str, correlation: bytes | None) -> None:
        try:
            final = await self._execute(command, lambda: route.handler(command))
        except asyncio.CancelledError:
            wire = self._stopping(command).to_wire()
            self._remember_final(route, command, wire)
            await self._send(reply, wire, correlation)
            raise
        self.counts["ok" if final.status == "ok" else "error"] += 1
        wire = final.to_wire()
        self._remember_final(route, command, wire)
        await self._send(reply, wire, correlation)

    async def _execute(self, command: Command, call: Callable[[], Awaitable[Any]]) -> Receipt:
        """Run a handler and make its final receipt (``ok`` or ``error``); only
        cancellation passes through."""
        try:
            result = await call()
        except DevfleetError as exc:
            log.warning("command %s %s failed: %s", command.verb, command.id, exc.message)
            return Receipt(
                command.id,
                self.node,
                command.verb,
                "error",
                exc.code,
                exc.message[:4096],
                # An error may say what it left behind (e.g. an install that was rolled back).
                result=getattr(exc, "result", None),
                ts=self._clock(),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("command %s %s crashed", command.verb, command.id)
            return self._refusal(command.id, command.verb, Code.FAILED, f"{type(exc).__name__}: {exc}")
        try:
            if not _plain_json(result):
                contract.encode(result)  # a result JSON cannot carry (NaN, objects) must not lose the receipt
        except (TypeError, ValueError, RecursionError) as exc:
            log.error("command %s %s returned a result that is not JSON: %s", command.verb, command.id, exc)
            return self._refusal(command.id, command.verb, Code.FAILED, f"the result is not JSON: {exc}")
        return Receipt(command.id, self.node, command.verb, "ok", result=result, ts=self._clock())

    async def _error(
        self, reply: str, cmd_id: str, verb: str, code: str, message: str, correlation: bytes | None
    ) -> None:
        self.counts["error"] += 1
        await self._send(reply, self._refusal(cmd_id, verb, code, message).to_wire(), correlation)

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
